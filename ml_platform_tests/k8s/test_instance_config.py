"""deploy/prod/dagster.yaml, loaded and validated by Dagster's own instance-config machinery."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml_platform.execution import (
    K8S_SERVICE_ACCOUNT,
    PLATFORM_ENV_SECRET,
    POSTGRES_PASSWORD_SECRET,
)
from ml_platform_tests.dagster_internals import (
    DagsterInvalidConfigError,
    InstanceRef,
    dagster_instance_config,
)
from ml_platform_tests.k8s.conftest import PROD_INSTANCE_DIR, VALUES_FILES, class_config, load_yaml

pytestmark = pytest.mark.usefixtures("prod_instance_env")


def test_instance_config_passes_dagster_validation() -> None:
    config, custom_instance_class = dagster_instance_config(
        str(PROD_INSTANCE_DIR), config_filename="dagster.yaml"
    )
    assert custom_instance_class is None
    assert {"storage", "run_launcher", "compute_logs", "concurrency"} <= set(config)


def test_every_configured_class_accepts_its_config() -> None:
    ref = InstanceRef.from_dir(str(PROD_INSTANCE_DIR), config_filename="dagster.yaml")
    storage = class_config(ref.storage_data)
    assert storage["postgres_db"]["password"] == "not-a-real-password"  # from the env var
    assert storage["postgres_db"]["scheme"] == "postgresql+psycopg2"

    launcher = class_config(ref.run_launcher_data)
    assert ref.run_launcher_data.class_name == "K8sRunLauncher"
    assert launcher["service_account_name"] == K8S_SERVICE_ACCOUNT
    assert launcher["postgres_password_secret"] == POSTGRES_PASSWORD_SECRET
    assert launcher["env_secrets"] == [PLATFORM_ENV_SECRET]

    logs = class_config(ref.compute_logs_data)
    assert ref.compute_logs_data.class_name == "GCSComputeLogManager"
    assert logs["bucket"] == "ml-platform-prod-dagster-logs"

    # No run_coordinator entry: Dagster's default queue, fed by `concurrency.runs`.
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    class_config(ref.run_coordinator_data)


def test_concurrency_matches_the_prod_helm_values() -> None:
    """On GKE the chart renders the instance from values; both must limit the same way."""
    instance = load_yaml(PROD_INSTANCE_DIR / "dagster.yaml")["concurrency"]
    helm = load_yaml(VALUES_FILES["prod"])["concurrency"]
    assert instance["runs"]["max_concurrent_runs"] == helm["runs"]["maxConcurrentRuns"]
    assert instance["runs"]["tag_concurrency_limits"] == helm["runs"]["tagConcurrencyLimits"]
    assert instance["pools"]["default_limit"] == helm["pools"]["defaultLimit"]
    assert instance["pools"]["granularity"] == helm["pools"]["granularity"]


def copy_with(tmp_path: Path, edit) -> Path:
    config = load_yaml(PROD_INSTANCE_DIR / "dagster.yaml")
    edit(config)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_dagster_rejects_run_limits_in_two_places(tmp_path: Path) -> None:
    """The validation above is real: the conflict the Helm values avoid is an error."""

    def add_run_coordinator(config: dict[str, Any]) -> None:
        config["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 5},
        }

    with pytest.raises(DagsterInvalidConfigError, match="max_concurrent_runs"):
        dagster_instance_config(str(copy_with(tmp_path, add_run_coordinator)))


def test_dagster_accepts_the_queue_the_helm_values_render(tmp_path: Path) -> None:
    """What the chart writes for runCoordinator.enabled with concurrency.enabled: a bare
    QueuedRunCoordinator (limits only in `concurrency`), which Dagster accepts and which takes
    its run limits from `concurrency.runs`."""
    from ml_platform_tests.dagster_internals import ConcurrencyConfig, QueuedRunCoordinator

    helm = load_yaml(VALUES_FILES["prod"])
    queued = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]

    def add_queue(config: dict[str, Any]) -> None:
        config["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": queued["dequeueIntervalSeconds"]},
        }

    config, _ = dagster_instance_config(str(copy_with(tmp_path, add_queue)))
    coordinator = QueuedRunCoordinator(**config["run_coordinator"]["config"])
    effective = ConcurrencyConfig.from_concurrency_settings(
        config["concurrency"], coordinator.get_run_queue_config()
    ).run_queue_config
    assert effective is not None
    assert effective.max_concurrent_runs == helm["concurrency"]["runs"]["maxConcurrentRuns"]
    assert [
        {"key": t["key"], "limit": t["limit"]} for t in effective.tag_concurrency_limits
    ] == helm["concurrency"]["runs"]["tagConcurrencyLimits"]


def test_a_missing_environment_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ML_PLATFORM_COMPUTE_LOG_BUCKET")
    shutil.copy(PROD_INSTANCE_DIR / "dagster.yaml", tmp_path / "dagster.yaml")
    ref = InstanceRef.from_dir(str(tmp_path))
    with pytest.raises(AssertionError, match="ML_PLATFORM_COMPUTE_LOG_BUCKET"):
        class_config(ref.compute_logs_data)
