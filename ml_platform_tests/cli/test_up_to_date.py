"""`ml-platform backfill` runs only what would change: nothing is processed twice.

Run as a user runs it, on one home: a backfill of 8 days in 3-day chunks; the same backfill
again (nothing runs, no run is made); a re-drop of one day (that day's raw and clean run, and
the feature days whose window reads it); then `--force` (everything runs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops, write_drop

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "ml-platform"
START = date(2026, 1, 1)
RANGE = ["--from", "2026-01-01", "--to", "2026-01-08"]
SUCCEEDED = re.compile(r"^run [0-9a-f-]{36} succeeded: (\S+) (\S+), ", re.M)


def _cli(env, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def _failing_cli(env, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stdout + done.stderr
    return done


def _runs(home: Path) -> int:
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            return len(instance.get_run_records())
    finally:
        del os.environ["DAGSTER_HOME"]


def _env(home: Path) -> dict:
    """The CLI's environment on ``home``: 300-row days in 3-day chunks."""
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "ML_PLATFORM_START_DATE": START.isoformat(),
        "ML_PLATFORM_ROWS_PER_DAY": "300",
        "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "900",
    }
    env.pop("DAGSTER_HOME", None)
    return env


def test_a_backfill_runs_only_what_would_change(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    generate_drops(home / "landing", START, 8, GeneratorConfig(rows_per_day=300))

    first = _cli(env, "backfill", *RANGE)
    assert len(SUCCEEDED.findall(first.stdout)) == 6  # raw+clean and features of 3 chunks
    made = _runs(home)

    again = _cli(env, "backfill", *RANGE)
    assert SUCCEEDED.findall(again.stdout) == []
    assert again.stdout.count("up to date, not run: data_pipeline[") == 6
    assert "6/6 chunk stages done" in again.stdout and "(0 runs; 6 up to date" in again.stdout
    assert _runs(home) == made

    # The producer re-drops 2026-01-05 with other rows.
    write_drop(home / "landing", date(2026, 1, 5), GeneratorConfig(rows_per_day=250, seed=7))
    redrop = _cli(env, "backfill", *RANGE)
    assert sorted(SUCCEEDED.findall(redrop.stdout)) == [
        ("data_pipeline[features]", "2026-01-05..2026-01-06"),
        ("data_pipeline[features]", "2026-01-07..2026-01-08"),
        ("data_pipeline[raw+clean]", "2026-01-05"),
    ]
    assert redrop.stdout.count("up to date, not run: ") == 3

    forced = _cli(env, "backfill", *RANGE, "--force")
    assert len(SUCCEEDED.findall(forced.stdout)) == 6
    assert "up to date" not in forced.stdout.replace("0 up to date", "")

    # A range of one chunk is planned in one pass: a re-dropped day's raw, clean and
    # features, and the later feature days whose window reads it.
    one_chunk = {**env, "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "3000"}
    write_drop(home / "landing", date(2026, 1, 2), GeneratorConfig(rows_per_day=280, seed=8))
    single = _cli(one_chunk, "backfill", *RANGE)
    assert SUCCEEDED.findall(single.stdout) == [
        ("data_pipeline", "2026-01-02"),
        ("data_pipeline[features]", "2026-01-03..2026-01-08"),
    ]
    current = _cli(one_chunk, "backfill", *RANGE)
    assert current.stdout == (
        "up to date, not run: data_pipeline 2026-01-01..2026-01-08 (--force runs it again)\n"
    )


def test_a_failed_day_does_not_keep_the_other_days_of_its_run_missing(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    landing = home / "landing"
    generate_drops(landing, START, 6, GeneratorConfig(rows_per_day=300))
    # Day 2 holds a file that cannot be read; day 5 is half bad rows (a blocking check fails).
    (landing / "shipments" / "2026-01-02" / "part-bad.parquet").write_bytes(b"not parquet")
    write_drop(landing, date(2026, 1, 5), GeneratorConfig(rows_per_day=300, bad_row_share=0.5))

    failed = _failing_cli(env, "backfill", "--from", "2026-01-01", "--to", "2026-01-06")
    out = failed.stdout + failed.stderr
    assert "FAILED: data_pipeline[raw+clean] 2026-01-01..2026-01-03" in out
    assert "FAILED: data_pipeline[raw+clean] 2026-01-04..2026-01-06" in out
    # The other days of both runs ran again: raw and clean of days 1 and 3 (nothing of them
    # was stored), clean of days 4 and 6 (raw's step had stored them before clean failed).
    assert sorted(SUCCEEDED.findall(out)) == [
        ("data_pipeline[clean/shipments+clean/shipments_rejected]", "2026-01-04"),
        ("data_pipeline[clean/shipments+clean/shipments_rejected]", "2026-01-06"),
        ("data_pipeline[raw+clean]", "2026-01-01"),
        ("data_pipeline[raw+clean]", "2026-01-03"),
    ]
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            clean = instance.get_materialized_partitions(dg.AssetKey(["clean", "shipments"]))
    finally:
        del os.environ["DAGSTER_HOME"]
    assert clean == {"2026-01-01", "2026-01-03", "2026-01-04", "2026-01-06"}

    # Both drops corrected: only those two days' raw and clean run, and then the features.
    (landing / "shipments" / "2026-01-02" / "part-bad.parquet").unlink()
    write_drop(landing, date(2026, 1, 5), GeneratorConfig(rows_per_day=300))
    fixed = _cli(env, "backfill", "--from", "2026-01-01", "--to", "2026-01-06")
    assert sorted(SUCCEEDED.findall(fixed.stdout)) == [
        ("data_pipeline[features]", "2026-01-01..2026-01-03"),
        ("data_pipeline[features]", "2026-01-04..2026-01-06"),
        ("data_pipeline[raw+clean]", "2026-01-02"),
        ("data_pipeline[raw+clean]", "2026-01-05"),
    ]

    # A drop that cannot be read any more (here a FIFO among its files) fails its own day's
    # raw, naming the file, in a range of one chunk planned in one pass; the plan goes on
    # with a re-dropped later day, without the feature days whose window reads the failed one.
    os.mkfifo(landing / "shipments" / "2026-01-03" / "part-fifo.csv")
    write_drop(landing, date(2026, 1, 5), GeneratorConfig(rows_per_day=310, seed=9))
    one_chunk = {**env, "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "3000"}
    unreadable = _failing_cli(one_chunk, "backfill", "--from", "2026-01-01", "--to", "2026-01-06")
    assert "FAILED: data_pipeline 2026-01-03," in unreadable.stderr
    assert "part-fifo.csv" in unreadable.stderr
    assert SUCCEEDED.findall(unreadable.stderr) == [("data_pipeline[raw+clean]", "2026-01-05")], (
        unreadable.stdout + unreadable.stderr
    )


def test_a_first_backfill_in_one_run_keeps_the_good_days_of_a_failed_day(tmp_path):
    home = tmp_path / "home"
    env = {**_env(home), "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "3000"}  # one chunk
    landing = home / "landing"
    generate_drops(landing, START, 6, GeneratorConfig(rows_per_day=300))
    write_drop(landing, date(2026, 1, 3), GeneratorConfig(rows_per_day=300, bad_row_share=0.5))
    failed = _failing_cli(env, "backfill", "--from", "2026-01-01", "--to", "2026-01-06")
    out = failed.stdout + failed.stderr
    assert "FAILED: data_pipeline 2026-01-01..2026-01-06" in out
    # Raw's step had stored every day. Clean runs again for the days that passed, and the
    # features of the days before the failed one; the later feature days read it: not run.
    assert sorted(SUCCEEDED.findall(out)) == [
        (
            "data_pipeline[clean/shipments+clean/shipments_rejected+features/shipment_features]",
            "2026-01-01..2026-01-02",
        ),
        ("data_pipeline[clean/shipments+clean/shipments_rejected]", "2026-01-04..2026-01-06"),
    ]
    assert "FAILED" not in out.split("FAILED: data_pipeline 2026-01-01..2026-01-06", 1)[1]


def test_force_runs_the_other_days_of_a_failed_run_too(tmp_path):
    home = tmp_path / "home"
    env = _env(home)
    landing = home / "landing"
    generate_drops(landing, START, 3, GeneratorConfig(rows_per_day=300))
    _cli(env, "backfill", "--from", "2026-01-01", "--to", "2026-01-03", "--select", "raw")
    # Day 2 now holds a file that does not parse and one that cannot be read at all.
    (landing / "shipments" / "2026-01-02" / "part-bad.parquet").write_bytes(b"not parquet")
    os.mkfifo(landing / "shipments" / "2026-01-02" / "part-fifo.csv")
    forced = _failing_cli(
        env, "backfill", "--from", "2026-01-01", "--to", "2026-01-03", "--select", "raw", "--force"
    )
    assert "FAILED: ingest_shipments 2026-01-01..2026-01-03" in forced.stderr
    assert "part-bad.parquet" in forced.stderr and "part-fifo.csv" in forced.stderr  # both
    assert SUCCEEDED.findall(forced.stderr) == [
        ("ingest_shipments", "2026-01-01"),
        ("ingest_shipments", "2026-01-03"),
    ]


def test_a_retry_follows_what_it_rebuilds_into_the_later_days(tmp_path):
    home = tmp_path / "home"
    env = {**_env(home), "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "1000000"}  # one chunk
    landing = home / "landing"
    generate_drops(landing, START, 30, GeneratorConfig(rows_per_day=40))
    whole = ["backfill", "--from", "2026-01-01", "--to", "2026-01-30"]
    _cli(env, *whole)
    # Day 1 cannot be read any more; day 2 is re-dropped. Day 2's features read day 1's
    # clean (blocked), but features 2026-01-30, whose window starts on day 2, do not.
    os.mkfifo(landing / "shipments" / "2026-01-01" / "part-fifo.csv")
    write_drop(landing, date(2026, 1, 2), GeneratorConfig(rows_per_day=45, seed=11))
    failed = _failing_cli(env, *whole)
    assert "FAILED: data_pipeline 2026-01-01..2026-01-02," in failed.stderr
    assert SUCCEEDED.findall(failed.stderr) == [
        ("data_pipeline[raw+clean]", "2026-01-02"),
        ("data_pipeline[features]", "2026-01-30"),
    ], failed.stderr


# The CLI with the local landing zone failing, as a flaky disk would, on the third listing
# of 2026-01-03: planning, the run, then the retry's planning.
FLAKY_ZONE = """
import sys
from ml_platform.cli import main
from ml_platform.landing.zone import DropUnreadableError, LocalLandingZone

listings = {"n": 0}
list_files = LocalLandingZone.list_files

def flaky(self, partition):
    if partition == "2026-01-03":
        listings["n"] += 1
        if listings["n"] == 3:
            raise DropUnreadableError(f"{partition}: Input/output error", transient=True)
    return list_files(self, partition)

LocalLandingZone.list_files = flaky
sys.exit(main(sys.argv[1:]))
"""


def test_a_store_failing_while_the_retry_is_planned_keeps_the_failed_runs_report(tmp_path):
    home = tmp_path / "home"
    env = {**_env(home), "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "3000"}  # one chunk
    landing = home / "landing"
    generate_drops(landing, START, 3, GeneratorConfig(rows_per_day=300))
    three = ["backfill", "--from", "2026-01-01", "--to", "2026-01-03", "--select", "raw"]
    _cli(env, *three)
    for day in (1, 3):
        write_drop(landing, date(2026, 1, day), GeneratorConfig(rows_per_day=290, seed=day))
    (landing / "shipments" / "2026-01-02" / "part-bad.parquet").write_bytes(b"not parquet")
    done = subprocess.run(
        [sys.executable, "-c", FLAKY_ZONE, *three],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "FAILED: ingest_shipments 2026-01-01..2026-01-03" in done.stderr
    assert "part-bad.parquet" in done.stderr
    assert "not retried: 2026-01-03: Input/output error" in done.stderr
