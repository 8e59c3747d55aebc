"""`ml-platform sql` on the local lake: current views, views as of a quote day, read-only.

One small history on a real instance, built by the platform's own jobs: 16 days of drops,
a model trained and promoted, two quote days; then the drop of a quoted day is re-landed
with other rows and raw, clean and features of that day are rebuilt. As of the quotes of
that day, the views must hold the original rows; the current views the new ones.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.analytics.helpers import run_sql
from ml_platform_tests.pipeline.helpers import (
    DATA_ASSETS,
    Platform,
    current_version,
    run_failure_message,
)

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS = 16
WEEK = "2026-01-05"
DAY = "2026-01-13"  # quoted, then re-dropped
QUOTES = dg.AssetKey(["predictions", "price_quotes"])


def ok(result):
    assert result.success, run_failure_message(result)


def versions_of(instance, asset: str) -> dict:
    """Current version of DAY for raw, clean and features (key, rows, storage id, ...)."""
    return current_version(instance, asset, DAY)


def file_sums(storage: Path, version: dict, column: str = "price_eur") -> tuple[int, float]:
    frame = pl.read_parquet(storage / version["key"])
    return frame.height, float(frame[column].sum())


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("sql") / "home"
    with local_platform(home) as (defs, instance):
        generate_drops(home / "landing", START, DAYS, GeneratorConfig(rows_per_day=300))
        p = Platform(defs, instance)
        ok(p.run(DATA_ASSETS, first=START.isoformat(), last="2026-01-16"))
        ok(p.train(WEEK, min_training_rows=1_000, max_iter=50))
        ok(p.promote(WEEK, reason="sql test"))
        ok(p.predict(DAY, "2026-01-14"))
        quotes = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=QUOTES, asset_partitions=[DAY]), limit=1
        ).records[0]
        before = {a: versions_of(instance, a) for a in DATA_ASSETS[:2] + DATA_ASSETS[3:]}
        # The drop of DAY is re-landed with other rows; its raw, clean and features rebuilt.
        generate_drops(
            home / "landing",
            date.fromisoformat(DAY),
            1,
            GeneratorConfig(rows_per_day=250, seed=99),
        )
        ok(p.run(DATA_ASSETS, partition=DAY))
        after = {a: versions_of(instance, a) for a in before}
        yield {
            "defs": defs,
            "instance": instance,
            "home": home,
            "storage": home / "storage",
            "quotes": quotes,
            "before": before,
            "after": after,
        }


def sql(lake, query=None, **options) -> tuple[int, str, str]:
    """The command in process: (exit code, stdout, stderr)."""
    return run_sql(lake, query, **options)


def as_json(lake, query, **options) -> list[dict]:
    code, out, err = sql(lake, query, format="json", **options)
    assert code == 0, err
    return json.loads(out)


AS_OF_DAY = {"as_of": "predictions/price_quotes", "partition": DAY}


def test_the_redrop_changed_the_day(lake):
    before, after = lake["before"], lake["after"]
    for asset in before:
        assert before[asset]["storage_id"] != after[asset]["storage_id"]
    assert file_sums(lake["storage"], before["features/shipment_features"]) != file_sums(
        lake["storage"], after["features/shipment_features"]
    )


def test_as_of_a_quote_day_returns_the_rows_it_was_made_from(lake):
    storage, before = lake["storage"], lake["before"]
    # What the quotes' provenance recorded about the features they read.
    inputs = lake["quotes"].asset_materialization.metadata["ml_platform/inputs"].value
    (features_read,) = next(e for e in inputs if e["asset"] == "features/shipment_features")[
        "partitions"
    ]
    assert features_read["storage_id"] == before["features/shipment_features"]["storage_id"]
    rows, price_sum = file_sums(storage, before["features/shipment_features"])
    assert rows == features_read["rows"]

    (got,) = as_json(
        lake,
        "SELECT count(*) AS n, sum(price_eur) AS s, min(partition_date) AS d "
        "FROM features.shipment_features",
        **AS_OF_DAY,
    )
    assert (got["n"], got["d"]) == (features_read["rows"], DAY)
    assert got["s"] == pytest.approx(price_sum, rel=1e-12)

    # Transitively: the clean and raw rows of DAY those features were built from.
    for asset, view in (("clean/shipments", "clean.shipments"), ("raw/shipments", "raw.shipments")):
        rows = pl.read_parquet(storage / before[asset]["key"]).height
        assert rows == before[asset]["rows"]
        (got,) = as_json(
            lake,
            f"SELECT count(*) AS n FROM {view} WHERE partition_date = DATE '{DAY}'",  # noqa: S608
            **AS_OF_DAY,
        )
        assert got["n"] == rows, view
    (clean,) = as_json(
        lake,
        f"SELECT sum(price_eur) AS s FROM clean.shipments WHERE partition_date = '{DAY}'",  # noqa: S608
        **AS_OF_DAY,
    )
    assert clean["s"] == pytest.approx(file_sums(storage, before["clean/shipments"])[1])

    # Only the versions the provenance names: one quote day, the features' 28-day window.
    views = as_json(
        lake,
        "SELECT view, count(*) AS versions FROM ml_platform.versions GROUP BY ALL ORDER BY 1",
        **AS_OF_DAY,
    )
    counts = {v["view"]: v["versions"] for v in views}
    assert counts["predictions.price_quotes"] == 1
    assert counts["features.shipment_features"] == 1
    assert counts["clean.shipments"] == 13  # 2026-01-01 .. DAY
    assert "monitoring.prediction_quality" not in counts


def test_current_views_hold_the_new_versions(lake):
    storage, after = lake["storage"], lake["after"]
    rows, price_sum = file_sums(storage, after["features/shipment_features"])
    (got,) = as_json(
        lake,
        f"SELECT count(*) AS n, sum(price_eur) AS s FROM features.shipment_features WHERE partition_date = '{DAY}'",  # noqa: S608
    )
    assert got["n"] == rows == after["features/shipment_features"]["rows"]
    assert got["s"] == pytest.approx(price_sum, rel=1e-12)
    (total,) = as_json(lake, "SELECT count(*) AS n FROM raw.shipments")
    assert total["n"] == 300 * (DAYS - 1) + 250
    (quality,) = as_json(
        lake, "SELECT count(DISTINCT partition_date) AS d FROM monitoring.prediction_quality"
    )
    assert quality["d"] == 2


def test_retention_removed_version_is_named_and_nothing_is_queried(lake):
    path = lake["storage"] / lake["before"]["features/shipment_features"]["key"]
    moved = path.with_name(path.name + ".away")
    path.rename(moved)
    try:
        code, out, err = sql(lake, "SELECT count(*) FROM clean.shipments", **AS_OF_DAY)
    finally:
        moved.rename(path)
    assert code == 1 and out == ""
    assert f"features/shipment_features {DAY}" in err and "no longer exists" in err
    assert len(err.strip().splitlines()) == 1


def test_a_version_changed_in_place_is_named_and_nothing_is_queried(lake):
    path = lake["storage"] / lake["after"]["clean/shipments"]["key"]
    original = path.read_bytes()
    frame = pl.read_parquet(path)
    try:
        with open(path, "r+b") as f:  # the same file, other rows: as a hand edit would do
            f.truncate(0)
            frame.head(3).write_parquet(f)
        code, out, err = sql(lake, "SELECT count(*) FROM clean.shipments")
    finally:
        path.write_bytes(original)
    assert code == 1 and out == ""
    (error,) = [line for line in err.splitlines() if not line.startswith("-- ")]
    assert error.startswith("sql: ") and f"clean/shipments {DAY}" in error
    assert "sha256 differs" in error


def lake_state(lake) -> tuple:
    files = sorted(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns)
        for p in lake["storage"].rglob("*")
        if p.is_file()
    )
    records = (
        lake["instance"]
        .fetch_materializations(dg.AssetRecordsFilter(asset_key=QUOTES), limit=1000)
        .records
    )
    runs = len(lake["instance"].get_run_records())
    return files, [r.storage_id for r in records], runs


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE raw.shipments",
        "COPY (SELECT * FROM raw.shipments) TO '{tmp}/copy.csv'",
        "INSERT INTO clean.shipments SELECT * FROM clean.shipments",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "SELECT 1; DROP TABLE raw.shipments",
    ],
)
def test_statements_that_would_change_anything_are_refused(lake, statement, tmp_path):
    before = lake_state(lake)
    code, out, err = sql(lake, statement.format(tmp=tmp_path))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("sql: ")
    assert "refused" in err or "one statement" in err
    assert list(tmp_path.iterdir()) == []
    assert lake_state(lake) == before
    # The tables are intact in a new session.
    (got,) = as_json(lake, "SELECT count(*) AS n FROM raw.shipments")
    assert got["n"] > 0


def test_a_select_cannot_read_files(lake):
    code, _, err = sql(lake, "SELECT * FROM read_csv('/etc/hostname')")
    assert code == 1
    assert "file system operations are disabled" in err.splitlines()[-1]
    # Not even the lake's own files, while the views read their verified copies.
    stored = lake["storage"] / lake["after"]["clean/shipments"]["key"]
    code, _, err = sql(
        lake,
        f"SELECT count(*) FROM clean.shipments, read_parquet('{stored}') WHERE false",  # noqa: S608 (a test path)
    )
    assert code == 1
    assert "file system operations are disabled" in err.splitlines()[-1]


def test_formats_and_export(lake, tmp_path):
    code, out, _ = sql(
        lake,
        "SELECT partition_date, count(*) AS n FROM clean.shipments GROUP BY 1 ORDER BY 1",
        format="csv",
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "partition_date,n" and len(lines) == 1 + DAYS
    code, out, _ = sql(lake, "SELECT count(*) AS n FROM predictions.price_quotes")
    assert code == 0 and "600" in out  # the table format

    parquet = tmp_path / "quotes.parquet"
    code, _, _ = sql(
        lake, "SELECT * FROM predictions.price_quotes", format="parquet", output=parquet
    )
    assert code == 0 and pl.read_parquet(parquet).height == 600

    exported = tmp_path / "as_of.duckdb"
    code, _, err = sql(lake, export=exported, **AS_OF_DAY)
    assert code == 0, err
    with duckdb.connect(str(exported), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM features.shipment_features").fetchall()[0][0]
        assert n == lake["before"]["features/shipment_features"]["rows"]
        tables = {
            r[0]
            for r in con.execute(
                "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
            ).fetchall()
        }
    assert {"ml_platform.versions", "raw.shipments", "clean.shipments", "models.champion"} <= tables
    # Exporting again refreshes the database; a file that is not one is never overwritten.
    code, _, err = sql(lake, export=exported)
    assert code == 0, err
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    code, _, err = sql(lake, export=notes)
    assert code == 1 and notes.read_text() == "mine\n"
    assert (
        err.strip()
        == f"sql: --export {notes}: exists and is not a DuckDB database; nothing was written"
    )
    code, _, err = sql(lake, export=tmp_path / "no" / "such" / "x.duckdb")
    assert code == 1 and not (tmp_path / "no").exists()
    assert (
        err.strip()
        == f"sql: --export {tmp_path / 'no' / 'such' / 'x.duckdb'}: there is no folder {tmp_path / 'no' / 'such'}"
    )


def test_interactive_session_reports_errors_and_goes_on(lake):
    stdin = io.StringIO(
        "SELECT count(*) AS n\n  FROM predictions.price_quotes;\n"
        "SELECT nope FROM raw.shipments;\n"
        "SELECT 41 + 1 AS answer;\n\\q\n"
    )
    code, out, err = sql(lake, None, stdin=stdin, format="csv")
    assert out.splitlines() == ["n", "600", "answer", "42"]
    assert 'Referenced column "nope" not found' in err
    assert code == 1  # not a terminal: a failed statement fails the session


def run_cli(lake, *argv: str, **environ: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAGSTER_HOME": lake["instance"].root_directory,
        "ML_PLATFORM_HOME": str(lake["home"]),
        "ML_PLATFORM_DEPLOYMENT": "local",
        **environ,
    }
    return subprocess.run(
        [sys.executable, "-m", "ml_platform.cli", "sql", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_as_a_user_runs_it(lake):
    done = run_cli(
        lake,
        "--as-of",
        "predictions/price_quotes",
        "--partition",
        DAY,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM features.shipment_features",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "n",
        str(lake["before"]["features/shipment_features"]["rows"]),
    ]
    # Only the command's own notes: nothing printed at the interpreter's exit.
    assert [line[:3] for line in done.stderr.splitlines()] == ["-- ", "-- "], done.stderr

    bad = run_cli(lake, "SELEC count(*) FROM raw.shipments")
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    error = [line for line in bad.stderr.splitlines() if line.startswith("sql: ")]
    assert len(error) == 1 and "Parser Error" in error[0]


HOLD_LOCK = """
import fcntl, sys, time
lock = open(sys.argv[1], "w")
fcntl.flock(lock, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_scratch_folder_names_settings_and_typos(lake, tmp_path):
    # Copies and spill files go to the scratch folder, whatever its path looks like (a
    # name=value folder is not read as a column), and leave nothing behind; a folder left by
    # a killed session is removed by the next one.
    scratch = tmp_path / "partition_date=1999-01-01"
    abandoned = scratch / "session-killed"  # its lock file is there, nobody holds it
    (abandoned / "spool").mkdir(parents=True)
    (abandoned / ".lock").touch()
    live = scratch / "session-live"  # a session running in another process (or machine)
    live.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(live / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:  # the holder sleeps ten minutes: killed whatever the assertions say
        assert holder.stdout.readline().strip() == "locked"
        done = run_cli(
            lake,
            "--format",
            "csv",
            "SELECT min(partition_date) AS d, count(DISTINCT partition_date) AS n "
            "FROM clean.shipments",
            ML_PLATFORM_SQL_SCRATCH=str(scratch),
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[1] == f"{START},{DAYS}"
        assert list(scratch.iterdir()) == [live]
    finally:
        holder.kill()
        holder.wait()

    small = run_cli(lake, "SELECT 1", ML_PLATFORM_SQL_MEMORY_LIMIT="1MB")
    assert small.returncode == 1 and len(small.stderr.splitlines()) == 1, small.stderr
    assert "ML_PLATFORM_SQL_MEMORY_LIMIT='1MB' is too small" in small.stderr

    typo = run_cli(lake, "SELECT count(*) FROM clean.shipment")
    assert typo.returncode == 1
    assert typo.stderr.splitlines()[-1].startswith(
        "sql: no table clean.shipment; did you mean clean.shipments? the tables: "
    ), typo.stderr
