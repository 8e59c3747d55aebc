"""Running the code location's jobs on the instance, or filing backfills for the daemon."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import date

from ml_platform.cli.errors import CliError, one_line

SELECTIONS = {
    "data": "group:raw or group:clean or group:features",
    "raw": "group:raw",
}
# The job each selection runs as, so CLI runs show under a meaningful name in the UI.
JOBS = {"data": "data_pipeline", "raw": "ingest_shipments"}


def op_config(op: str, config: dict) -> dict:
    return {"ops": {op: {"config": config}}} if config else {}


def run_range(start: date, end: date, selection: str) -> int:
    """One run over the range: what `dagster asset materialize --partition-range` does."""
    return run_job(JOBS[selection], first=start.isoformat(), last=end.isoformat())


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
    import dagster as dg

    from ml_platform.cli.progress import QUIET_LOGGERS, RunProgress, expected_work, summary
    from ml_platform.definitions import defs

    job = defs.resolve_job_def(job_name)
    tags = (
        {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        if first
        else {}
    )
    run_config = dict(config or {})
    if not VERBOSE:
        run_config["loggers"] = QUIET_LOGGERS
    scope = partition or (f"{first}..{last}" if first and first != last else first or "")
    expected = expected_work(job_name, partition, first, last)
    run_id = str(uuid.uuid4())
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        with RunProgress(instance, run_id, job.name, expected, show=not VERBOSE) as progress:
            try:
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=partition,
                    tags=tags,
                    run_config=run_config,
                    raise_on_error=False,
                    run_id=run_id,
                )
            except dg.DagsterError as e:  # refused before it ran: bad partition, bad config
                raise CliError(f"{job.name} {scope}: {one_line(e)}") from e
    lines = summary(
        run_id=run_id,
        job=job.name,
        scope=scope,
        success=result.success,
        seconds=time.perf_counter() - t0,
        expected=expected,
        tally=progress.tally,
    )
    print("\n".join(lines), file=sys.stdout if result.success else sys.stderr, flush=True)
    return 0 if result.success else 1


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
