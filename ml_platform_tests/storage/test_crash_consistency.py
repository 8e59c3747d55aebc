"""A multi-partition write killed (SIGKILL) at random points, and two runs racing on a partition.

After every kill, each partition's current version is either the one it had before or the
killed run's, and in both cases a materialization event names it and its object holds
exactly what that event says; the next run succeeds. Writers are forked from a forkserver
that imported everything once (forking the test process itself can deadlock polars' thread
pool), and killed the way an OOM killer or a lost node kills a pod: no cleanup runs.
"""

import contextlib
import hashlib
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Callable
from datetime import date

import dagster as dg
import polars as pl
from dagster_gcp import GCSResource

from ml_platform.storage.current import UnresolvedVersionError, current_versions
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager, version_dict
from ml_platform.storage.postgres_io_manager import PostgresIOManager

DAYS = [f"2026-01-0{d}" for d in range(1, 7)]
ROWS = 20_000
RANGE = {
    "dagster/asset_partition_range_start": DAYS[0],
    "dagster/asset_partition_range_end": DAYS[-1],
}
daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")
_fork = multiprocessing.get_context("forkserver")
_fork.set_forkserver_preload(["dagster", "polars", __name__])
# Set by the child when its step starts computing: the kill window opens there.
_started = None


def _expected(day: str, version: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition_date": [date.fromisoformat(day)] * ROWS,
            "value": pl.int_range(0, ROWS, eager=True) * version,
        }
    )


@dg.asset(
    partitions_def=daily,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "partition_date"},
    io_manager_key="lake",
)
def numbers(context: dg.AssetExecutionContext) -> pl.DataFrame:
    if _started is not None:
        _started.set()
    version = int(context.run.tags["test/version"])
    return pl.concat([_expected(day, version) for day in context.partition_keys])


@dg.asset(
    partitions_def=daily,
    ins={"numbers": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-5))},
    io_manager_key="lake",
)
def total(numbers: pl.DataFrame) -> pl.DataFrame:
    return numbers.group_by("partition_date").agg(pl.col("value").sum()).sort("partition_date")


def _run(instance, io_manager, version: int, selection=(numbers,), **kwargs):
    tags = {"test/version": str(version), **kwargs.pop("tags", RANGE)}
    return dg.materialize(
        [numbers, total],
        selection=list(selection),
        instance=instance,
        resources={"lake": io_manager},
        tags=tags,
        raise_on_error=False,
        **kwargs,
    )


def _local_io(root: str) -> LocalParquetIOManager:
    return LocalParquetIOManager(root=root)


def _gcs_io(bucket: str) -> GCSParquetIOManager:
    return GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=bucket, gcs_prefix="lake")


def _child(ref, io: tuple, version: int, started, partition: str | None, env: dict) -> None:
    global _started
    _started = started
    os.environ.update(env)
    make_io, arg = io
    instance = dg.DagsterInstance.from_ref(ref)
    if partition is None:
        result = _run(instance, make_io(arg), version)
    else:
        result = _run(instance, make_io(arg), version, partition_key=partition, tags={})
    os._exit(0 if result.success else 1)


def _spawn(instance, io: tuple, version: int, partition: str | None = None):
    """A writer process: the whole range, or one partition (as a sensor's run would)."""
    started = _fork.Event()
    env = {k: v for k, v in os.environ.items() if k.startswith(("STORAGE_EMULATOR", "DAGSTER"))}
    args = (instance.get_ref(), io, version, started, partition, env)
    process = _fork.Process(target=_child, args=args)
    process.start()
    return process, started


def _write_window_seconds(instance, io: tuple) -> float:
    """How long a range write takes from its step's start to its process's end."""
    process, started = _spawn(instance, io, version=1)
    assert started.wait(60)
    begin = time.perf_counter()
    process.join(60)
    assert process.exitcode == 0
    return time.perf_counter() - begin


def _current(instance, read_bytes: Callable[[str], bytes]) -> dict[str, int]:
    """Partition -> version of its current data, after checking its event names it exactly."""
    versions = {}
    for v in current_versions(instance, numbers.key, DAYS):
        record = version_dict(v)
        data = read_bytes(record["key"])
        assert hashlib.sha256(data).hexdigest() == record["sha256"], record
        run = instance.get_run_by_id(record["run_id"])
        version = int(run.tags["test/version"])
        assert pl.read_parquet(data).equals(_expected(v.partition, version)), record
        versions[v.partition] = version
    return versions


def _assert_reads_are_the_latest_events(instance, result) -> None:
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    reads = {r["partition"]: r for r in meta["ml_platform/inputs"].value[0]["partitions"]}
    for v in current_versions(instance, numbers.key, DAYS):
        assert (reads[v.partition]["storage_id"], reads[v.partition]["run_id"]) == (
            v.storage_id,
            v.run_id,
        )


def _kill_at_random_points(instance, io: tuple, read_bytes, trials: int, seed: int) -> set:
    rng = random.Random(seed)
    make_io = lambda: io[0](io[1])  # noqa: E731
    assert _run(instance, make_io(), version=1).success
    window = _write_window_seconds(instance, io)
    before = _current(instance, read_bytes)
    outcomes = set()
    for trial in range(trials):
        version = trial + 2
        process, started = _spawn(instance, io, version)
        assert started.wait(60)
        # Spread over the whole write: compute, object writes, event writes, run end.
        time.sleep(window * (trial + rng.random()) / trials)
        with contextlib.suppress(ProcessLookupError):  # the last points may fall after the end
            os.kill(process.pid, signal.SIGKILL)
        process.join(30)
        after = _current(instance, read_bytes)
        for day in DAYS:
            assert after[day] in (before[day], version), (trial, day, before[day], after[day])
        outcomes.add(tuple(after[d] == version for d in DAYS))
        # The next run reads whatever is current, resolved to its events, and succeeds.
        summed = _run(instance, make_io(), 0, selection=(total,), partition_key=DAYS[-1], tags={})
        assert summed.success
        _assert_reads_are_the_latest_events(instance, summed)
        before = after
    assert _run(instance, make_io(), version=999).success
    assert set(_current(instance, read_bytes).values()) == {999}
    return outcomes


def test_sigkill_during_a_range_write_on_the_local_store(instance, tmp_path):
    def read_bytes(key: str) -> bytes:
        return (tmp_path / "lake" / key).read_bytes()

    io = (_local_io, str(tmp_path / "lake"))
    outcomes = _kill_at_random_points(instance, io, read_bytes, trials=20, seed=11)
    # The kills landed before, during and after publication, not all at one point.
    assert (False,) * len(DAYS) in outcomes
    assert len(outcomes) >= 2, outcomes


def test_sigkill_during_a_range_write_on_gcs(instance, gcs_bucket, gcs_client):
    def read_bytes(key: str) -> bytes:
        return gcs_client.bucket(gcs_bucket).blob(f"lake/{key}").download_as_bytes()

    _kill_at_random_points(instance, (_gcs_io, gcs_bucket), read_bytes, trials=6, seed=7)


def test_two_runs_racing_on_the_same_partitions_agree_with_the_latest_event(instance, tmp_path):
    """A sensor run of one day and a backfill of the range, at once, again and again."""

    def read_bytes(key: str) -> bytes:
        return (tmp_path / "lake" / key).read_bytes()

    io = (_local_io, str(tmp_path / "lake"))
    for round_ in range(3):
        # The events must outlive the start of the children, which unpickle them.
        backfill, backfill_started = _spawn(instance, io, version=10 + round_)
        sensor_run, sensor_started = _spawn(instance, io, version=20 + round_, partition=DAYS[2])
        assert backfill_started.wait(60) and sensor_started.wait(60)
        for process in (backfill, sensor_run):
            process.join(120)
            assert process.exitcode == 0
        # Whichever finished last is current, and its event is the latest: never a mix of
        # one run's bytes under the other's record.
        current = _current(instance, read_bytes)
        assert current[DAYS[2]] in (10 + round_, 20 + round_)
        assert {current[d] for d in DAYS if d != DAYS[2]} == {10 + round_}
        summed = _run(
            instance, _local_io(io[1]), 0, selection=(total,), partition_key=DAYS[-1], tags={}
        )
        assert summed.success
        _assert_reads_are_the_latest_events(instance, summed)


def test_postgres_rows_no_event_describes_are_refused_by_readers(instance, pg_env):
    """Rows committed by a run that died before Dagster recorded them are never read silently."""
    from ml_platform.storage.postgres_tables import PgSettings, PostgresTables

    io_manager = PostgresIOManager()
    assert _run(instance, io_manager, version=1).success
    env = pg_env.env()
    tables = PostgresTables(PgSettings(*[env[k] for k in _PG_KEYS]))
    ghost = {DAYS[2]: _expected(DAYS[2], 7)}
    tables.write("public", "numbers", ghost, "ghost-run", "partition_date")
    result = _run(instance, io_manager, 0, selection=(total,), partition_key=DAYS[-1], tags={})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error.cause)
    assert UnresolvedVersionError.__name__ in message
    assert f"numbers partition {DAYS[2]}" in message and "ghost-run" in message


_PG_KEYS = (
    "ML_PLATFORM_PG_HOST",
    "ML_PLATFORM_PG_PORT",
    "ML_PLATFORM_PG_DB",
    "ML_PLATFORM_PG_USER",
    "ML_PLATFORM_PG_PASSWORD",
)
