"""Benchmark: quoting a range of days, in backfill chunks and as one run.

    .venv/bin/python bench/predict_range.py [--days 30] [--rows-per-day 200000] [--rounds 1]

On the data half's landed drops (bench/data_half.py), after a chunked data backfill and one
model trained on the range's third week and promoted, `ml-platform predict --date --to` over
the whole range two ways, each a fresh process tree on the same instance:
1. chunked: as the command runs by default (chunks of the backfill policy's size, the run
   queue's limit of them side by side, in worker processes);
2. one run: the same command with a chunk larger than the range (what it did before).
Reported: wall seconds, rows/s, peak RSS and PSS summed over the tree, average cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import data_half  # the same drops, environment and process-tree sampler

START = data_half.START
CLI = str(data_half.REPO / ".venv/bin/ml-platform")
VARIANTS = {"chunked": {}, "one run": {"ML_PLATFORM_BACKFILL_ROWS_PER_RUN": str(10**12)}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    last = (START + timedelta(days=args.days - 1)).isoformat()
    week = START + timedelta(days=14 - START.weekday())  # the third week's Monday
    with tempfile.TemporaryDirectory(prefix="predict-range-") as tmp:
        home = Path(tmp)
        (home / "dagster").mkdir()
        env = data_half._env(home, args.rows_per_day)
        data_half._land(home / "landing", args.days, args.rows_per_day)
        for command in (
            ["backfill", "--from", START.isoformat(), "--to", last],
            ["train", "--week", week.isoformat()],
            ["promote", "--week", week.isoformat(), "--reason", "benchmark"],
        ):
            _run(command, env)
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, extra in VARIANTS.items():
                # --force: the variants quote the same days with the same champion in turn.
                command = [CLI, "predict", "--date", START.isoformat(), "--to", last, "--force"]
                result = data_half.measure_command(command, env | extra, name)
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
    rows = args.days * args.rows_per_day
    print(f"\npredict {args.days} days at {args.rows_per_day:,} rows/day (best of the rounds)")
    print(f"{'variant':<9}{'seconds':>9}{'rows/s':>11}{'RSS MB':>9}{'PSS MB':>9}{'cores':>7}")
    for name, r in best.items():
        print(
            f"{name:<9}{r['seconds']:>9.1f}{rows / r['seconds']:>11,.0f}"
            f"{r['peak_rss_mb']:>9,.0f}{r['peak_pss_mb']:>9,.0f}{r['cores']:>7.2f}"
        )
    return 0


def _run(command: list[str], env: dict) -> None:
    done = subprocess.run([CLI, *command], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


if __name__ == "__main__":
    sys.exit(main())
