"""The order a chunked backfill starts its runs in keeps every worker busy to the end."""

import heapq
import random
from datetime import date, timedelta

import pytest

from ml_platform.cli.backfill_chunks import ChunkRun, next_runnable, plan_chunks

CLEAN, FEATURES = "group:raw or group:clean", "group:features"


def _makespan(
    runs: list[ChunkRun], seconds: dict[int, float], workers: int = 2, failing=frozenset()
) -> float:
    """Simulates the backfill's scheduler: start what next_runnable gives while a worker is free."""
    by_index = {r.index: r for r in runs}
    pending, running, now = list(runs), [], 0.0
    while pending or running:
        while len(running) < workers and (run := next_runnable(pending, by_index)):
            heapq.heappush(running, (now + seconds[run.index], run.index))
        if not running:
            break
        now, index = heapq.heappop(running)
        by_index[index].outcome = {"success": index not in failing}
    return now


@pytest.mark.parametrize("days", [30, 90])
def test_no_worker_waits_long_at_the_end_of_a_backfill(days):
    """At most the last features run is left alone, whatever each run takes.

    Chunk by chunk (each chunk's features as soon as they could run), the last chunk's
    raw+clean started late and its features ran alone after it: in 200 draws of run times
    like those measured here (4-5 s raw+clean, 1.5-2.5 s features), up to 3.5 s past the
    work divided by the workers (a 30-day backfill ran 28.1 s where 24.1 s was possible).
    """
    first = date(2025, 1, 1)
    runs = plan_chunks(first, first + timedelta(days=days - 1), "data", 5, 28)
    draw = random.Random(days)
    for _ in range(200):
        seconds = {
            r.index: draw.uniform(4.0, 5.0) if r.selection == CLEAN else draw.uniform(1.5, 2.5)
            for r in runs
        }
        for run in runs:
            run.outcome = None
        longest_features = max(seconds[r.index] for r in runs if r.selection == FEATURES)
        spare = _makespan(runs, seconds) - sum(seconds.values()) / 2
        assert spare <= longest_features / 2


def test_runs_reading_a_failed_chunk_are_blocked_and_the_others_still_run():
    runs = plan_chunks(date(2025, 1, 1), date(2025, 3, 31), "data", 5, 28)
    first_clean = next(r for r in runs if r.stage == 0)
    _makespan(runs, dict.fromkeys((r.index for r in runs), 1.0), failing={first_clean.index})
    blocked = {r.index for r in runs if r.blocked_by == first_clean.index}
    reads_it = {r.index for r in runs if first_clean.index in r.needs}
    assert blocked == reads_it and blocked
    assert all(r.outcome is not None for r in runs if r.index not in blocked)


def test_a_chunk_that_succeeded_with_failed_checks_reports_them():
    """Quality warnings after a shock reached only the UI when predict ran in chunks: a
    succeeded chunk printed its first line only."""
    from ml_platform.cli.backfill_chunks import _reported
    from ml_platform.cli.runs import RunOutcome

    lines = [
        "run 1 succeeded: predict_prices[quotes+quality] 2026-02-03..2026-02-07, 5 partitions",
        "  rows: predictions/price_quotes 5,000",
        "  warning: check monitoring/prediction_quality:error_within_bounds 2026-02-04: 16 % off",
        "  in the UI: http://127.0.0.1:3000/runs/1 (start it with `ml-platform dev`)",
    ]
    outcome = RunOutcome("1", True, 1.0, lines)
    assert _reported(outcome, whole=False) == [lines[0], lines[2]]
    assert _reported(outcome, whole=True) == lines
