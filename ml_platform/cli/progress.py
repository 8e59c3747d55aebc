"""What a person sees while a run works: a progress bar, then a short summary.

The run executes with Dagster's console logger silenced (``--verbose`` keeps the event
log); a thread polls the run's event records on the instance (materializations, check
results, step failures) and drives a rich progress bar. The summary is built from the same
records after the run ends, so it tells what the instance holds, not what the CLI guessed.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from ml_platform.cli.errors import CliError

UI_URL = "http://127.0.0.1:3000"
POLL_SECONDS = 0.25
# How much of a failed step's message the summary shows (the UI has all of it).
MESSAGE_LINES = 4
# Loggers config for a run whose progress the CLI shows itself: only a crash gets through.
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
# A failure's line is cut here: long enough for the decisive end of a message (a refused
# model's margin, both checksums of a mismatch), short of a dumped frame.
MESSAGE_CHARS = 1000


@dataclass
class Expected:
    """What a run should materialize: (asset, partition) pairs, counted per partition."""

    total: int
    per_partition: dict[str | None, int]

    @property
    def partitions(self) -> int:
        """How many partitions the run covers (0: an unpartitioned run)."""
        return len([p for p in self.per_partition if p is not None])


@dataclass
class RunTally:
    """What a run's event records say it did so far."""

    materialized: Counter = field(default_factory=Counter)  # partition -> materializations
    rows: Counter = field(default_factory=Counter)  # asset -> rows written
    failed_checks: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    cursor: str | None = None

    def partitions_done(self, expected: Expected) -> int:
        return sum(
            1
            for partition, wanted in expected.per_partition.items()
            if partition is not None and self.materialized[partition] >= wanted
        )


def expected_work(job_name: str, partition: str | None, first: str | None, last: str | None):
    """The (asset, partition) materializations a run of the job should record."""
    import dagster as dg

    from ml_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    job = next(j for j in defs.jobs if j.name == job_name)
    keys = job.selection.resolve(graph) if hasattr(job, "selection") else set()
    per_partition: Counter = Counter()
    for key in keys:
        partitions_def = defs.resolve_assets_def(key).partitions_def
        if partitions_def is None or not (partition or first):
            per_partition[None] += 1
            continue
        for wanted in dict.fromkeys([partition] if partition else [first, last]):
            if not partitions_def.has_partition_key(wanted):
                keys_now = partitions_def.get_partition_keys()
                span = f"{keys_now[0]}..{keys_now[-1]}" if keys_now else "none yet"
                raise CliError(
                    f"{job_name} {wanted}: no such partition of {key.to_user_string()} "
                    f"(its partitions now: {span})"
                )
        days = (
            [partition]
            if partition
            else partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
        )
        for day in days:
            per_partition[day] += 1
    return Expected(sum(per_partition.values()) or 1, dict(per_partition))


# A tag on every run the CLI executes, unique per run: execute_job picks the run id itself,
# so the progress bar finds the run by this tag.
CLI_RUN_TAG = "ml_platform/cli_run"


def poll(instance, run_id: str, tally: RunTally) -> RunTally:
    """Fold the run's new event records into the tally."""
    import dagster as dg

    wanted = {
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        dg.DagsterEventType.STEP_FAILURE,
    }
    while True:
        conn = instance.get_records_for_run(run_id, cursor=tally.cursor, of_type=wanted, limit=500)
        for record in conn.records:
            _fold(record.event_log_entry.dagster_event, tally)
        tally.cursor = conn.cursor
        if not conn.has_more:
            return tally


def _fold(event, tally: RunTally) -> None:
    if event is None:
        return
    if event.is_step_materialization:
        mat = event.step_materialization_data.materialization
        tally.materialized[mat.partition] += 1
        rows = mat.metadata.get("dagster/row_count")
        if rows is not None:
            tally.rows[mat.asset_key.to_user_string()] += int(rows.value)
    elif event.event_type_value == "ASSET_CHECK_EVALUATION":
        evaluation = event.event_specific_data
        if not evaluation.passed:
            where = f" {evaluation.partition}" if getattr(evaluation, "partition", None) else ""
            text = (evaluation.description or "").strip().splitlines()
            warning = getattr(evaluation.severity, "value", "") == "WARN"
            tally.failed_checks.append(
                f"{'warning: ' if warning else ''}check "
                f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}{where}"
                + (f": {text[0][:MESSAGE_CHARS]}" if text else "")
            )
    elif event.is_step_failure:
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        lines = [line.strip() for line in (error.message if error else "").splitlines()]
        lines = [line for line in lines if line][:MESSAGE_LINES] or ["failed"]
        # "dagster._core.definitions.events.Failure: text" -> "text"
        head, sep, rest = lines[0].partition(": ")
        if sep and "." in head and " " not in head:
            lines[0] = rest
        text = "\n    ".join(line[:MESSAGE_CHARS] for line in lines)
        tally.failed_steps.append(f"step {event.step_key} failed: {text}")


class RunProgress:
    """A progress bar fed by polling the run's records, from a thread, while the run works."""

    def __init__(self, instance, run_tag: str, label: str, expected: Expected, show: bool):
        """Follows the run tagged ``CLI_RUN_TAG=run_tag`` once it exists."""
        self.instance, self.run_tag, self.expected = instance, run_tag, expected
        self.run_id: str | None = None
        self.tally = RunTally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._progress = None
        if show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console = Console(stderr=True)
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[partitions]}"),
                TimeElapsedColumn(),
                TextColumn("elapsed, ETA"),
                TimeRemainingColumn(),
                console=console,
                # Piped output gets the summary only, not a frozen bar.
                disable=not console.is_terminal,
            )
            self._task = self._progress.add_task(
                label, total=expected.total, partitions=self._partitions_text()
            )

    def _partitions_text(self) -> str:
        if not self.expected.partitions:
            return f"{sum(self.tally.materialized.values())}/{self.expected.total} assets"
        done = self.tally.partitions_done(self.expected)
        return f"{done}/{self.expected.partitions} partitions"

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=min(sum(self.tally.materialized.values()), self.expected.total),
                partitions=self._partitions_text(),
            )

    def _find_run(self) -> str | None:
        import dagster as dg

        runs = self.instance.get_run_ids(
            filters=dg.RunsFilter(tags={CLI_RUN_TAG: self.run_tag}), limit=1
        )
        return runs[0] if runs else None

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.run_id = self.run_id or self._find_run()
                if self.run_id is None:
                    continue
                poll(self.instance, self.run_id, self.tally)
            except Exception:  # the run has not created its event log yet, or a busy db
                continue
            self._update()

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
            # Polled only to draw the bar: without one (backfill workers, --verbose) the
            # final poll below is all the summary needs, and the run's event writes do not
            # share the instance with a reader every quarter second.
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.run_id = self.run_id or self._find_run()
        if self.run_id is not None:
            poll(self.instance, self.run_id, self.tally)  # the final word, from the instance
        if self._progress is not None:
            self._update()
            self._progress.stop()


def summary(
    *, run_id: str, job: str, scope: str, success: bool, seconds: float, expected, tally
) -> list[str]:
    """The lines after a run: what it did, or what failed and where the details are."""
    status = "succeeded" if success else "FAILED"
    head = f"run {run_id} {status}: {job}{f' {scope}' if scope else ''}"
    if expected.partitions:
        done = tally.partitions_done(expected)
        plural = "s" if expected.partitions != 1 else ""
        head += (
            f", {expected.partitions} partition{plural}"
            if success
            else f", {done}/{expected.partitions} partitions done"
        )
    lines = [f"{head}, {seconds:.1f}s"]
    if tally.rows:
        lines.append("  rows: " + ", ".join(f"{a} {n:,}" for a, n in sorted(tally.rows.items())))
    problems = tally.failed_steps + tally.failed_checks
    for problem in problems[:10]:
        lines.append(f"  {problem}")
    if len(problems) > 10:
        lines.append(f"  ... and {len(problems) - 10} more")
    lines.append(f"  in the UI: {UI_URL}/runs/{run_id} (start it with `ml-platform dev`)")
    return lines
