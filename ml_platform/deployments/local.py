"""The embedded default: everything in folders under ML_PLATFORM_HOME, no services."""

from __future__ import annotations

from typing import Any

from ml_platform.landing.zone import LocalLandingZone
from ml_platform.settings import Settings
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager


def local_resources(settings: Settings) -> dict[str, Any]:
    parquet = LocalParquetIOManager(root=str(settings.storage_root))
    return {
        "landing": LocalLandingZone(
            root=str(settings.landing_root), quarantine_root=str(settings.quarantine_root)
        ),
        "lake_io_manager": parquet,
        "warehouse_io_manager": parquet,
    }
