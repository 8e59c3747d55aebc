"""Keeping Dagster's own storage from growing without bound.

What may go, through Dagster's own APIs:
- sensor, schedule and automation ticks older than the retention (``instance.purge_ticks``;
  the daemon does the same when ``retention:`` is set in dagster.yaml, this job also covers
  instances where it is not). Cursors live in the instigator state, not in ticks, so the
  landing sensor loses nothing.
- finished runs older than the retention that recorded no asset event
  (``instance.delete_run`` removes the run and its event log): failed attempts, this job's
  own runs. A run that materialized, observed or checked an asset is kept whatever its age:
  its events are the platform's provenance (the storage ids and metadata every downstream
  ``ml_platform/inputs`` record points at).
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

ASSET_EVENTS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_OBSERVATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
}
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
DAY = 86_400.0


@dataclass
class PruneReport:
    runs_deleted: int = 0
    runs_kept_for_provenance: int = 0
    instigators_pruned: int = 0


def prune_history(
    instance: dg.DagsterInstance,
    keep_runs_days: float,
    keep_ticks_days: float,
    now: float | None = None,
    batch: int = 200,
) -> PruneReport:
    now = time.time() if now is None else now
    report = PruneReport()
    tick_cutoff = now - keep_ticks_days * DAY
    for state in instance.all_instigator_state():
        instance.purge_ticks(state.instigator_origin_id, state.selector_id, before=tick_cutoff)
        report.instigators_pruned += 1
    _prune_runs(instance, now - keep_runs_days * DAY, batch, report)
    return report


def _prune_runs(instance: dg.DagsterInstance, cutoff: float, batch: int, report: PruneReport):
    filters = dg.RunsFilter(
        statuses=FINISHED, updated_before=datetime.fromtimestamp(cutoff, tz=UTC)
    )
    cursor = None
    while True:
        records = instance.get_run_records(filters=filters, limit=batch, cursor=cursor)
        if not records:
            return
        for record in records:
            run_id = record.dagster_run.run_id
            if _has_asset_events(instance, run_id):
                report.runs_kept_for_provenance += 1
            else:
                instance.delete_run(run_id)
                report.runs_deleted += 1
        cursor = records[-1].dagster_run.run_id


def _has_asset_events(instance: dg.DagsterInstance, run_id: str) -> bool:
    return any(
        instance.get_records_for_run(run_id, of_type=event_type, limit=1).records
        for event_type in ASSET_EVENTS
    )


class PruneConfig(dg.Config):
    keep_runs_days: float = 90.0
    keep_ticks_days: float = 30.0


@dg.op(description="Deletes old ticks and old runs that recorded no asset event.")
def prune(context: dg.OpExecutionContext, config: PruneConfig) -> None:
    report = prune_history(context.instance, config.keep_runs_days, config.keep_ticks_days)
    context.log.info(f"pruned Dagster history: {report}")


@dg.job(
    name="prune_dagster_history",
    description="Prunes Dagster's run, event and tick history beyond retention.",
)
def prune_history_job():
    prune()


prune_history_schedule = dg.ScheduleDefinition(
    name="prune_dagster_history_daily",
    job=prune_history_job,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 03:17: keeps Dagster's storage from growing without bound.",
)
