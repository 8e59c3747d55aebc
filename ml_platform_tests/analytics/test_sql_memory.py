"""`ml-platform sql`'s memory is bounded by its DuckDB limit, not by the partitions it reads.

A lake of raw and clean days, big enough that holding the rows in Python (as loading them
through polars did) would take several times the bound. The command runs as a user runs it,
in its own process; its peak RSS over every day is compared with the same query as of one
day, which reads one partition of each view.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta

import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.pipeline.helpers import Platform, run_failure_message

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS = 6
ROWS_PER_DAY = 60_000
LIMIT_MB = 64
# How much more the command may take for every day than for one: DuckDB keeps at most
# LIMIT_MB of tables and spills the rest; this leaves room for its bookkeeping and the
# per-file metadata of the days.
GROWTH_MB = 80

# Runs the command as the only child of a fresh process, so the children's peak RSS that
# process reports is exactly the command's.
PEAK_RSS = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print('peak_rss_mb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
    "sys.exit(done.returncode)"
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("sql_memory") / "home"
    with local_platform(home) as (defs, instance):
        generate_drops(home / "landing", START, DAYS, GeneratorConfig(rows_per_day=ROWS_PER_DAY))
        last = (START + timedelta(days=DAYS - 1)).isoformat()
        result = Platform(defs, instance).run(
            ["raw/shipments", "clean/shipments", "clean/shipments_rejected"],
            first=START.isoformat(),
            last=last,
        )
        assert result.success, run_failure_message(result)
        yield {"home": home, "dagster_home": instance.root_directory}


def run_measured(lake, *argv: str) -> tuple[subprocess.CompletedProcess, int]:
    """`ml-platform sql --format csv ARGV` as a user runs it: (its outcome, its peak RSS MB)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": lake["dagster_home"],
        "ML_PLATFORM_HOME": str(lake["home"]),
        "ML_PLATFORM_DEPLOYMENT": "local",
        "ML_PLATFORM_SQL_MEMORY_LIMIT": f"{LIMIT_MB}MB",
    }
    command = [sys.executable, "-m", "ml_platform.cli", "sql", "--format", "csv", *argv]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    *out, peak = done.stdout.strip().splitlines()
    assert peak.startswith("peak_rss_mb "), done.stdout
    done.stdout = "\n".join(out)
    return done, int(peak.split()[1])


def rows_in_memory_mb(lake, asset: str) -> float:
    """What the asset's stored rows take as polars frames."""
    files = sorted((lake["home"] / "storage" / asset).rglob("*.parquet"))
    return sum(pl.read_parquet(f).estimated_size("mb") for f in files)


JOIN = (
    "SELECT count(*) AS n, count(DISTINCT c.partition_date) AS days FROM raw.shipments r "
    "JOIN clean.shipments c USING (partition_date, shipment_id)"
)


def test_memory_does_not_grow_with_the_partitions_read(lake):
    held = rows_in_memory_mb(lake, "raw/shipments") + rows_in_memory_mb(lake, "clean/shipments")
    assert held > 2 * GROWTH_MB  # what one copy of the rows would add, were they held

    # As of one clean day, the views hold that day's raw and clean rows; currently, all days.
    one, one_peak = run_measured(
        lake, "--as-of", "clean/shipments", "--partition", START.isoformat(), JOIN
    )
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[1].split(",")[1] == "1"
    every, every_peak = run_measured(lake, JOIN)
    assert every.returncode == 0, every.stderr
    n, days = every.stdout.splitlines()[1].split(",")
    assert int(days) == DAYS and int(n) > 0.9 * DAYS * ROWS_PER_DAY
    assert every_peak - one_peak < GROWTH_MB, (every_peak, one_peak, held)


def test_a_query_of_the_catalog_alone_loads_no_view(lake):
    done, _ = run_measured(lake, "SELECT count(*) AS n FROM ml_platform.versions")
    assert done.returncode == 0, done.stderr
    loaded = [line for line in done.stderr.splitlines() if line.startswith("-- views loaded")]
    assert loaded == ["-- views loaded: none"], done.stderr
    done, _ = run_measured(lake, "SELECT count(*) AS n FROM clean.shipments")
    assert done.returncode == 0, done.stderr
    assert "-- views loaded: clean.shipments" in done.stderr.splitlines()


def test_a_result_as_large_as_the_lake_is_written_a_batch_at_a_time(lake, tmp_path):
    """The whole result was held in Python (Arrow table, polars frame, then the CSV text):
    the same query over every day took that much more than over two."""

    def rows_before(day: date) -> str:
        return f"SELECT * FROM raw.shipments WHERE partition_date < DATE '{day}'"  # noqa: S608

    held = rows_in_memory_mb(lake, "raw/shipments")
    assert held > GROWTH_MB  # what one copy of the result would add, were it held
    two, two_peak = run_measured(
        lake, "--output", str(tmp_path / "two.csv"), rows_before(START + timedelta(days=2))
    )
    assert two.returncode == 0, two.stderr
    out = tmp_path / "every.csv"
    every, every_peak = run_measured(
        lake, "--output", str(out), rows_before(START + timedelta(days=DAYS))
    )
    assert every.returncode == 0, every.stderr
    with open(out) as f:
        rows = sum(1 for _ in f) - 1
    assert rows > 0.9 * DAYS * ROWS_PER_DAY
    assert every_peak - two_peak < GROWTH_MB, (every_peak, two_peak, held)
