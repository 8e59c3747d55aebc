"""Running the code location's jobs on the instance, or filing backfills for the daemon."""

from __future__ import annotations

import sys
import time
from datetime import date

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


def run_job(
    job_name: str,
    *,
    partition: str | None = None,
    first: str | None = None,
    last: str | None = None,
    config: dict | None = None,
) -> int:
    """Execute one of the code location's jobs as a run on the instance (it shows in the UI)."""
    import dagster as dg

    from ml_platform.definitions import defs

    job = defs.resolve_job_def(job_name)
    tags = (
        {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        if first
        else {}
    )
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition,
            tags=tags,
            run_config=config or {},
            raise_on_error=False,
        )
    scope = partition or (f"{first}..{last}" if first else "")
    status = "succeeded" if result.success else "FAILED"
    print(f"run {result.run_id} {status}: {job.name} {scope} in {time.perf_counter() - t0:.1f}s")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                while error.cause is not None:
                    error = error.cause
                print(f"  {event.step_key}: {error.message.strip()}", file=sys.stderr)
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
