"""Postgres tables: lossless types, atomic partition replace, crashes, evolution, hostile input."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from ml_platform.storage.pg_catalog import TableSchemaError
from ml_platform.storage.pg_types import UnsupportedColumnType
from ml_platform.storage.postgres_tables import (
    MissingPartitionError,
    PostgresTables,
    VersionReplacedError,
)

from .helpers import day_frame, days, sql, store

UTC = dt.UTC


def every_type() -> pl.DataFrame:
    """Every polars type the platform stores, with nulls and edge values."""
    return pl.DataFrame(
        {
            "i8": pl.Series([-128, 127, None], dtype=pl.Int8),
            "i16": pl.Series([-(2**15), 2**15 - 1, None], dtype=pl.Int16),
            "i32": pl.Series([-(2**31), 2**31 - 1, None], dtype=pl.Int32),
            "i64": pl.Series([-(2**63), 2**63 - 1, None], dtype=pl.Int64),
            "u8": pl.Series([0, 255, None], dtype=pl.UInt8),
            "u16": pl.Series([0, 65535, None], dtype=pl.UInt16),
            "u32": pl.Series([0, 2**32 - 1, None], dtype=pl.UInt32),
            "u64": pl.Series([0, 2**64 - 1, None], dtype=pl.UInt64),
            "f32": pl.Series([1.5, float("nan"), None], dtype=pl.Float32),
            "f64": pl.Series([-0.1, float("inf"), None], dtype=pl.Float64),
            "text": ["plain", "quote ' \" ; -- é 🚚 \\", None],
            "category": pl.Series(["road", "rail", None], dtype=pl.Categorical),
            "flag": [True, False, None],
            "blob": [b"\x00\xff", b"", None],
            "day": [dt.date(1970, 1, 1), dt.date(2099, 12, 31), None],
            "clock": [dt.time(0, 0), dt.time(23, 59, 59, 999999), None],
            "at_utc": pl.Series(
                [dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(1900, 1, 1, tzinfo=UTC), None]
            ).dt.cast_time_unit("us"),
            "at_berlin_ms": pl.Series([dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)] * 2 + [None])
            .dt.convert_time_zone("Europe/Berlin")
            .dt.cast_time_unit("ms"),
            "naive_ns": pl.Series(
                [dt.datetime(2026, 1, 1, 1, 2, 3, 4)] * 2 + [None]
            ).dt.cast_time_unit("ns"),
            "price": pl.Series(
                [decimal.Decimal("1.25"), decimal.Decimal("-99999999.99"), None],
                dtype=pl.Decimal(10, 2),
            ),
            "partition_date": [dt.date(2026, 1, 1)] * 3,
        }
    )


def test_every_type_round_trips_exactly(pg):
    tables = store(pg)
    df = every_type()
    tables.write("clean", "every_type", {"2026-01-01": df}, "run-1", "partition_date")
    back, versions = tables.read("clean", "every_type", ["2026-01-01"])
    assert_frame_equal(back, df)
    assert back.schema == df.schema
    assert versions[0].run_id == "run-1" and versions[0].rows == 3


def test_streamed_reads_equal_whole_reads_in_batches(pg):
    tables = store(pg)
    df = every_type()
    tables.write("clean", "every_type_streamed", {"2026-01-01": df}, "run-1", "partition_date")
    keys = days("2026-02-01", 4)
    big = {key: day_frame(key, 150_000) for key in keys}
    tables.write("clean", "streamed", big, "run-2", "partition_date")
    for table, partitions in (("every_type_streamed", ["2026-01-01"]), ("streamed", keys)):
        whole, versions = tables.read("clean", table, partitions)
        with tables.read_batches("clean", table, partitions) as (batches, streamed_versions):
            chunks = [pl.from_arrow(b) for b in batches]
        assert streamed_versions == versions
        assert_frame_equal(pl.concat(chunks), whole, check_row_order=False)
    assert len(chunks) > 1  # 600,000 rows arrive in several batches, not as one table


def test_unsupported_types_and_sub_microsecond_timestamps_are_refused_clearly(pg):
    tables = store(pg)
    with pytest.raises(UnsupportedColumnType, match=r"clean\.odd: column 'nested'"):
        tables.write("clean", "odd", {None: pl.DataFrame({"nested": [[1, 2]]})}, "r")
    ns = pl.DataFrame({"at": pl.Series([dt.datetime(2026, 1, 1)]).dt.cast_time_unit("ns")})
    ns = ns.with_columns(pl.col("at") + pl.duration(nanoseconds=1))
    with pytest.raises(UnsupportedColumnType, match="sub-microsecond"):
        tables.write("clean", "odd", {None: ns}, "r")


def test_partition_replace_touches_only_that_partition(pg):
    tables = store(pg)
    keys = days("2026-01-01", 3)
    for i, key in enumerate(keys):
        tables.write("clean", "t", {key: day_frame(key, 100 + i)}, f"run-{i}", "partition_date")
    tables.write(
        "clean", "t", {keys[1]: day_frame(keys[1], 7, tag="v2")}, "run-x", "partition_date"
    )
    back, versions = tables.read("clean", "t", keys)
    counts = dict(back.group_by("partition_date").len().iter_rows())
    assert counts == {dt.date(2026, 1, 1): 100, dt.date(2026, 1, 2): 7, dt.date(2026, 1, 3): 102}
    assert back.filter(pl.col("tag") == "v2").height == 7
    assert [v.run_id for v in versions] == ["run-0", "run-x", "run-2"]


def test_column_types_in_the_catalog_are_never_written_into_sql(pg):
    """The catalog row's Postgres type went into the read's SQL as stored."""
    tables = store(pg)
    keys = days("2026-01-01", 2)
    tables.write("clean", "tampered", {k: day_frame(k, 5) for k in keys}, "run-1", "partition_date")
    sql(pg, "CREATE TABLE public.canary (x int)")
    sql(
        pg,
        "UPDATE _ml_platform.tables SET columns = jsonb_set(columns, '{3,pg_type}', "
        "to_jsonb('date); DROP TABLE public.canary; --'::text)) WHERE table_name = 'tampered'",
    )
    assert "DROP TABLE" in sql(pg, "SELECT columns::text FROM _ml_platform.tables "
                               "WHERE table_name = 'tampered'")[0][0]  # fmt: skip
    back, _ = tables.read("clean", "tampered", keys[:1])
    assert back.height == 5
    assert sql(pg, "SELECT to_regclass('public.canary') IS NOT NULL") == [(True,)]


def test_range_replace_is_one_transaction(pg):
    tables = store(pg)
    keys = days("2026-01-01", 5)
    frames = {k: day_frame(k, 50) for k in keys}
    first = tables.write("clean", "t", frames, "run-a", "partition_date")
    assert len({v.txid for v in first}) == 1
    second = tables.write(
        "clean", "t", {k: day_frame(k, 10, tag="v2") for k in keys[1:4]}, "run-b", "partition_date"
    )
    assert len({v.txid for v in second}) == 1 and second[0].txid != first[0].txid
    back, versions = tables.read("clean", "t", keys)
    per_day = (
        back.group_by("partition_date").agg(pl.len(), pl.col("tag").unique()).sort("partition_date")
    )
    assert per_day["len"].to_list() == [50, 10, 10, 10, 50]
    assert [v.run_id for v in versions] == ["run-a", "run-b", "run-b", "run-b", "run-a"]


def test_rows_outside_the_written_partition_are_refused(pg):
    tables = store(pg)
    with pytest.raises(ValueError, match="would land in other partitions"):
        tables.write(
            "clean", "t", {"2026-01-02": day_frame("2026-01-01", 3)}, "r", "partition_date"
        )


def test_missing_partition_says_what_is_missing(pg):
    tables = store(pg)
    with pytest.raises(MissingPartitionError, match="clean.t has never been stored"):
        tables.read("clean", "t", ["2026-01-01"])
    tables.write("clean", "t", {"2026-01-01": day_frame("2026-01-01", 3)}, "r", "partition_date")
    with pytest.raises(MissingPartitionError, match=r"\['2026-01-09'\]"):
        tables.read("clean", "t", ["2026-01-01", "2026-01-09"])


def test_concurrent_writes_to_different_partitions_of_one_table(pg):
    tables = store(pg)
    keys = days("2026-01-01", 6)
    tables.write("clean", "t", {keys[0]: day_frame(keys[0], 1)}, "seed", "partition_date")
    errors: list[BaseException] = []

    def writer(key: str, n: int) -> None:
        try:
            for round_ in range(4):
                frame = day_frame(key, n, seed=round_, tag=f"round-{round_}")
                tables.write("clean", "t", {key: frame}, f"{key}-{round_}", "partition_date")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k, 1000 + i)) for i, k in enumerate(keys)]
    # Two writers of the same partition too: the partition lock serializes them.
    threads.append(threading.Thread(target=writer, args=(keys[0], 1000)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    back, versions = tables.read("clean", "t", keys)
    counts = dict(back.group_by("partition_date").len().iter_rows())
    assert [counts[dt.date.fromisoformat(k)] for k in keys] == [1000 + i for i in range(6)]
    assert back.group_by("partition_date", "tag").len().height == 6  # one version per day
    assert all(v.run_id.endswith("-3") for v in versions)


def test_readers_never_see_none_or_half_of_a_partition(pg):
    tables = store(pg)
    key, n = "2026-01-01", 20_000
    tables.write("clean", "t", {key: day_frame(key, n)}, "r0", "partition_date")
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(pg.uri, autocommit=True) as conn:
            while not stop.is_set():
                seen.add(conn.execute('SELECT count(*) FROM "clean"."t"').fetchone()[0])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(15):
            tables.write("clean", "t", {key: day_frame(key, n, seed=i)}, f"r{i}", "partition_date")
    finally:
        stop.set()
        thread.join()
    assert seen == {n}


def _big_frame(key: str) -> pl.DataFrame:
    return day_frame(key, 3_000_000, tag="x" * 40)


def _wait_for_copy(pg, application_name: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sql(
            pg,
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
            "AND query ILIKE 'COPY%%'",
            (application_name,),
        )
        if rows:
            return rows[0][0]
        time.sleep(0.005)
    raise AssertionError("the writer never reached COPY")


def _assert_old_rows_intact(pg, key: str) -> None:
    back, versions = store(pg).read("clean", "t", [key])
    assert back.height == 500 and set(back["tag"]) == {"old"}
    assert versions[0].run_id == "old-run"
    assert sql(pg, 'SELECT count(*) FROM "clean"."t"') == [(500,)]


def test_a_backend_terminated_mid_copy_leaves_the_old_rows(pg):
    key = "2026-01-01"
    store(pg).write(
        "clean", "t", {key: day_frame(key, 500, tag="old")}, "old-run", "partition_date"
    )
    victim = store(pg, application_name="victim")
    frame = _big_frame(key)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            victim.write("clean", "t", {key: frame}, "new-run", "partition_date")
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    thread = threading.Thread(target=write)
    thread.start()
    pid = _wait_for_copy(pg, "victim")
    assert sql(pg, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    thread.join()
    assert errors, "the write should have failed"
    _assert_old_rows_intact(pg, key)


def test_a_writer_process_killed_mid_copy_leaves_the_old_rows(pg, tmp_path):
    key = "2026-01-01"
    store(pg).write(
        "clean", "t", {key: day_frame(key, 500, tag="old")}, "old-run", "partition_date"
    )
    script = f"""
import sys
sys.path.insert(0, {os.getcwd()!r})
from ml_platform_tests.postgres.helpers import day_frame
from ml_platform.storage.postgres_tables import PgSettings, PostgresTables
tables = PostgresTables(PgSettings({pg.host!r}, {pg.port}, {pg.dbname!r}, {pg.user!r},
                                   {pg.password!r}, "killed"))
tables.write("clean", "t", {{{key!r}: day_frame({key!r}, 3_000_000, tag="x" * 40)}}, "new", "partition_date")
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        _wait_for_copy(pg, "killed")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    # The server notices the dead client when its socket closes; wait for the backend to go.
    deadline = time.monotonic() + 30
    while sql(pg, "SELECT 1 FROM pg_stat_activity WHERE application_name = 'killed'"):
        assert time.monotonic() < deadline, "the killed writer's backend never ended"
        time.sleep(0.05)
    _assert_old_rows_intact(pg, key)


def test_a_new_nullable_column_is_added(pg):
    tables = store(pg)
    a, b = "2026-01-01", "2026-01-02"
    tables.write("clean", "t", {a: day_frame(a, 3)}, "r1", "partition_date")
    wider = day_frame(b, 2).with_columns(score=pl.Series([1, 2], dtype=pl.Int16))
    tables.write(
        "clean", "t", {b: wider.select("score", *day_frame(b, 0).columns)}, "r2", "partition_date"
    )
    back, _ = tables.read("clean", "t", [a, b])
    assert back.columns == ["id", "value", "tag", "partition_date", "score"]
    assert back.schema["score"] == pl.Int16
    assert back.sort("partition_date")["score"].to_list() == [None, None, None, 1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.with_columns(pl.col("id").cast(pl.Int32)), r"column 'id' changed type"),
        (lambda df: df.drop("value"), r"column\(s\) \['value'\] are stored but missing"),
        (lambda df: df.with_columns(pl.col("tag").cast(pl.Categorical)), "column 'tag' changed"),
    ],
)
def test_a_changed_or_removed_column_fails_and_leaves_the_table_untouched(pg, change, message):
    tables = store(pg)
    key = "2026-01-01"
    tables.write("clean", "t", {key: day_frame(key, 5)}, "r1", "partition_date")
    before = tables.read("clean", "t", [key])
    with pytest.raises(TableSchemaError, match=rf"clean\.t: {message}"):
        tables.write(
            "clean", "t", {key: change(day_frame(key, 9, tag="v2"))}, "r2", "partition_date"
        )
    after = tables.read("clean", "t", [key])
    assert_frame_equal(after[0], before[0])
    assert after[1] == before[1]
    columns = sql(
        pg,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'clean' AND table_name = 't' ORDER BY ordinal_position",
    )
    assert columns == [
        ("id", "bigint"),
        ("value", "double precision"),
        ("tag", "text"),
        ("partition_date", "date"),
    ]


HOSTILE_SCHEMA = 'sch"; DROP SCHEMA public CASCADE; --'
HOSTILE_TABLE = "tâble'); DELETE FROM x; -- 🚚"
HOSTILE_COLUMN = 'col"; DROP TABLE y; --'


def test_hostile_identifiers_and_values_are_stored_literally(pg):
    sql(pg, "CREATE TABLE public.canary (x int)")
    tables = store(pg)
    hostile_key = "2026'); DROP TABLE public.canary; --\"é"
    df = pl.DataFrame({HOSTILE_COLUMN: ["'; DROP TABLE public.canary; --", 'x"y']})
    tables.write(HOSTILE_SCHEMA, HOSTILE_TABLE, {hostile_key: df}, "run'; --")
    back, versions = tables.read(HOSTILE_SCHEMA, HOSTILE_TABLE, [hostile_key])
    assert_frame_equal(back, df)
    assert versions[0].partition == hostile_key and versions[0].run_id == "run'; --"
    assert sql(pg, "SELECT count(*) FROM public.canary") == [(0,)]
    stored = sql(
        pg,
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = %s",
        (HOSTILE_SCHEMA,),
    )
    assert stored == [(HOSTILE_SCHEMA, HOSTILE_TABLE)]
    assert "#partition=2026%27%29%3B%20DROP" in tables.uri(
        HOSTILE_SCHEMA, HOSTILE_TABLE, hostile_key
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [("x" * 64, "longer than 63 bytes"), ("bad\x00name", "contains NUL"), ("", "empty")],
)
def test_identifiers_postgres_would_alter_are_refused(pg, name, message):
    with pytest.raises(ValueError, match=message):
        store(pg).write("clean", "t", {None: pl.DataFrame({name: [1]})}, "r")
    assert sql(pg, "SELECT to_regclass('clean.t')") == [(None,)]


def test_unpartitioned_tables_are_replaced_whole(pg):
    tables = store(pg)
    tables.write("models", "champions", {None: pl.DataFrame({"model": ["a", "b"]})}, "r1")
    tables.write("models", "champions", {None: pl.DataFrame({"model": ["c"]})}, "r2")
    back, versions = tables.read("models", "champions", [None])
    assert back["model"].to_list() == ["c"] and versions[0].run_id == "r2"


def test_connections_are_closed_across_hundreds_of_calls(pg):
    tables = store(pg, application_name="leak-check")
    key = "2026-01-01"
    for i in range(200):
        tables.write("clean", "t", {key: day_frame(key, 10, seed=i)}, f"r{i}", "partition_date")
        tables.read("clean", "t", [key])
    with pytest.raises(TableSchemaError):  # failures close their connection too
        tables.write("clean", "t", {key: day_frame(key, 1).drop("tag")}, "bad", "partition_date")
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leak-check'"
    assert sql(pg, count)[0][0] <= 1  # the pool keeps one idle connection for the next call
    PostgresTables.close_idle()
    assert sql(pg, count) == [(0,)]


def test_provenance_finds_exactly_the_rows_of_a_version_or_says_they_were_replaced(pg):
    tables = store(pg)
    key = "2026-01-01"
    first = day_frame(key, 4)
    tables.write("clean", "t", {key: first}, "run-1", "partition_date")
    assert_frame_equal(tables.read_version("clean", "t", key, "run-1").sort("id"), first)
    tables.write("clean", "t", {key: day_frame(key, 2, tag="v2")}, "run-2", "partition_date")
    with pytest.raises(VersionReplacedError, match="rows of run run-1 were replaced by run run-2"):
        tables.read_version("clean", "t", key, "run-1")


def test_settings_never_show_the_password(pg):
    """A settings object in a log line or a traceback's locals showed the password."""
    from ml_platform.storage.postgres_tables import PgSettings

    shown = repr(PgSettings(pg.host, pg.port, pg.dbname, pg.user, "s3cr3t-value"))
    assert "s3cr3t-value" not in shown and pg.user in shown
    assert pg.password not in repr(pg)
