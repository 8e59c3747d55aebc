"""Ctrl-C in a chunked backfill: the runs it stops are recorded as failed, one summary says
what is left, no traceback, and the same command then finishes the range."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.processes import signals_as_from_a_terminal

BIN = Path(sys.executable).parent / "ml-platform"
START, DAYS = date(2026, 1, 1), 16
RANGE = ["--from", "2026-01-01", "--to", "2026-01-16"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("after", ["backfill ", " succeeded: "])
def test_ctrl_c_stops_the_runs_and_the_same_command_finishes(tmp_path, after):
    """Ctrl-C as the first runs start (the plan's line), and once one has landed."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "ML_PLATFORM_START_DATE": START.isoformat(),
        # One-day chunks of a few tens of thousands of rows: runs long enough to be stopped.
        "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "40000",
        "ML_PLATFORM_ROWS_PER_DAY": "40000",
    }
    env.pop("DAGSTER_HOME", None)
    generate_drops(home / "landing", START, DAYS, GeneratorConfig(rows_per_day=40_000))
    # Its own session, as a terminal's foreground job: the Ctrl-C goes to the whole group.
    proc = subprocess.Popen(
        [BIN, "backfill", *RANGE], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=signals_as_from_a_terminal,
    )  # fmt: skip
    for line in proc.stdout:
        if after in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err, err
    *stopped, last = err.strip().splitlines()
    assert re.match(r"backfill interrupted: data 2026-01-01\.\.2026-01-16, \d+/32 chunk", last)
    assert last.endswith(
        f"`ml-platform backfill {' '.join(RANGE)}` runs what is left (done days are not run again)"
    )
    assert all(
        re.match(r"run [0-9a-f-]{36} interrupted(?: before it started)?: data_pipeline", s)
        for s in stopped
    )

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            statuses = {r.run_id: r.status for r in instance.get_runs()}
    finally:
        del os.environ["DAGSTER_HOME"]
    # Nothing is left running or queued: every run the Ctrl-C stopped is a failed run.
    assert set(statuses.values()) <= {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    for line in stopped:
        assert statuses[line.split()[1]] == dg.DagsterRunStatus.FAILURE

    again = subprocess.run(
        [BIN, "backfill", *RANGE], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    done = re.search(r"32/32 chunk stages done in .*; (\d+) up to date, not run\)", again.stdout)
    assert done, again.stdout
    if after == " succeeded: ":
        assert int(done.group(1)) > 0, again.stdout
