"""Benchmark: analysts' `ml-platform sql` over a month of the data half, against plain DuckDB.

    .venv/bin/python bench/sql_queries.py [--days 30] [--rows-per-day 200000] [--workdir DIR]

On the data half's landed drops (bench/data_half.py) after a chunked data backfill (or on the
home at --workdir, kept between runs), each query three ways, each a fresh process:
1. floor: plain DuckDB over the current versions' Parquet files in place (listed once from
   `ml_platform.versions`; no catalog, no sha256 check, no copy: the least any SQL over
   these files can do);
2. `ml-platform sql` with its default memory limit;
3. `ml-platform sql` with ML_PLATFORM_SQL_MEMORY_LIMIT=500MB.
Reported: wall seconds (imports included), peak RSS, average cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import data_half  # the same drops, environment and process-tree sampler

START = data_half.START
CLI = str(data_half.REPO / ".venv/bin/ml-platform")
QUERIES = {
    "count clean": "SELECT count(*) FROM clean.shipments",
    "join raw+clean": (
        "SELECT count(*) FROM raw.shipments JOIN clean.shipments "
        "USING (shipment_id, partition_date)"
    ),
}
FLOOR = """
import json, sys, duckdb
files, query = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
for view, paths in files.items():
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {view.split('.')[0]}")
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
print(con.sql(query).fetchall())
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    parser.add_argument("--workdir", help="a home to build once and reuse")
    args = parser.parse_args()
    with nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory() as where:
        home = Path(where)
        env = data_half._env(home, args.rows_per_day)
        if not (home / "storage").exists():
            (home / "dagster").mkdir(parents=True, exist_ok=True)
            data_half._land(home / "landing", args.days, args.rows_per_day)
            last = (START + timedelta(days=args.days - 1)).isoformat()
            data_half.measure_command(
                [CLI, "backfill", "--from", START.isoformat(), "--to", last], env, "backfill"
            )
        files = json.dumps(_current_files(env))
        variants = {
            "floor": lambda q: [sys.executable, "-c", FLOOR, files, q],
            "sql": lambda q: [CLI, "sql", "--format", "csv", q],
            "sql 500MB": lambda q: [CLI, "sql", "--format", "csv", q],
        }
        limits = {"sql 500MB": {"ML_PLATFORM_SQL_MEMORY_LIMIT": "500MB"}}
        print(f"\nsql over {args.days} days at {args.rows_per_day:,} rows/day")
        print(f"{'query':<16}{'variant':<11}{'seconds':>9}{'RSS MB':>9}{'cores':>7}")
        for label, query in QUERIES.items():
            for name, command in variants.items():
                result = data_half.measure_command(
                    command(query), env | limits.get(name, {}), f"{label}: {name}"
                )
                print(
                    f"{label:<16}{name:<11}{result['seconds']:>9.1f}"
                    f"{result['peak_rss_mb']:>9,.0f}{result['cores']:>7.2f}",
                    flush=True,
                )
    return 0


def _current_files(env: dict) -> dict[str, list[str]]:
    """View -> the local paths of its current versions, as the platform's catalog lists them."""
    query = (
        "SELECT view, uri FROM ml_platform.versions "
        "WHERE view IN ('raw.shipments', 'clean.shipments') ORDER BY view, partition"
    )
    done = subprocess.run(
        [CLI, "sql", "--format", "json", query], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"listing the current versions failed:\n{done.stderr[-2000:]}")
    files: dict[str, list[str]] = {}
    for row in json.loads(done.stdout):
        files.setdefault(row["view"], []).append(unquote(urlparse(row["uri"]).path))
    return files


if __name__ == "__main__":
    sys.exit(main())
