"""What a person sees: progress and a summary, one clear line for bad input, exit codes.

Every command runs as a user runs it: the installed `ml-platform` script in a subprocess,
against one platform home shared by the tests of this module (in file order).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

BIN = Path(sys.executable).parent / "ml-platform"
RUN_LINE = re.compile(r"^run [0-9a-f-]{36} (succeeded|FAILED): ", re.M)
UI_LINE = re.compile(r"in the UI: http://127\.0\.0\.1:3000/runs/[0-9a-f-]{36}")


def _cli(env, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _no_noise(result: subprocess.CompletedProcess) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert " - DEBUG - " not in text and "DEBUG" not in text
    assert "deprecated" not in text.lower() and "superseded" not in text.lower()
    assert "Warning" not in text, text


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli") / "home"
    environ = {**os.environ, "ML_PLATFORM_HOME": str(home)}
    environ.pop("DAGSTER_HOME", None)
    environ.pop("ML_PLATFORM_TRACEBACK", None)
    return environ


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backfill", "--from", "2026-13-01", "--to", "2026-01-02"], "month must be in 1..12"),
        (["train", "--week", "2026-02-03"], "is a Tuesday; a model week is named by its Monday"),
        (["predict", "--date", "2026-02-30"], "day is out of range for month"),
        (
            ["train", "--week", "2026-02-02", "--param", "learning_rate=fast"],
            "learning_rate=fast: the value must be a number",
        ),
        (["train", "--week", "2026-02-02", "--param", "learning_rate"], "expected NAME=VALUE"),
        (
            ["train", "--week", "2026-02-02", "--param", "learing_rate=0.05"],
            "--param learing_rate: no such hyperparameter; did you mean learning_rate?",
        ),
        (
            ["train", "--week", "2026-02-02", "--param", "max_leaf_nodes=1"],
            "--param max_leaf_nodes=1: must be greater than or equal to 2",
        ),
        (
            ["train", "--week", "2026-02-02", "--param", "holdout_days=2.5"],
            "--param holdout_days=2.5: must be a valid integer",
        ),
        (["backfill", "--from", "2026-01-05", "--to", "2026-01-02"], "is before --from"),
        (["predict", "--date", "2026-02-05", "--to", "2026-02-01"], "is before --date"),
        (["demo", "--rows-per-day", "0"], "--rows-per-day: must be at least 1"),
        (["promote", "--week", "2026-02-03", "--reason", "x"], "is a Tuesday"),
        (["promote", "--week", "2026-02-30", "--reason", "x"], "day is out of range"),
        (["promote", "--model", "12a", "--reason", "x"], "'12a' is not a storage id"),
        (["promote", "--week", "2026-02-02", "--reason", " "], "say why"),
        (["promote", "--reason", "x"], "one of the arguments --week --model is required"),
        (
            ["lineage", "predictions/price_quote", "--partition", "2026-02-03"],
            "no asset predictions/price_quote; did you mean predictions/price_quotes?",
        ),
        (
            ["impact", "clean/shipment", "--partition", "2026-02-03"],
            "no asset clean/shipment; did you mean clean/shipments?",
        ),
        (["explain", "--date", "garbage"], "'garbage' is not a day written YYYY-MM-DD"),
        (["generate", "--start", "2026-13-01"], "'2026-13-01' is not a day written YYYY-MM-DD"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(env, args, expected):
    result = _cli(env, *args, timeout=120)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ml-platform {args[0]}: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_demo_shows_a_summary_per_run_and_no_event_log(env):
    result = _cli(env, "demo", "--days", "38", "--rows-per-day", "300")
    assert result.returncode == 0, result.stderr
    _no_noise(result)
    out = result.stdout
    assert re.search(r"^landed 38 daily drops 2026-01-01\.\.2026-02-07, 11,400 rows", out, re.M)
    runs = RUN_LINE.findall(out)
    assert runs == ["succeeded"] * 4, out
    assert re.search(
        r"succeeded: data_pipeline 2026-01-01\.\.2026-02-04, 35 partitions, [\d.]+s$", out, re.M
    )
    assert re.search(r"^  rows: .*raw/shipments 10,500", out, re.M)
    assert "succeeded: predict_prices 2026-02-02..2026-02-04, 3 partitions" in out
    assert len(UI_LINE.findall(out)) == 4
    assert len(out.splitlines()) < 20  # not one line per event

    # The same demo again lands the same drops: nothing is built, trained or quoted twice
    # (the automatic promotion's run finds the model live already).
    again = _cli(env, "demo", "--days", "38", "--rows-per-day", "300")
    assert again.returncode == 0, again.stderr
    _no_noise(again)
    assert "up to date, not run: data_pipeline 2026-01-01..2026-02-04" in again.stdout
    assert "up to date, not trained: price_model 2026-01-26" in again.stdout
    assert "up to date, not run: predict_prices 2026-02-02..2026-02-04" in again.stdout
    assert RUN_LINE.findall(again.stdout) == ["succeeded"], again.stdout  # the promotion's
    assert "succeeded: promote_champion" in again.stdout


@pytest.mark.slow
def test_predict_prints_a_summary_and_verbose_shows_the_event_log(env):
    current = _cli(env, "predict", "--date", "2026-02-03")  # the demo quoted it
    assert current.returncode == 0, current.stderr
    _no_noise(current)
    assert current.stdout == (
        "up to date, not run: predict_prices 2026-02-03 (--force runs it again)\n"
    )
    quiet = _cli(env, "predict", "--date", "2026-02-03", "--force")
    assert quiet.returncode == 0, quiet.stderr
    _no_noise(quiet)
    assert "succeeded: predict_prices 2026-02-03, 1 partition," in quiet.stdout
    assert "predictions/price_quotes" in quiet.stdout

    verbose = _cli(env, "backfill", "--from", "2026-01-02", "--to", "2026-01-02", "-v", "--force")
    assert verbose.returncode == 0, verbose.stderr
    assert "STEP_SUCCESS" in verbose.stdout + verbose.stderr  # Dagster's event log
    assert RUN_LINE.search(verbose.stdout)


@pytest.mark.slow
def test_a_quarantined_file_fails_the_run_with_a_short_summary(env):
    folder = Path(env["ML_PLATFORM_HOME"]) / "landing" / "shipments" / "2026-01-03"
    bad = folder / "part-009.csv"
    bad.write_bytes(b"\xff\xfe not utf-8")
    try:
        result = _cli(
            env, "backfill", "--from", "2026-01-02", "--to", "2026-01-04", "--select", "raw"
        )
    finally:
        bad.unlink()
    assert result.returncode == 1
    _no_noise(result)
    err = result.stderr
    assert re.search(
        # Only the day whose drop changed runs: the other two are up to date.
        r"^run [0-9a-f-]{36} FAILED: ingest_shipments 2026-01-03,",
        err,
        re.M,
    )
    assert "step raw__shipments failed" in err and "part-009.csv: not valid UTF-8" in err
    assert "copied to quarantine: file://" in err and UI_LINE.search(err)
    assert len(err.splitlines()) <= 6


@pytest.mark.slow
def test_a_failed_check_fails_the_run_with_a_short_summary(env):
    # A re-drop of a good day with 40 % bad rows: the blocking row-count check fails.
    redrop = [
        "generate",
        "--start",
        "2026-01-06",
        "--rows-per-day",
        "300",
        "--bad-row-share",
        "0.4",
    ]
    assert _cli(env, *redrop).returncode == 0
    result = _cli(env, "backfill", "--from", "2026-01-06", "--to", "2026-01-06")
    assert result.returncode == 1
    _no_noise(result)
    err = result.stderr
    assert re.search(
        r"^run [0-9a-f-]{36} FAILED: data_pipeline 2026-01-06, 0/1 partitions", err, re.M
    )
    assert re.search(r"^  check clean/shipments:row_count_sanity 2026-01-06", err, re.M), err
    assert UI_LINE.search(err) and len(err.splitlines()) <= 8


@pytest.mark.slow
def test_a_range_outside_the_calendar_is_one_line_and_runs_nothing(env):
    """A range running past today failed chunk by chunk, naming retries that could never
    succeed, and left the valid days undone; now nothing runs and one line says why."""
    today = datetime.now(UTC).date()
    later = today + timedelta(days=6)
    for args, flag in [
        (["predict", "--date", "2019-01-01"], "--date 2019-01-01"),
        (
            ["backfill", "--from", str(today - timedelta(days=2)), "--to", str(later)],
            f"--to {later}",
        ),
        (
            ["backfill", "--from", "2099-01-01", "--to", "2099-01-02", "--submit"],
            "--from 2099-01-01",
        ),
    ]:
        result = _cli(env, *args)
        assert result.returncode == 2, result
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(
            f"ml-platform {args[0]}: {flag} is outside the daily partitions, "
        ), result.stderr
        assert f"..{today} (a day's partition exists from that day on)" in result.stderr


@pytest.mark.slow
def test_explain_without_a_resolvable_champion_is_one_line(env, monkeypatch):
    # The champion's record goes (its run deleted): the predictions point at nothing.
    home = Path(env["ML_PLATFORM_HOME"]) / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the local storage's base_dir
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs(filters=dg.RunsFilter(job_name="promote_champion")):
            instance.delete_run(run.run_id)
    result = _cli(env, "explain", "--date", "2026-02-03")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ml-platform explain: ")


def test_a_demo_larger_than_a_backfill_chunk_runs_in_chunks(tmp_path):
    """The demo sizes its chunks from the rows it lands (here 1,000 rows a run, 200 a day)."""
    environ = {
        **os.environ,
        "ML_PLATFORM_HOME": str(tmp_path / "home"),
        "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "1000",
    }
    environ.pop("DAGSTER_HOME", None)
    result = _cli(
        environ, "demo", "--days", "8", "--rows-per-day", "200", "--materialize-days", "8"
    )
    assert result.returncode == 0, result.stderr
    _no_noise(result)
    assert "8 days in 2 chunks of up to 5 days, 4 runs" in result.stdout, result.stdout
    assert RUN_LINE.findall(result.stdout) == ["succeeded"] * 4, result.stdout
    assert re.search(r"^backfill succeeded: data .*, 4/4 chunk stages", result.stdout, re.M)


@pytest.mark.slow
def test_a_reader_that_stops_early_ends_the_command_quietly(env):
    """`ml-platform stale | head -1` ended with "ml-platform stale: BrokenPipeError", exit 1."""
    proc = subprocess.Popen(
        [str(BIN), "stale"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert err == ""


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ML_PLATFORM_START_DATE", "garbage", "ML_PLATFORM_START_DATE='garbage' is not a day"),
        (
            "ML_PLATFORM_START_DATE",
            "2026-02-30",
            "ML_PLATFORM_START_DATE='2026-02-30' is not a day",
        ),
        ("ML_PLATFORM_ROWS_PER_DAY", "0", "ML_PLATFORM_ROWS_PER_DAY='0' must be a positive"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, variable, value, expected):
    """A bad start date said only 'Invalid isoformat string', not which setting."""
    environ = {**os.environ, "ML_PLATFORM_HOME": str(tmp_path / "home"), variable: value}
    environ.pop("DAGSTER_HOME", None)
    result = _cli(environ, "champion", timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
