"""The Dagster code location: every asset, check, job, sensor and resource, assembled here."""

from __future__ import annotations

import dagster as dg

from ml_platform.assets.champion import champion
from ml_platform.assets.clean import clean_shipments
from ml_platform.assets.features import shipment_features
from ml_platform.assets.predictions import prediction_quality, price_quotes
from ml_platform.assets.price_model import price_model
from ml_platform.assets.raw import raw_shipments
from ml_platform.deployments import resources_for
from ml_platform.execution import executor_for
from ml_platform.jobs import (
    data_pipeline_job,
    ingest_job,
    predict_job,
    promote_job,
    train_job,
)
from ml_platform.maintenance import prune_history_job, prune_history_schedule
from ml_platform.rerun_passed_days import rerun_passed_days
from ml_platform.retention_job import retention_job
from ml_platform.sensors import landing_zone_sensor
from ml_platform.settings import load_settings

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    # The conditions include Python ones (ml_platform.automation) that only the code
    # server can evaluate; the daemon cannot deserialize them.
    use_user_code_server=True,
)


def build_definitions() -> dg.Definitions:
    settings = load_settings()
    return dg.Definitions(
        assets=[
            raw_shipments,
            clean_shipments,
            shipment_features,
            price_model,
            champion,
            price_quotes,
            prediction_quality,
        ],
        jobs=[
            ingest_job,
            data_pipeline_job,
            train_job,
            promote_job,
            predict_job,
            retention_job,
            prune_history_job,
        ],
        schedules=[prune_history_schedule],
        sensors=[landing_zone_sensor, automation_sensor, rerun_passed_days],
        resources=resources_for(settings),
        executor=executor_for(settings),
    )


defs = build_definitions()
