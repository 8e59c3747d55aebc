"""The prod deployment's GCS half: resources from environment variables and the GCS
compute-log configuration. The whole graph on prod runs in test_prod_end_to_end.py."""

from pathlib import Path

import pytest
import yaml

from ml_platform.deployments.prod import gcs_resources

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prod"


def test_missing_bucket_variables_are_named(monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_GCS_BUCKET", raising=False)
    monkeypatch.delenv("ML_PLATFORM_LANDING_BUCKET", raising=False)
    with pytest.raises(ValueError, match="ML_PLATFORM_GCS_BUCKET, ML_PLATFORM_LANDING_BUCKET"):
        gcs_resources()


def test_prod_compute_logs_configure_dagster_gcp_log_manager(gcs_bucket, monkeypatch):
    from dagster_gcp.gcs.compute_log_manager import GCSComputeLogManager

    from ml_platform_tests.dagster_internals import ComputeLogManager, ConfigurableClassData

    section = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["compute_logs"]
    monkeypatch.setenv("ML_PLATFORM_COMPUTE_LOG_BUCKET", gcs_bucket)
    manager = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    ).rehydrate(as_type=ComputeLogManager)
    assert isinstance(manager, GCSComputeLogManager)
    assert manager._bucket_name == gcs_bucket
    assert manager._prefix == "dagster/compute-logs"
