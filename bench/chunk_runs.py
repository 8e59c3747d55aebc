"""Benchmark: one backfill chunk's two runs, each alone, at a production volume.

    .venv/bin/python bench/chunk_runs.py [--rows-per-day 2000000] [--chunk-days 1 2]
                                         [--window-days 28]

The figures behind helm/README.md's table for a two-year backfill on GKE. Lands
``--window-days`` days and then one chunk of each ``--chunk-days`` size, materializes the
window's raw and clean shipments (not measured), and then runs each chunk's raw+clean run and
its features run (whose 28-day window is real clean data) the way a chunk worker or a run pod
runs it: alone, in a fresh process. Reported per run: wall seconds, CPU seconds (cores used =
CPU / wall) and the process's peak RSS, which is what a run pod's memory limit must hold.
Runs use the in-process executor, as chunk workers do. With ``--window-days`` under 28 the
features window is partly empty, so the features figures understate a production run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import data_half  # the same landed drops and environment as the data-half benchmark

START = data_half.START
PREPARE_CHUNK_DAYS = 2  # the window's own raw+clean runs: small enough for any volume here

# One run in this fresh process, as ml_platform.cli.backfill_chunks' workers run one.
RUN = """
import json, resource, sys, time
import pandera.polars  # imported before the clock starts, as in a warm worker
import ml_platform.definitions
from ml_platform.cli.backfill_chunks import STAGES
from ml_platform.cli.runs import execute_run

stage, first, last = sys.argv[1], sys.argv[2], sys.argv[3]
usage = lambda: sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
cpu, wall = usage(), time.perf_counter()
outcome = execute_run("data_pipeline", first=first, last=last, selection=STAGES["data"][int(stage)])
print(json.dumps({
    "ok": outcome.success,
    "wall": time.perf_counter() - wall,
    "cpu": usage() - cpu,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows-per-day", type=int, default=2_000_000)
    parser.add_argument("--chunk-days", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--window-days", type=int, default=28)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chunk-runs-") as tmp:
        home = Path(tmp)
        days = args.window_days + sum(args.chunk_days)
        data_half._land(home / "landing", days, args.rows_per_day)
        (home / "dagster").mkdir()
        env = {**data_half._env(home, args.rows_per_day), "ML_PLATFORM_EXECUTOR": "in_process"}
        t0 = time.perf_counter()
        for first in range(0, args.window_days, PREPARE_CHUNK_DAYS):
            last = min(first + PREPARE_CHUNK_DAYS, args.window_days) - 1
            _run(env, 0, _day(first), _day(last))
        print(f"window of {args.window_days} days cleaned in {time.perf_counter() - t0:.0f}s")
        print(f"\nchunk runs at {args.rows_per_day:,} rows a day, each alone in a fresh process")
        print(f"{'chunk':>6} {'run':11} {'seconds':>8} {'cores':>6} {'peak RSS MB':>12}")
        first = args.window_days
        for size in args.chunk_days:
            last = first + size - 1
            for stage, name in ((0, "raw+clean"), (1, "features")):
                result = _run(env, stage, _day(first), _day(last))
                print(
                    f"{size:>5}d {name:11} {result['wall']:8.1f} "
                    f"{result['cpu'] / result['wall']:6.2f} {result['peak_mb']:12,.0f}"
                )
            first = last + 1
    return 0


def _day(offset: int) -> str:
    return (START + timedelta(days=offset)).isoformat()


def _run(env: dict, stage: int, first: str, last: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(stage), first, last],
        env=env,
        cwd=data_half.REPO,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    if not result or not result["ok"]:
        sys.exit(f"run {stage} {first}..{last} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return result


if __name__ == "__main__":
    sys.exit(main())
