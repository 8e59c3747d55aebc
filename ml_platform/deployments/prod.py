"""Production: landing zone, Parquet and artifacts on GCS; analyst tables on Postgres.

Environment variables read here (all strings; resolved when resources initialize, so a
missing one fails naming the variable):
- ``ML_PLATFORM_GCS_BUCKET``: bucket of the lake (raw and feature Parquet, artifacts).
- ``ML_PLATFORM_GCS_PREFIX``: key prefix in that bucket (default ``lake``).
- ``ML_PLATFORM_GCS_UPLOAD_CHUNK_MB``: chunk size of streamed uploads (partitions of more
  than 8 MiB in memory), in MiB (default 8): smaller chunks start sending sooner, each
  one costs a round trip.
- ``ML_PLATFORM_LANDING_BUCKET``: bucket producers drop into.
- ``ML_PLATFORM_LANDING_PREFIX``: prefix above ``<dataset>/<YYYY-MM-DD>/`` (default ``landing``).
- ``ML_PLATFORM_QUARANTINE_PREFIX``: where unreadable drop files are copied, in the landing
  bucket (default ``quarantine``).
- ``GCP_PROJECT``: project the GCS client bills to (optional; the client's default otherwise).
- ``ML_PLATFORM_PG_HOST``, ``_PORT``, ``_DB``, ``_USER``, ``_PASSWORD``: the analyst tables'
  Postgres (read by PostgresIOManager's EnvVar defaults).
Credentials come from Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``
or workload identity); ``STORAGE_EMULATOR_HOST`` points the client at an emulator.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource

from ml_platform.landing.gcs_zone import GCSLandingZone
from ml_platform.settings import Settings
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform.storage.postgres_io_manager import PostgresIOManager

REQUIRED = ("ML_PLATFORM_GCS_BUCKET", "ML_PLATFORM_LANDING_BUCKET")


def _env_or_default(name: str, default: str) -> Any:
    """An EnvVar when set (resolved at run time, shown by name in the UI), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def gcs_resources() -> dict[str, Any]:
    """The GCS half of prod: ``landing`` and ``lake_io_manager``."""
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"the prod deployment needs {', '.join(missing)} (GCS bucket names); "
            "see deploy/prod/README or ml_platform/deployments/prod.py"
        )
    gcs = GCSResource(project=dg.EnvVar("GCP_PROJECT") if os.environ.get("GCP_PROJECT") else None)
    return {
        "landing": GCSLandingZone(
            gcs=gcs,
            bucket=dg.EnvVar("ML_PLATFORM_LANDING_BUCKET"),
            prefix=_env_or_default("ML_PLATFORM_LANDING_PREFIX", "landing"),
            quarantine_prefix=_env_or_default("ML_PLATFORM_QUARANTINE_PREFIX", "quarantine"),
        ),
        "lake_io_manager": GCSParquetIOManager(
            gcs=gcs,
            gcs_bucket=dg.EnvVar("ML_PLATFORM_GCS_BUCKET"),
            gcs_prefix=_env_or_default("ML_PLATFORM_GCS_PREFIX", "lake"),
            upload_chunk_size_mb=(
                dg.EnvVar.int("ML_PLATFORM_GCS_UPLOAD_CHUNK_MB")
                if os.environ.get("ML_PLATFORM_GCS_UPLOAD_CHUNK_MB")
                else None
            ),
        ),
    }


def prod_resources(settings: Settings) -> dict[str, Any]:
    """GCS landing zone and lake, Postgres warehouse."""
    return {**gcs_resources(), "warehouse_io_manager": PostgresIOManager()}
