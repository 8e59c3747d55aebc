"""A chunked backfill's memory is bounded by a chunk, whatever the number of partitions.

Runs `ml-platform backfill`'s chunked path over 2 and 6 chunks of small partitions (in a
fresh process each, since the worker processes' fork server keeps the environment it
started with) and compares the peak RSS of the worker processes: each run of a chunk is a
process of its own, so more chunks must not mean more memory in any of them. Also checks
that the runs covered every chunk and stage, ran side by side, and all succeeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta

import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops

START = date(2026, 1, 1)
ROWS_PER_DAY = 2_000
CHUNK_DAYS = 3

SCRIPT = """
import json, sys
from datetime import date
from ml_platform.cli.backfill_chunks import run_chunked_backfill
runs = []
code = run_chunked_backfill(
    date.fromisoformat(sys.argv[1]), date.fromisoformat(sys.argv[2]), "data", 2, runs
)
print(json.dumps({"code": code, "runs": [
    {"stage": r.stage, "first": str(r.first), "last": str(r.last),
     "success": bool(r.outcome and r.outcome["success"]),
     "peak_rss_mb": (r.outcome or {}).get("peak_rss_mb", 0)}
    for r in runs]}))
"""


def _backfill(home, days: int) -> dict:
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "ML_PLATFORM_START_DATE": START.isoformat(),
        "ML_PLATFORM_ROWS_PER_DAY": str(ROWS_PER_DAY),
        "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": str(ROWS_PER_DAY * CHUNK_DAYS),
    }
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    last = START + timedelta(days=days - 1)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, START.isoformat(), last.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_worker_memory_does_not_grow_with_the_number_of_chunks(tmp_path):
    landing = tmp_path / "landing"
    config = GeneratorConfig(rows_per_day=ROWS_PER_DAY, bad_row_share=0.01)
    generate_drops(landing, START, 6 * CHUNK_DAYS, config)
    peaks = {}
    for chunks in (2, 6):
        home = tmp_path / f"home{chunks}"
        home.mkdir()
        (home / "landing").symlink_to(landing)
        out = _backfill(home, chunks * CHUNK_DAYS)
        assert out["code"] == 0
        runs = out["runs"]
        assert len(runs) == 2 * chunks  # raw+clean and features of every chunk
        assert all(r["success"] for r in runs)
        assert {(r["first"], r["last"]) for r in runs} == {
            (str(START + timedelta(days=k)), str(START + timedelta(days=k + CHUNK_DAYS - 1)))
            for k in range(0, chunks * CHUNK_DAYS, CHUNK_DAYS)
        }
        peaks[chunks] = max(r["peak_rss_mb"] for r in runs)
    # Three times the partitions, the same memory per process (within noise).
    assert peaks[6] <= peaks[2] * 1.15 + 30, peaks


RUN_SCRIPT = """
import glob, json, sys
import polars as pl
import dagster as dg
from ml_platform.cli import runs
import ml_platform.definitions, pandera.polars  # imports before the baseline
with dg.DagsterInstance.get() as instance:
    instance.get_runs(limit=1)

def rss_mb(field):
    status = open("/proc/self/status").read()
    return int(status.split(field + ":")[1].split()[0]) / 1024

base = rss_mb("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # VmHWM from here on: the run's own peak
out = runs.execute_run("data_pipeline", first=sys.argv[1], last=sys.argv[2],
                       selection="group:raw or group:clean")
peak = rss_mb("VmHWM")
raw = pl.read_parquet(glob.glob(sys.argv[3] + "/raw/shipments/*/*.parquet"))
print(json.dumps({"ok": out.success, "growth_mb": peak - base,
                  "raw_mb": raw.estimated_size() / 2**20}))
"""


@pytest.mark.timeout(300)
def test_a_run_releases_each_step_output_once_it_is_stored(tmp_path):
    """A CLI run holds one step's frames at a time, not every output of the run.

    Dagster's execute_in_process keeps every step output in memory until the run ends, so
    a raw+clean run held raw, clean and the rejects at once (growth 5.2x the raw frame
    here); through execute_job each output is released once stored (3.7x).
    """
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    generate_drops(
        home / "landing", START, 3, GeneratorConfig(rows_per_day=100_000, bad_row_share=0.01)
    )
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "ML_PLATFORM_START_DATE": START.isoformat(),
    }
    last = START + timedelta(days=2)
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            RUN_SCRIPT,
            START.isoformat(),
            last.isoformat(),
            str(home / "storage"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["ok"]
    assert out["growth_mb"] < 4.4 * out["raw_mb"], out
