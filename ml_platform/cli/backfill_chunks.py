"""Chunked backfills from the CLI: the range in runs of the backfill policy's size, side by side.

Each run executes in a worker process forked from a server that imported the code location
once, at most the run queue's limit at a time; a chunk's features wait for the raw and clean
runs of every chunk their trailing window reads.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta

from ml_platform.cli import runs as single_runs
from ml_platform.cli.errors import one_line
from ml_platform.settings import load_settings

# A chunked backfill runs each chunk in stages: features read a trailing window of clean
# days, so a chunk's features wait for the raw+clean runs of every chunk that window touches
# (and chunks can run side by side: stage runs of different chunks are independent).
STAGES = {
    "data": ["group:raw or group:clean", "group:features"],
    "raw": ["group:raw"],
    "features": ["group:features"],
    "predict": ["group:predictions or group:monitoring"],
}
# What a stage's runs import beyond the code location, in the fork server once rather than
# in every worker: prediction runs load a model (scikit-learn and skops, about 2.6 s).
EXTRA_PRELOAD = {"predict": ["ml_platform.cli.model_preload"]}

# Worker processes import this module first (see _worker_context): as quiet as the CLI.
warnings.filterwarnings("ignore", message=r".*is currently in (preview|beta)")


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
    # Start order: every chunk's first stage, then the later stages, each in date order. The
    # last chunk's features need the last chunk's raw+clean, so those runs are on the longest
    # path: started last (chunk by chunk), they left one worker idle at the end while the
    # other ran the final features alone (a 30-day backfill: 28.1 s, 24.1 s in this order).
    return sorted(runs, key=lambda r: (r.stage, r.first))


def run_chunked_backfill(
    start: date,
    end: date,
    selection: str,
    workers: int | None,
    runs_out: list[ChunkRun] | None = None,
    days_per_run: int | None = None,
    force: bool = False,
) -> int:
    """The range in chunks of the backfill policy's size, ``workers`` runs at a time.

    Every run executes in its own worker process (forked from a server that imported the
    code location once), so memory is bounded by one chunk per process, a crash ends only
    its own chunk, and both cores work. Each run is a real run on the instance, atomic on
    its own (see storage/current.py). A failed run fails alone: the runs that do not read
    its days still land, and the summary names it with the command that retries it.
    ``runs_out`` (tests, benchmarks) receives the runs with their outcomes. ``days_per_run``
    overrides the settings' chunk size (the demo sizes it from the rows it lands). Each
    chunk's stage runs only what is not up to date (``ml_platform.provenance.up_to_date``),
    all of it with ``force``.
    """

    days = days_per_run or load_settings().backfill_days_per_run
    total_days = (end - start).days + 1
    if total_days <= days:
        return single_runs.run_range(start, end, selection, force=force)
    # From here a Ctrl-C sets a flag the loop reads between steps, rather than raising wherever
    # this process happens to be (starting a worker, closing a connection), mid-way and noisily.
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        return _chunked(start, end, selection, workers, runs_out, days, force, interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)


def _chunked(start, end, selection, workers, runs_out, days, force, interrupted) -> int:
    """The chunked backfill itself: plan, run side by side, summarize (or stop, interrupted)."""
    # Started first, the fork server imports the code location (about 1.7 s on one core) while
    # this process imports Dagster to plan the chunks, on the other core.
    ctx = _worker_context(EXTRA_PRELOAD.get(selection, []))
    from ml_platform.partitions import TRAILING_WINDOW_DAYS

    workers = workers or run_queue_limit()
    runs = plan_chunks(start, end, selection, days, TRAILING_WINDOW_DAYS)
    if runs_out is not None:
        runs_out.extend(runs)
    by_index = {r.index: r for r in runs}
    chunks = len({(r.first, r.last) for r in runs})
    print(
        f"backfill {start}..{end} ({selection}): {(end - start).days + 1} days in {chunks} chunks of up "
        f"to {days} days, {len(runs)} runs, {workers} at a time",
        flush=True,
    )
    tag = {"ml_platform/backfill": f"cli-{uuid.uuid4().hex[:8]}"}
    t0 = time.perf_counter()
    pending = list(runs)
    running: dict = {}  # connection -> (process, run)
    exiting: list = []  # workers that sent their outcome and are ending
    _run_all(ctx, selection, pending, running, exiting, by_index, tag, workers, force, interrupted)
    if interrupted.is_set():
        _stop_workers(running)
        return _interrupted_summary(start, end, selection, runs, time.perf_counter() - t0)
    for process in exiting:
        process.join()
    return _backfill_summary(start, end, selection, runs, by_index, time.perf_counter() - t0)


def _run_all(
    ctx, selection, pending, running, exiting, by_index, tag, workers, force, interrupted
) -> None:
    """Starts runs as workers free up, in order, until every run has an outcome or
    ``interrupted`` is set."""
    from multiprocessing.connection import wait

    while (pending or running) and not interrupted.is_set():
        while len(running) < workers and (run := next_runnable(pending, by_index)):
            receive, send = ctx.Pipe(duplex=False)
            args = (send, single_runs.JOBS[selection], run.first.isoformat(), run.last.isoformat())
            kwargs = {
                "selection": run.selection,
                "tags": tag,
                "verbose": single_runs.VERBOSE,
                "force": force,
            }
            process = ctx.Process(target=_chunk_worker, args=args, kwargs=kwargs, daemon=True)
            process.start()
            send.close()
            running[receive] = (process, run)
        if not running:
            continue
        for ready in wait(list(running), timeout=POLL_SECONDS):
            process, run = running.pop(ready)
            try:
                run.outcome = ready.recv()
            except EOFError:  # the worker died without a word: killed, out of memory, crashed
                process.join()
                run.outcome = {
                    "success": False,
                    "lines": [
                        f"run FAILED: {single_runs.JOBS[selection]}[{single_runs.STAGE_NAMES[run.selection]}] "
                        f"{run.scope}: its worker process ended with exit code {process.exitcode}"
                    ],
                }
            # Reaped later: a worker's exit (freeing a chunk's memory, interpreter teardown)
            # takes a moment that must not hold back the next run's start.
            exiting.append(process)
            ready.close()
            _report_run(run)
        exiting[:] = [p for p in exiting if p.is_alive()]


# How long an interrupted backfill waits for its workers to record their runs as failed.
STOP_SECONDS = 60
# How often the backfill's loop looks for a Ctrl-C while its runs work.
POLL_SECONDS = 0.2


def _stop_workers(running: dict) -> None:
    """Interrupts the running workers and waits until each has recorded its run as failed.

    Workers have their own process group (see _chunk_worker), so a Ctrl-C in the terminal
    reaches only this process; the SIGINT sent here reaches the worker alone, not the helper
    processes Dagster starts in it. A second Ctrl-C stops waiting.
    """
    from multiprocessing.connection import wait

    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops waiting
    for process, _ in running.values():
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    try:
        while running and (left := deadline - time.monotonic()) > 0:
            for ready in wait(list(running), timeout=left):
                process, run = running.pop(ready)
                try:
                    run.outcome = ready.recv()
                except EOFError:
                    run.outcome = {"success": False, "interrupted": True, "lines": []}
                process.join(timeout=max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass


def _interrupted_summary(start, end, selection, runs, seconds: float) -> int:
    """What landed before the Ctrl-C, the runs it stopped, and the command that finishes."""
    done = [r for r in runs if r.outcome and r.outcome["success"]]
    stopped = [r for r in runs if r.outcome and r.outcome.get("interrupted")]
    lines = [line for r in stopped for line in r.outcome["lines"]]
    which = "" if selection == "data" else f" --select {selection}"
    lines.append(
        f"backfill interrupted: {selection} {start}..{end}, {len(done)}/{len(runs)} chunk "
        f"stages done in {seconds:.1f}s; {len(stopped)} run(s) stopped. "
        f"`ml-platform backfill --from {start} --to {end}{which}` runs what is left "
        "(done days are not run again)"
    )
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 130


def next_runnable(pending: list[ChunkRun], by_index: dict[int, ChunkRun]) -> ChunkRun | None:
    """Takes the first pending run, in start order, whose inputs all succeeded.

    Runs reading a failed run's days are dropped from ``pending`` as blocked on it.
    """
    for run in list(pending):
        failed = [i for i in run.needs if _failed(by_index[i])]
        if failed:
            run.blocked_by = failed[0]
            pending.remove(run)
            continue
        if all(by_index[i].outcome is not None for i in run.needs):
            pending.remove(run)
            return run
    return None


def _failed(run: ChunkRun) -> bool:
    return run.outcome is not None and not run.outcome["success"]


def _worker_context(extra_preload: list[str]):
    """Worker processes forked from a server that imports the code location (and
    ``extra_preload``) once; the server starts now, not at the first worker's start."""
    import multiprocessing
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    # This module first: it silences Dagster's preview warnings in the server, as main does.
    ctx.set_forkserver_preload([__name__, "ml_platform.cli.worker_preload", *extra_preload])
    # The server starts with Ctrl-C ignored (an ignored signal stays ignored across exec): it
    # shares the terminal's process group, and a Ctrl-C while it imports the code location
    # would kill it under the backfill. Its workers start the same way, and take SIGINT
    # again once they have left that group (_chunk_worker).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)
    return ctx


def _chunk_worker(
    conn, job_name: str, first: str, last: str, *, selection, tags, verbose, force
) -> None:
    """In a worker process: execute what of one chunk's stage is not up to date (all of it
    with ``force``) and send back the outcome."""
    import resource

    # Its own process group: a Ctrl-C in the terminal reaches the backfill's process, which
    # interrupts this worker alone (see _stop_workers). Dagster's helper processes here (the
    # compute-log tails and their watchers) are then not signalled, and print no traceback.
    os.setpgid(0, 0)
    # Ignored until now (_worker_context). A SIGINT then sets a flag read before each run,
    # rather than raising wherever the worker is (closing a connection, planning); inside a
    # run, Dagster's own handler takes it and interrupts the run's steps.
    signal.signal(signal.SIGINT, lambda *_: single_runs.STOP.set())
    single_runs.VERBOSE = verbose
    try:
        outcomes = single_runs.execute_needed(
            job_name, first, last, selection, tags=tags, force=force
        )
        failed = [o for o in outcomes if not o.success]
        conn.send(
            {
                "success": not failed,
                "lines": [line for o in outcomes for line in _reported(o, failed)],
                "up_to_date": outcomes[0].up_to_date,
                "runs": sum(not o.up_to_date for o in outcomes),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    except KeyboardInterrupt as interrupt:  # runs.RunInterrupted names the run it stopped
        lines = [str(interrupt)] if str(interrupt) else []
        _send(conn, {"success": False, "interrupted": True, "lines": lines})
    except Exception as e:  # noqa: BLE001 - reported as this run's failure
        _send(conn, {"success": False, "lines": [f"run FAILED: {first}..{last}: {one_line(e)}"]})
    finally:
        conn.close()


def _reported(outcome, whole: bool) -> list[str]:
    """A run's summary lines for the backfill's output: all of them when ``whole``, else its
    first line and any failed check (warnings included: a quality warning after a shock
    must reach whoever runs the backfill, not only the UI)."""
    if whole:
        return outcome.lines
    return outcome.lines[:1] + [line for line in outcome.lines[1:] if "check " in line]


def _send(conn, outcome: dict) -> None:
    """Sends a worker's outcome; the backfill's process may have stopped listening."""
    try:
        conn.send(outcome)
    except OSError:  # BrokenPipeError: it was interrupted and is gone
        pass


def _report_run(run: ChunkRun) -> None:
    outcome = run.outcome
    if outcome["success"]:
        print("\n".join(outcome["lines"]), flush=True)
    else:
        print("\n".join(outcome["lines"]), file=sys.stderr, flush=True)


def _backfill_summary(start, end, selection, runs, by_index, seconds: float) -> int:
    ok = [r for r in runs if r.outcome and r.outcome["success"]]
    current = [r for r in ok if r.outcome.get("up_to_date")]
    failed = [r for r in runs if _failed(r)]
    blocked = [r for r in runs if r.blocked_by is not None]
    status = "succeeded" if not failed and not blocked else "FAILED"
    made = sum(r.outcome.get("runs", 1) for r in ok)
    head = (
        f"backfill {status}: {selection} {start}..{end}, {len(ok)}/{len(runs)} chunk stages "
        f"done in {seconds:.1f}s ({made} runs; {len(current)} up to date, not run)"
    )
    if status == "succeeded":
        print(head, flush=True)
        return 0
    lines = [head]
    for run in failed:
        which = " --select features" if run.stage else f" --select {selection}"
        which = "" if which == " --select data" else which
        lines.append(
            f"  failed: {single_runs.STAGE_NAMES[run.selection]} of {run.scope}; retry it with "
            f"`ml-platform backfill --from {run.first} --to {run.last}{which}`"
        )
    if blocked:
        first, last = min(r.first for r in blocked), max(r.last for r in blocked)
        lines.append(
            f"  not run: {', '.join(sorted({single_runs.STAGE_NAMES[r.selection] for r in blocked}))} of "
            f"{len(blocked)} chunk(s) in {first}..{last}, which read a failed chunk's days; "
            f"after the retry run `ml-platform backfill --from {first} --to {last} "
            "--select features`"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)
    return 1
