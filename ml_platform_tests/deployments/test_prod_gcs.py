"""The prod deployment's GCS half: resources from environment variables, the whole data graph
on a GCS lake and landing zone, and the GCS compute-log configuration."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster_gcp import GCSResource

from ml_platform.assets.clean import clean_shipments
from ml_platform.assets.features import FEATURES_KEY, shipment_features
from ml_platform.assets.raw import raw_shipments
from ml_platform.deployments.prod import gcs_resources
from ml_platform.landing.zone import MARKER
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager
from ml_platform.storage.retention import apply_retention
from ml_platform_tests.landing.drops import shipments_csv

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prod"
# From the first partition: the 28-day window then holds only days this test lands.
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


@pytest.fixture
def prod_env(monkeypatch, gcs_bucket):
    monkeypatch.setenv("ML_PLATFORM_GCS_BUCKET", gcs_bucket)
    monkeypatch.setenv("ML_PLATFORM_GCS_PREFIX", "lake")
    monkeypatch.setenv("ML_PLATFORM_LANDING_BUCKET", gcs_bucket)
    monkeypatch.setenv("ML_PLATFORM_LANDING_PREFIX", "drops")
    monkeypatch.setenv("ML_PLATFORM_QUARANTINE_PREFIX", "bad")
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    return gcs_bucket


def test_missing_bucket_variables_are_named(monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_GCS_BUCKET", raising=False)
    monkeypatch.delenv("ML_PLATFORM_LANDING_BUCKET", raising=False)
    with pytest.raises(ValueError, match="ML_PLATFORM_GCS_BUCKET, ML_PLATFORM_LANDING_BUCKET"):
        gcs_resources()


@pytest.mark.slow
def test_whole_data_graph_on_gcs_lake_and_landing(prod_env, gcs_client, instance, tmp_path):
    bucket = gcs_client.bucket(prod_env)
    for day in DAYS:
        bucket.blob(f"drops/shipments/{day}/a.csv").upload_from_string(
            shipments_csv(day, rows=40, seed=DAYS.index(day))
        )
        bucket.blob(f"drops/shipments/{day}/{MARKER}").upload_from_string(b"")
    # The Postgres warehouse is not on this branch: the local Parquet warehouse stands in.
    resources = {
        **gcs_resources(),
        "warehouse_io_manager": LocalParquetIOManager(root=str(tmp_path / "warehouse")),
    }
    result = dg.materialize(
        [raw_shipments, clean_shipments, shipment_features],
        resources=resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": DAYS[0],
            "dagster/asset_partition_range_end": DAYS[-1],
        },
    )
    assert result.success
    # The configured resource holds EnvVars (resolved only inside runs): inspect with values.
    lake = GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=prod_env, gcs_prefix="lake")
    for day in DAYS:
        pointer = lake.current_version(FEATURES_KEY, day)
        assert pointer["uri"].startswith(f"gs://{prod_env}/lake/features/shipment_features/{day}/")
        features = pl.read_parquet(lake.store().get(pointer["key"]))
        assert features.height == 40
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=FEATURES_KEY, asset_partitions=[DAYS[-1]]), limit=1
    ).records[0]
    inputs = record.asset_materialization.metadata["ml_platform/inputs"].value
    assert {r["partition"] for r in inputs[0]["partitions"]} == set(DAYS)

    # Retention with the features protected keeps everything this graph still needs.
    later = datetime.now(UTC) + timedelta(days=1)
    report = apply_retention(lake.store(), instance, timedelta(hours=1), [FEATURES_KEY], now=later)
    assert report.removed == []


def test_prod_compute_logs_configure_dagster_gcp_log_manager(gcs_bucket, monkeypatch):
    from dagster._core.storage.compute_log_manager import ComputeLogManager
    from dagster._serdes import ConfigurableClassData
    from dagster_gcp.gcs.compute_log_manager import GCSComputeLogManager

    section = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["compute_logs"]
    monkeypatch.setenv("ML_PLATFORM_COMPUTE_LOG_BUCKET", gcs_bucket)
    manager = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    ).rehydrate(as_type=ComputeLogManager)
    assert isinstance(manager, GCSComputeLogManager)
    assert manager._bucket_name == gcs_bucket
    assert manager._prefix == "dagster/compute-logs"
