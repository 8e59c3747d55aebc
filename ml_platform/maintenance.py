"""Keeping Dagster's own storage from growing without bound.

Ticks: Dagster's own ``retention:`` setting in dagster.yaml (every instance config in this
repository sets it); the daemon purges sensor, schedule and automation ticks beyond it.
Cursors live in the instigator state, not in ticks, so the landing sensor loses nothing.

Runs: Dagster has no retention setting for runs, so this job keeps doing that part. It
deletes finished runs older than the retention that recorded no asset event
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


# On each prune run: the cutoff it pruned up to. The next prune looks only at runs updated
# since: the ones before were judged then, and a run kept for provenance is kept for good, so
# looking at them again every day cost a few queries per run ever kept.
PRUNED_UP_TO_TAG = "ml_platform/pruned_up_to"


@dataclass
class PruneReport:
    runs_deleted: int = 0
    runs_kept_for_provenance: int = 0
    cutoff: float = 0.0


def prune_history(
    instance: dg.DagsterInstance,
    keep_runs_days: float,
    now: float | None = None,
    batch: int = 200,
    since: float | None = None,
) -> PruneReport:
    """Delete old finished runs without asset events (ticks: dagster.yaml's ``retention:``).

    ``since``: the cutoff of the previous prune; only runs last updated after it are looked at.
    """
    now = time.time() if now is None else now
    report = PruneReport(cutoff=now - keep_runs_days * DAY)
    _prune_runs(instance, report.cutoff, since, batch, report)
    return report


def _prune_runs(
    instance: dg.DagsterInstance,
    cutoff: float,
    since: float | None,
    batch: int,
    report: PruneReport,
):
    filters = dg.RunsFilter(
        statuses=FINISHED,
        updated_before=datetime.fromtimestamp(cutoff, tz=UTC),
        updated_after=datetime.fromtimestamp(since, tz=UTC) if since is not None else None,
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
                cursor = run_id
            else:
                instance.delete_run(run_id)
                report.runs_deleted += 1
        # The cursor is the last run kept: a deleted run cannot be one (Dagster resolves it to
        # a row id, and a missing row ended the paging after the first batch). A page deleted
        # whole is followed by the same query, which now returns the runs after it.


def _has_asset_events(instance: dg.DagsterInstance, run_id: str) -> bool:
    return any(
        instance.get_records_for_run(run_id, of_type=event_type, limit=1).records
        for event_type in ASSET_EVENTS
    )


class PruneConfig(dg.Config):
    keep_runs_days: float = 90.0


@dg.op(description="Deletes old runs that recorded no asset event (ticks: dagster.yaml retention).")
def prune(context: dg.OpExecutionContext, config: PruneConfig) -> None:
    since = _previous_cutoff(context.instance)
    report = prune_history(context.instance, config.keep_runs_days, since=since)
    context.instance.add_run_tags(context.run_id, {PRUNED_UP_TO_TAG: repr(report.cutoff)})
    context.log.info(f"pruned Dagster history: {report}")


def _previous_cutoff(instance: dg.DagsterInstance) -> float | None:
    """What the last successful prune pruned up to (None: look at every run)."""
    runs = instance.get_runs(
        dg.RunsFilter(job_name="prune_dagster_history", statuses=[dg.DagsterRunStatus.SUCCESS]),
        limit=1,
    )
    value = runs[0].tags.get(PRUNED_UP_TO_TAG) if runs else None
    return float(value) if value else None


@dg.job(
    name="prune_dagster_history",
    description="Prunes Dagster's run and event history beyond retention.",
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
