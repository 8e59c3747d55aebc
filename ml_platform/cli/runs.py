"""Running the code location's jobs on the instance, or filing backfills for the daemon."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date

from ml_platform.cli.errors import CliError, UsageError, one_line

SELECTIONS = {
    "data": "group:raw or group:clean or group:features",
    "raw": "group:raw",
    "features": "group:features",
    "predict": "group:predictions or group:monitoring",
}
# The job each selection runs as, so CLI runs show under a meaningful name in the UI.
JOBS = {
    "data": "data_pipeline",
    "raw": "ingest_shipments",
    "features": "data_pipeline",
    "predict": "predict_prices",
}
# Selections that are a part of their job's assets (run with an asset selection).
PARTIAL = {"features"}

STAGE_NAMES = {
    "group:raw or group:clean": "raw+clean",
    "group:features": "features",
    "group:raw": "raw",
    "group:predictions or group:monitoring": "quotes+quality",
}


def op_config(op: str, config: dict) -> dict:
    return {"ops": {op: {"config": config}}} if config else {}


def run_range(start: date, end: date, selection: str, force: bool = False) -> int:
    """The range's days that need it, as few runs as they allow (every day with ``force``):
    what `dagster asset materialize --partition-range` does, without redoing what is current."""
    outcomes = execute_needed(
        JOBS[selection],
        start.isoformat(),
        end.isoformat(),
        SELECTIONS[selection],
        whole_job=selection not in PARTIAL,
        force=force,
        show=not VERBOSE,
    )
    success = all(o.success for o in outcomes)
    lines = [line for o in outcomes for line in o.lines]
    print("\n".join(lines), file=sys.stdout if success else sys.stderr, flush=True)
    return 0 if success else 1


def check_calendar(first: date, last: date, flags: tuple[str, str]) -> None:
    """A range reaching outside the daily partitions is a usage error, before any run: each
    chunk would otherwise fail alone, and name retries that can never succeed."""
    from ml_platform.partitions import daily_partitions

    begins = date.fromisoformat(daily_partitions.get_first_partition_key())
    ends = date.fromisoformat(daily_partitions.get_last_partition_key())
    for flag, day in zip(flags, (first, last), strict=True):
        if not begins <= day <= ends:
            raise UsageError(
                f"{flag} {day} is outside the daily partitions, {begins}..{ends} "
                "(a day's partition exists from that day on)"
            )


def execute_needed(
    job_name: str,
    first: str,
    last: str,
    selection: str,
    *,
    tags: dict[str, str] | None = None,
    whole_job: bool = False,
    force: bool = False,
    show: bool = False,
) -> list[RunOutcome]:
    """Runs of the job over first..last for what of ``selection`` is not up to date
    (``ml_platform.provenance.up_to_date``), each day's assets and those downstream; with
    ``force`` one run of it all. An up-to-date range gives one outcome that says so, with no
    run. ``whole_job``: ``selection`` is all of the job's assets, so a run of all of them is
    a run of the job (named as such in the UI).

    A run that fails stops the rest, except when it failed because some of its days did (a
    blocking check, an unreadable drop): a step's output is atomic, so none of its days was
    stored; the others, and the days after them, then run once more without the failed
    days, as the rerun_passed_days sensor does for the daemon's runs.
    """
    import dagster as dg

    from ml_platform.cli.progress import expected_work
    from ml_platform.definitions import defs
    from ml_platform.landing.zone import DropUnreadableError
    from ml_platform.provenance.up_to_date import plan_redo

    keys = sorted(dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph()))
    everything = None if whole_job else selection
    expected_work(job_name, None, first, last)  # a day outside the calendar: one line
    days = _days(first, last)
    with dg.DagsterInstance.get() as instance:
        plan = plan_redo(instance, defs, keys, days, forced=_every(keys, days) if force else set())
    if not plan:
        label = job_name if whole_job else f"{job_name}[{stage_name(selection)}]"
        note = f"up to date, not run: {label} {_scope(first, last)}"
        return [RunOutcome("", True, 0.0, [f"{note} (--force runs it again)"], up_to_date=True)]
    outcomes: list[RunOutcome] = []
    retried = False
    while plan:
        if STOP.is_set():  # a backfill worker asked to stop: no further run
            raise RunInterrupted("")
        redo = plan.pop(0)
        if VERBOSE:
            print(f"to run {_scope(redo.first, redo.last)}, since {redo.why}", flush=True)
        whole = set(redo.keys) == set(keys)
        picked = everything if whole else _key_selection(redo.keys, defs)
        outcome = execute_run(
            job_name, first=redo.first, last=redo.last, selection=picked, tags=tags, show=show
        )
        outcomes.append(outcome)
        if outcome.success:
            continue
        if retried:
            break
        # Once, in one pass: the run's other days and the days after it, without the failed
        # days and what reads them. Forced, all of it but what the failed run stored.
        retried = True
        rest = [day for step in (redo, *plan) for day in _days(step.first, step.last)]
        with dg.DagsterInstance.get() as instance:
            failed = _failed_days(instance, outcome.run_id, _days(redo.first, redo.last))
            if not failed:  # it failed for another reason than some of its days
                break
            again = _every(keys, rest) - _stored_by(instance, outcome.run_id) if force else set()
            try:
                plan = plan_redo(instance, defs, keys, rest, forced=again, failed=failed)
            except DropUnreadableError as e:  # a store failing now: keep what is reported
                outcome.lines.append(f"  not retried: {one_line(e)}")
                break
    return outcomes


def _every(keys, days: list[str]) -> set:
    return {(key, day) for key in keys for day in days}


def _stored_by(instance, run_id: str) -> set:
    """(asset, day) pairs a run materialized."""
    import dagster as dg

    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    events = (record.event_log_entry.dagster_event for record in records)
    return {(event.asset_key, event.partition) for event in events}


def _key_selection(keys, defs) -> str:
    """A selection of exactly ``keys``: a stage's own when it is one (so runs read as such)."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    for stage in STAGE_NAMES:
        if dg.AssetSelection.from_string(stage).resolve(graph) == set(keys):
            return stage
    return " or ".join(f'key:"{key.to_user_string()}"' for key in keys)


def _days(first: str, last: str) -> list[str]:
    import dagster as dg

    from ml_platform.partitions import daily_partitions

    return daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))


def _scope(first: str, last: str) -> str:
    return f"{first}..{last}" if first != last else first


def _failed_days(instance, run_id: str, days: list[str]) -> set:
    """(asset, day) pairs of a failed run that failed themselves: a blocking check, or a step
    failure naming them (none when the run failed for another reason)."""
    from ml_platform.rerun_passed_days import day_failures

    failed, passed = day_failures(instance, run_id, days)
    return {(key, day) for key in failed for day in days if day not in passed}


def stage_name(selection: str) -> str:
    """A selection as run summaries name it: the stage, else its assets."""
    if selection in STAGE_NAMES:
        return STAGE_NAMES[selection]
    return selection.replace('key:"', "").replace('"', "").replace(" or ", "+")


def verbose_option() -> argparse.ArgumentParser:
    """A parent parser for the commands that run jobs: -v/--verbose."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show Dagster's event log instead of a progress bar",
    )
    return parent


# Set from --verbose by main: show Dagster's event log instead of a progress bar.
VERBOSE = False


def run_job(
    job_name: str,
    *,
    partition: str | None = None,
    first: str | None = None,
    last: str | None = None,
    config: dict | None = None,
) -> int:
    """Execute one of the code location's jobs as a run on the instance (it shows in the UI).

    Prints a progress bar while it works (or Dagster's event log with --verbose) and a
    summary after; returns 0 when the run succeeded, 1 when it failed.
    """
    outcome = execute_run(
        job_name, partition=partition, first=first, last=last, config=config, show=not VERBOSE
    )
    print(
        "\n".join(outcome.lines),
        file=sys.stdout if outcome.success else sys.stderr,
        flush=True,
    )
    return 0 if outcome.success else 1


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    seconds: float
    lines: list[str]  # the run's summary
    peak_rss_mb: float = 0.0  # of the process that executed it (worker processes only)
    up_to_date: bool = False  # nothing to run: no run was made


def execute_run(
    job_name: str,
    *,
    partition: str | None = None,
    first: str | None = None,
    last: str | None = None,
    config: dict | None = None,
    selection: str | None = None,
    tags: dict[str, str] | None = None,
    show: bool = False,
) -> RunOutcome:
    """One run of the job (or of ``selection``'s assets in it) on the instance, in this process."""
    import dagster as dg

    from ml_platform.cli.progress import (
        CLI_RUN_TAG,
        QUIET_LOGGERS,
        RunProgress,
        expected_work,
        summary,
    )
    from ml_platform.definitions import defs

    job = defs.resolve_job_def(job_name)
    all_tags = dict(tags or {})
    if first:
        all_tags["dagster/asset_partition_range_start"] = first
        all_tags["dagster/asset_partition_range_end"] = last
    run_config = dict(config or {})
    if not VERBOSE:
        run_config["loggers"] = QUIET_LOGGERS
    scope = partition or (f"{first}..{last}" if first and first != last else first or "")
    keys = None
    expected = expected_work(job_name, partition, first, last)
    if selection:
        keys = sorted(dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph()))
        per_day = {p: len(keys) for p in expected.per_partition}  # all daily assets here
        expected = type(expected)(sum(per_day.values()) or 1, per_day)
    if partition:
        partitions_def = job.partitions_def
        if partitions_def is not None and not partitions_def.has_partition_key(partition):
            raise CliError(f"{job.name}: no partition {partition!r} (check the date)")
        all_tags.update(job.get_tags_for_partition_key(partition, keys))
    all_tags[CLI_RUN_TAG] = str(uuid.uuid4())
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        with RunProgress(
            instance, all_tags[CLI_RUN_TAG], job.name, expected, show=show
        ) as progress:
            try:
                # execute_job, not execute_in_process: the latter keeps every step's output in
                # memory until the run ends (for result.output_for_node), so a raw+clean run
                # held raw, clean and the rejects at once; here each output is released as
                # soon as its IO manager stored it and memory peaks at one step's frames.
                result = dg.execute_job(
                    dg.build_reconstructable_job(__name__, "job_named", (job_name,)),
                    instance=instance,
                    run_config=run_config,
                    tags=all_tags,
                    raise_on_error=False,
                    asset_selection=keys,
                )
            except dg.DagsterError as e:  # refused before it ran: bad partition, bad config
                raise CliError(f"{job.name} {scope}: {one_line(e)}") from e
            except KeyboardInterrupt:
                # Between the run's creation and its start Dagster does not catch a Ctrl-C:
                # the run would stay "not started" for ever. It is recorded as failed.
                stopped = _fail_unstarted(instance, all_tags[CLI_RUN_TAG])
                raise RunInterrupted(
                    f"run {stopped} interrupted before it started: {job.name} {scope}, "
                    "marked failed"
                    if stopped
                    else ""
                ) from None
            run_id = progress.run_id = result.run_id
    seconds = time.perf_counter() - t0
    label = f"{job.name}[{stage_name(selection)}]" if selection else job.name
    if not result.success and _interrupted(result):
        # Dagster turned the Ctrl-C into this run's failure and went on; the command stops.
        raise RunInterrupted(
            f"run {run_id} interrupted: {label}{f' {scope}' if scope else ''}, after "
            f"{seconds:.1f}s, marked failed"
        )
    lines = summary(
        run_id=run_id,
        job=label,
        scope=scope,
        success=result.success,
        seconds=seconds,
        expected=expected,
        tally=progress.tally,
    )
    return RunOutcome(run_id, result.success, seconds, lines)


def _fail_unstarted(instance, cli_tag: str) -> str | None:
    """Marks the run tagged ``cli_tag`` failed if it never finished starting; its id."""
    import dagster as dg

    from ml_platform.cli.progress import CLI_RUN_TAG

    runs = instance.get_runs(filters=dg.RunsFilter(tags={CLI_RUN_TAG: cli_tag}), limit=1)
    if not runs or runs[0].is_finished:
        return None
    instance.report_run_failed(runs[0], message="interrupted (Ctrl-C) before it started")
    return runs[0].run_id


# Set by a backfill worker's SIGINT handler (backfill_chunks._chunk_worker): the worker stops
# before its next run. Within a run Dagster's own handler interrupts the run's steps.
STOP = threading.Event()


class RunInterrupted(KeyboardInterrupt):
    """A Ctrl-C (SIGINT) stopped a run: Dagster recorded it as failed."""


def _interrupted(result) -> bool:
    """Whether a failed run failed because it was interrupted (SIGINT), not on its own."""
    interrupts = {"DagsterExecutionInterruptedError", "KeyboardInterrupt"}
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            if error.cls_name in interrupts:
                return True
            error = error.cause
    return False


def job_named(name: str):
    """The code location's job ``name``: what execute_job reconstructs a CLI run from."""
    from ml_platform.definitions import defs

    return defs.resolve_job_def(name)


def submit_backfill(start: date, end: date, selection: str) -> int:
    """File an asset backfill of exactly these days for every selected asset."""
    import dagster as dg

    from ml_platform.backfills import file_backfill
    from ml_platform.definitions import defs
    from ml_platform.partitions import daily_partitions

    graph = defs.resolve_asset_graph()
    keys = sorted(dg.AssetSelection.from_string(selection).resolve(graph))
    days = daily_partitions.get_partition_keys_in_range(
        dg.PartitionKeyRange(start.isoformat(), end.isoformat())
    )
    with dg.DagsterInstance.get() as instance:
        backfill_id = file_backfill(
            instance,
            graph,
            {key: days for key in keys},
            title=f"ml-platform backfill {start}..{end}",
        )
    print(f"backfill {backfill_id} filed: {len(days)} days of {selection}")
    return 0
