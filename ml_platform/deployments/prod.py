"""Production: landing zone, Parquet and artifacts on GCS; analyst tables on Postgres."""

from __future__ import annotations

from typing import Any

import dagster as dg

from ml_platform.landing.zone import LandingZone
from ml_platform.settings import Settings
from ml_platform.storage.postgres_io_manager import PostgresIOManager

_GCS_PENDING = "provided by the GCS work; use ML_PLATFORM_DEPLOYMENT=local meanwhile"


class PendingLakeIOManager(dg.ConfigurableIOManager):
    """Stands in for the GCS Parquet lake until it exists; fails clearly when used."""

    def handle_output(self, context, obj) -> None:
        raise NotImplementedError(f"prod lake_io_manager: {_GCS_PENDING}")

    def load_input(self, context) -> None:
        raise NotImplementedError(f"prod lake_io_manager: {_GCS_PENDING}")


class PendingLandingZone(LandingZone):
    """Stands in for the GCS landing zone until it exists; fails clearly when used."""

    def describe(self) -> str:
        return "gs://<pending>"

    def completed_drops(self) -> dict[str, str]:
        raise NotImplementedError(f"prod landing zone: {_GCS_PENDING}")

    def is_complete(self, partition: str) -> bool:
        raise NotImplementedError(f"prod landing zone: {_GCS_PENDING}")

    def list_files(self, partition: str):
        raise NotImplementedError(f"prod landing zone: {_GCS_PENDING}")


def warehouse_io_manager() -> PostgresIOManager:
    """Analyst tables in Postgres, connection settings from ML_PLATFORM_PG_* variables."""
    return PostgresIOManager()


def prod_resources(settings: Settings) -> dict[str, Any]:
    # TODO(GCS work): the GCS landing zone and the GCS Parquet lake replace these.
    return {
        "landing": PendingLandingZone(),
        "lake_io_manager": PendingLakeIOManager(),
        "warehouse_io_manager": warehouse_io_manager(),
    }
