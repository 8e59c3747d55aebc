"""Resources per deployment, chosen by ML_PLATFORM_DEPLOYMENT: one module per deployment."""

from __future__ import annotations

from typing import Any

from ml_platform.settings import Settings


def resources_for(settings: Settings) -> dict[str, Any]:
    """The resource dict of the deployment the settings name.

    Keys every deployment provides: ``landing`` (LandingZone), ``lake_io_manager``
    (Parquet objects and model artifacts), ``warehouse_io_manager`` (analyst tables).
    """
    if settings.deployment == "prod":
        from ml_platform.deployments.prod import prod_resources

        return prod_resources(settings)
    from ml_platform.deployments.local import local_resources

    return local_resources(settings)
