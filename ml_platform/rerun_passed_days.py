"""Runs again, once, the days of a failed range run that did not fail themselves.

A step over several days (in a backfill chunk launched from the UI or with ``--submit``, or an
automation tick that found several days ready at once) is atomic: when one day fails a
blocking check (``ml_platform.checks.gated``) or its landed drop cannot be read
(``ml_platform.failures``), none of the step's days is stored; steps before it in the run did
land. Nothing else would ask for the other days: their inputs did not change, the landing
sensor has seen their drops, and the automation conditions count them as handled, so they
stayed missing (and every feature day whose window reads them) until someone backfilled them
by hand. This sensor requests them as soon as the run fails, without the failing days and
without the assets downstream of the failed step (automation builds those once the days are
stored). A day that failed waits for new data, as before.

Runs of ``ml-platform backfill`` without ``--submit`` execute in the CLI's own processes, not
through the code location, so Dagster does not show them to run-status sensors: the command
names a failed chunk with the command that retries it instead.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import dagster as dg

from ml_platform.failures import failed_partitions
from ml_platform.jobs import data_pipeline_job
from ml_platform.partitions import daily_partitions

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
RERUN_OF_TAG = "ml_platform/rerun_of"
WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run it is about to retry


@dg.run_failure_sensor(
    name="rerun_passed_days",
    request_job=data_pipeline_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "When a run over several days fails because some of them failed a blocking check or "
        "could not be read, runs the other days again, once, without the failing days."
    ),
)
def rerun_passed_days(context: dg.RunFailureSensorContext):
    # Runs it does not act on return None, not a SkipReason: Dagster ends the tick at the
    # first run that returns anything, and every failed run of the code location comes here.
    run = context.dagster_run
    first, last = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
    if not first or first == last or run.tags.get(RERUN_OF_TAG):  # one rerun per failure
        return None
    if run.tags.get(WILL_RETRY_TAG) == "true":  # its retry decides; acting twice runs twice
        return None
    try:
        days = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    except ValueError:  # not a range of days: nothing this sensor can split
        return None
    failed, passed = day_failures(context.instance, run.run_id, days)
    if not failed:  # failed for another reason than a blocking check or a named partition
        return None
    keep = _assets_to_rerun(context, run, failed, passed)
    if not passed or not keep:
        return None
    context.log.info(f"run {run.run_id}: running {passed} again without the failed days")
    return [
        dg.RunRequest(
            run_key=f"{run.run_id}:{a}..{b}",
            asset_selection=keep,
            tags={RANGE_START: a, RANGE_END: b, RERUN_OF_TAG: run.run_id},
        )
        for a, b in contiguous_ranges(passed)
    ]


def day_failures(
    instance: dg.DagsterInstance, run_id: str, days: list[str]
) -> tuple[set[dg.AssetKey], list[str]]:
    """The assets that failed some of the run's ``days`` (a blocking check, or a step failure
    naming them), and the days none of them failed; no assets when the run failed otherwise."""
    outcomes = blocking_outcomes(instance, run_id)
    for key, named in named_failures(instance, run_id, days).items():
        outcomes[key] = {d: ok and outcomes.get(key, {}).get(d, True) for d, ok in named.items()}
    failed = {key for key, by_day in outcomes.items() if not all(by_day.values())}
    passed = [day for day in days if all(outcomes[key].get(day) is True for key in failed)]
    return failed, passed


def _assets_to_rerun(context, run, failed: set, passed: list[str]) -> list[dg.AssetKey]:
    """The run's assets in data_pipeline, less those downstream of the failed checks
    (automation builds them once the days are stored) and those the run stored for every
    passed day already (steps before the failed one)."""
    graph = context.repository_def.asset_graph
    pipeline = data_pipeline_job.selection.resolve(graph)
    # A whole data_pipeline run has no asset selection of its own.
    selected = run.asset_selection or (pipeline if run.job_name == data_pipeline_job.name else ())
    downstream = dg.AssetSelection.assets(*failed).downstream(include_self=False).resolve(graph)
    stored = _stored_for(context.instance, run.run_id, set(passed))
    keep = (set(selected) & pipeline) - downstream - stored
    return sorted(keep, key=lambda k: k.to_user_string())


def _stored_for(instance: dg.DagsterInstance, run_id: str, days: set[str]) -> set[dg.AssetKey]:
    """Assets the run materialized for every one of ``days``."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    materialized: dict[dg.AssetKey, set[str]] = defaultdict(set)
    for record in records:
        event = record.event_log_entry.dagster_event
        materialized[event.asset_key].add(event.partition)
    return {key for key, partitions in materialized.items() if days <= partitions}


def blocking_outcomes(
    instance: dg.DagsterInstance, run_id: str
) -> dict[dg.AssetKey, dict[str, bool]]:
    """Per asset and day: whether every blocking check evaluated in the run passed there."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    outcomes: dict[dg.AssetKey, dict[str, bool]] = defaultdict(dict)
    for record in records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        if not evaluation.blocking or evaluation.partition is None:
            continue
        days = outcomes[evaluation.asset_key]
        days[evaluation.partition] = days.get(evaluation.partition, True) and evaluation.passed
    return dict(outcomes)


def named_failures(
    instance: dg.DagsterInstance, run_id: str, days: list[str]
) -> dict[dg.AssetKey, dict[str, bool]]:
    """Per asset and day of the run: whether it passed, for steps whose failure named the
    partitions that failed (``ml_platform.failures.fail_partitions``: unreadable drops)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    outcomes: dict[dg.AssetKey, dict[str, bool]] = {}
    for record in records.records:
        named = failed_partitions(record.event_log_entry.dagster_event)
        if named is not None:
            key, failed = named
            outcomes[key] = {day: day not in failed for day in days}
    return outcomes


def contiguous_ranges(days: list[str]) -> list[tuple[str, str]]:
    """Sorted ISO days as (first, last) runs of consecutive days."""
    ranges: list[tuple[str, str]] = []
    for day in days:
        if ranges and date.fromisoformat(ranges[-1][1]) + timedelta(days=1) == date.fromisoformat(
            day
        ):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges
