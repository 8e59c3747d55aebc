"""Benchmark: a backfill run again, after a re-drop of one day, and with --force.

    .venv/bin/python bench/rerun_backfill.py [--days 30] [--rows-per-day 200000]

On the data half's landed drops (bench/data_half.py), one chunked `ml-platform backfill` of
the range, then the same command three more times, each a fresh process tree:
1. again: nothing changed, so no run is made;
2. after one re-dropped day (the middle one): its raw and clean, and the feature days whose
   28-day window reads it;
3. --force: everything again, as every backfill did before it planned from what is up to date.
Reported: wall seconds, runs made, peak RSS summed over the tree, average cores.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import data_half  # the same drops, environment and process-tree sampler

from ml_platform.demo.generator import GeneratorConfig, write_drop

START = data_half.START
CLI = str(data_half.REPO / ".venv/bin/ml-platform")
MADE = re.compile(r"\((\d+) runs;")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    args = parser.parse_args()
    last = (START + timedelta(days=args.days - 1)).isoformat()
    backfill = [CLI, "backfill", "--from", START.isoformat(), "--to", last]
    middle = START + timedelta(days=args.days // 2)
    with tempfile.TemporaryDirectory(prefix="rerun-backfill-") as tmp:
        home = Path(tmp)
        (home / "dagster").mkdir()
        env = data_half._env(home, args.rows_per_day)
        data_half._land(home / "landing", args.days, args.rows_per_day)
        rows = []
        for label, extra, before in (
            ("first", [], None),
            ("again", [], None),
            (f"re-drop {middle}", [], middle),
            ("--force", ["--force"], None),
        ):
            if before is not None:
                config = GeneratorConfig(rows_per_day=args.rows_per_day, seed=17)
                write_drop(home / "landing", before, config)
            result = data_half.measure_command([*backfill, *extra], env, label)
            rows.append((label, result))
    print(f"\nbackfill {args.days} days at {args.rows_per_day:,} rows/day, run again")
    print(f"{'variant':<22}{'seconds':>9}{'runs':>6}{'RSS MB':>9}{'cores':>7}")
    for label, r in rows:
        made = MADE.search(r["stdout"])
        print(
            f"{label:<22}{r['seconds']:>9.1f}{made.group(1) if made else '?':>6}"
            f"{r['peak_rss_mb']:>9,.0f}{r['cores']:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
