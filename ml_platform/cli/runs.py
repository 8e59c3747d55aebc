"""Running the code location's jobs on the instance, or filing backfills for the daemon."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from ml_platform.cli.errors import CliError, one_line

SELECTIONS = {
    "data": "group:raw or group:clean or group:features",
    "raw": "group:raw",
    "features": "group:features",
}
# The job each selection runs as, so CLI runs show under a meaningful name in the UI.
JOBS = {"data": "data_pipeline", "raw": "ingest_shipments", "features": "data_pipeline"}
# Selections that are a part of their job's assets (run with an asset selection).
PARTIAL = {"features"}

# A chunked backfill runs each chunk in stages: features read a trailing window of clean
# days, so a chunk's features wait for the raw+clean runs of every chunk that window touches
# (and chunks can run side by side: stage runs of different chunks are independent).
STAGES = {
    "data": ["group:raw or group:clean", "group:features"],
    "raw": ["group:raw"],
    "features": ["group:features"],
}
STAGE_NAMES = {
    "group:raw or group:clean": "raw+clean",
    "group:features": "features",
    "group:raw": "raw",
}


def op_config(op: str, config: dict) -> dict:
    return {"ops": {op: {"config": config}}} if config else {}


def run_range(start: date, end: date, selection: str) -> int:
    """One run over the range: what `dagster asset materialize --partition-range` does."""
    if selection in PARTIAL:
        outcome = execute_run(
            JOBS[selection],
            first=start.isoformat(),
            last=end.isoformat(),
            selection=SELECTIONS[selection],
            show=not VERBOSE,
        )
        out = sys.stdout if outcome.success else sys.stderr
        print("\n".join(outcome.lines), file=out, flush=True)
        return 0 if outcome.success else 1
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

    from ml_platform.cli.progress import QUIET_LOGGERS, RunProgress, expected_work, summary
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
    run_id = str(uuid.uuid4())
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        with RunProgress(instance, run_id, job.name, expected, show=show) as progress:
            try:
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=partition,
                    tags=all_tags,
                    run_config=run_config,
                    raise_on_error=False,
                    run_id=run_id,
                    asset_selection=keys,
                )
            except dg.DagsterError as e:  # refused before it ran: bad partition, bad config
                raise CliError(f"{job.name} {scope}: {one_line(e)}") from e
    seconds = time.perf_counter() - t0
    label = f"{job.name}[{STAGE_NAMES.get(selection, selection)}]" if selection else job.name
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


# -- chunked backfills ---------------------------------------------------------------------


# Worker processes import this module first (see _worker_context): as quiet as the CLI.
warnings.filterwarnings("ignore", message=r".*is currently in (preview|beta)")


def chunk_days() -> int:
    """Days per chunk: the backfill policy's size (ml_platform.partitions), without dagster."""
    from ml_platform.settings import load_settings

    settings = load_settings()
    return max(1, settings.backfill_rows_per_run // settings.rows_per_day)


def run_queue_limit() -> int:
    """The instance's run queue limit (dagster.yaml's max_concurrent_runs), else 2."""
    import yaml

    path = os.path.join(os.environ.get("DAGSTER_HOME", ""), "dagster.yaml")
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
        limit = config["run_coordinator"]["config"]["max_concurrent_runs"]
        return max(1, int(limit))
    except (OSError, KeyError, TypeError, ValueError):
        return 2


@dataclass
class ChunkRun:
    """One run of a chunked backfill: a stage (asset selection) of a chunk of days."""

    index: int
    stage: int
    first: date
    last: date
    selection: str
    needs: set[int] = field(default_factory=set)  # indexes of runs this one reads
    outcome: dict | None = None
    blocked_by: int | None = None

    @property
    def scope(self) -> str:
        return f"{self.first}..{self.last}" if self.first != self.last else str(self.first)


def plan_chunks(start: date, end: date, selection: str, days: int, window: int) -> list[ChunkRun]:
    """Runs for the range: chunks of ``days`` days, each in its stages (see STAGES)."""
    chunks = []
    first = start
    while first <= end:
        last = min(end, first + timedelta(days=days - 1))
        chunks.append((first, last))
        first = last + timedelta(days=1)
    runs: list[ChunkRun] = []
    by_stage: list[list[ChunkRun]] = []
    for stage, stage_selection in enumerate(STAGES[selection]):
        row = []
        for first, last in chunks:
            run = ChunkRun(len(runs), stage, first, last, stage_selection)
            if stage:  # reads the earlier stage's days from first - window through last
                run.needs = {
                    up.index
                    for up in by_stage[stage - 1]
                    if up.last >= first - timedelta(days=window) and up.first <= last
                }
            runs.append(run)
            row.append(run)
        by_stage.append(row)
    # Start order: chunk by chunk, a chunk's later stage as soon as it may run.
    return sorted(runs, key=lambda r: (r.first, r.stage))


def run_chunked_backfill(
    start: date,
    end: date,
    selection: str,
    workers: int | None,
    runs_out: list[ChunkRun] | None = None,
) -> int:
    """The range in chunks of the backfill policy's size, ``workers`` runs at a time.

    Every run executes in its own worker process (forked from a server that imported the
    code location once), so memory is bounded by one chunk per process, a crash ends only
    its own chunk, and both cores work. Each run is a real run on the instance, atomic on
    its own (see storage/current.py). A failed run fails alone: the runs that do not read
    its days still land, and the summary names it with the command that retries it.
    ``runs_out`` (tests, benchmarks) receives the runs with their outcomes.
    """
    from multiprocessing.connection import wait

    days = chunk_days()
    total_days = (end - start).days + 1
    if total_days <= days:
        return run_range(start, end, selection)
    from ml_platform.partitions import TRAILING_WINDOW_DAYS

    workers = workers or run_queue_limit()
    runs = plan_chunks(start, end, selection, days, TRAILING_WINDOW_DAYS)
    if runs_out is not None:
        runs_out.extend(runs)
    by_index = {r.index: r for r in runs}
    chunks = len({(r.first, r.last) for r in runs})
    print(
        f"backfill {start}..{end} ({selection}): {total_days} days in {chunks} chunks of up "
        f"to {days} days, {len(runs)} runs, {workers} at a time",
        flush=True,
    )
    ctx = _worker_context()
    # Create the instance's storage before runs open it side by side: two processes
    # initializing a fresh SQLite instance at once both stamp its schema version.
    init = ctx.Process(target=_open_instance, daemon=True)
    init.start()
    init.join()
    tag = {"ml_platform/backfill": f"cli-{uuid.uuid4().hex[:8]}"}
    t0 = time.perf_counter()
    pending = list(runs)
    running: dict = {}  # connection -> (process, run)
    while pending or running:
        for run in list(pending):
            if len(running) >= workers:
                break
            failed = [i for i in run.needs if _failed(by_index[i])]
            if failed:
                run.blocked_by = failed[0]
                pending.remove(run)
                continue
            if any(by_index[i].outcome is None for i in run.needs):
                continue
            pending.remove(run)
            receive, send = ctx.Pipe(duplex=False)
            args = (send, JOBS[selection], run.first.isoformat(), run.last.isoformat())
            kwargs = {"selection": run.selection, "tags": tag, "verbose": VERBOSE}
            process = ctx.Process(target=_chunk_worker, args=args, kwargs=kwargs, daemon=True)
            process.start()
            send.close()
            running[receive] = (process, run)
        if not running:
            continue
        for ready in wait(list(running)):
            process, run = running.pop(ready)
            try:
                run.outcome = ready.recv()
            except EOFError:  # the worker died without a word: killed, out of memory, crashed
                process.join()
                run.outcome = {
                    "success": False,
                    "lines": [
                        f"run FAILED: {JOBS[selection]}[{STAGE_NAMES[run.selection]}] "
                        f"{run.scope}: its worker process ended with exit code {process.exitcode}"
                    ],
                }
            process.join()
            ready.close()
            _report_run(run)
    return _backfill_summary(start, end, selection, runs, by_index, time.perf_counter() - t0)


def _failed(run: ChunkRun) -> bool:
    return run.outcome is not None and not run.outcome["success"]


def _worker_context():
    """Worker processes forked from a server that imported the code location once."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    # This module first: it silences Dagster's preview warnings in the server, as main does.
    ctx.set_forkserver_preload([__name__, "ml_platform.definitions"])
    return ctx


def _open_instance() -> None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
        instance.get_latest_materialization_event(dg.AssetKey("__none__"))
        instance.all_instigator_state()


def _chunk_worker(conn, job_name: str, first: str, last: str, *, selection, tags, verbose) -> None:
    """In a worker process: execute one run and send back its outcome."""
    import resource

    global VERBOSE
    VERBOSE = verbose
    try:
        outcome = execute_run(job_name, first=first, last=last, selection=selection, tags=tags)
        outcome.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conn.send(asdict(outcome))
    except Exception as e:  # noqa: BLE001 - reported as this run's failure
        conn.send({"success": False, "lines": [f"run FAILED: {first}..{last}: {one_line(e)}"]})
    finally:
        conn.close()


def _report_run(run: ChunkRun) -> None:
    outcome = run.outcome
    if outcome["success"]:
        print(outcome["lines"][0], flush=True)
    else:
        print("\n".join(outcome["lines"]), file=sys.stderr, flush=True)


def _backfill_summary(start, end, selection, runs, by_index, seconds: float) -> int:
    ok = [r for r in runs if r.outcome and r.outcome["success"]]
    failed = [r for r in runs if _failed(r)]
    blocked = [r for r in runs if r.blocked_by is not None]
    status = "succeeded" if not failed and not blocked else "FAILED"
    head = (
        f"backfill {status}: {selection} {start}..{end}, {len(ok)}/{len(runs)} runs "
        f"succeeded in {seconds:.1f}s"
    )
    if status == "succeeded":
        print(head, flush=True)
        return 0
    lines = [head]
    for run in failed:
        which = " --select features" if run.stage else f" --select {selection}"
        which = "" if which == " --select data" else which
        lines.append(
            f"  failed: {STAGE_NAMES[run.selection]} of {run.scope}; retry it with "
            f"`ml-platform backfill --from {run.first} --to {run.last}{which}`"
        )
    if blocked:
        first, last = min(r.first for r in blocked), max(r.last for r in blocked)
        lines.append(
            f"  not run: {', '.join(sorted({STAGE_NAMES[r.selection] for r in blocked}))} of "
            f"{len(blocked)} chunk(s) in {first}..{last}, which read a failed chunk's days; "
            f"after the retry run `ml-platform backfill --from {first} --to {last} "
            "--select features`"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 1
