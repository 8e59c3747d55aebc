"""Resources per deployment, chosen by ML_PLATFORM_DEPLOYMENT (local or prod)."""

from __future__ import annotations

from typing import Any

from ml_platform.landing.zone import LocalLandingZone
from ml_platform.settings import Settings
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager


def local_resources(settings: Settings) -> dict[str, Any]:
    """The embedded default: everything in folders under ML_PLATFORM_HOME, no services."""
    parquet = LocalParquetIOManager(root=str(settings.storage_root))
    return {
        "landing": LocalLandingZone(
            root=str(settings.landing_root), quarantine_root=str(settings.quarantine_root)
        ),
        "lake_io_manager": parquet,
        "warehouse_io_manager": parquet,
    }


def prod_resources(settings: Settings) -> dict[str, Any]:
    raise NotImplementedError(
        "the prod deployment (GCS + Postgres) is not available yet; use ML_PLATFORM_DEPLOYMENT=local"
    )


def resources_for(settings: Settings) -> dict[str, Any]:
    builders = {"local": local_resources, "prod": prod_resources}
    return builders[settings.deployment](settings)
