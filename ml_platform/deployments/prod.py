"""Production: landing zone, Parquet and artifacts on GCS; analyst tables on Postgres."""

from __future__ import annotations

from typing import Any

from ml_platform.settings import Settings


def prod_resources(settings: Settings) -> dict[str, Any]:
    raise NotImplementedError(
        "the prod deployment (GCS + Postgres) is not available yet; use ML_PLATFORM_DEPLOYMENT=local"
    )
