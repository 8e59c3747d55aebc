"""A tiny code location for the Dagster-storage-on-Postgres test: one asset, one sensor."""

import dagster as dg


@dg.asset
def heartbeat() -> int:
    return 1


heartbeat_job = dg.define_asset_job("heartbeat_job", selection=[heartbeat])


@dg.sensor(
    job=heartbeat_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING
)
def counting_sensor(context: dg.SensorEvaluationContext):
    """Counts its ticks in its cursor; asks for one run, once."""
    count = int(context.cursor or 0) + 1
    requests = [dg.RunRequest(run_key="the-only-run")] if count == 1 else []
    return dg.SensorResult(run_requests=requests, cursor=str(count))


defs = dg.Definitions(assets=[heartbeat], jobs=[heartbeat_job], sensors=[counting_sensor])
