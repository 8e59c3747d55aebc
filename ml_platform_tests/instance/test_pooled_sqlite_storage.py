"""The local instance's SQLite storage (ml_platform/instance_storage.py), as dagster.yaml selects it."""

import gc
import shutil
import sqlite3
import types
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ml_platform import instance_storage
from ml_platform.dagster_internals import SqliteEventLogStorage
from ml_platform.instance_storage import PooledSqliteEventLogStorage

ROOT = Path(__file__).resolve().parents[2]
days = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
def daily_rows() -> dg.MaterializeResult:
    """Materializes every partition of its run's range, with a data version (as ours do)."""
    return dg.MaterializeResult(data_version=dg.DataVersion("v1"))


@pytest.fixture
def local_instance(tmp_path, monkeypatch):
    """An instance from the repository's own dagster.yaml in a fresh DAGSTER_HOME."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def event_schema_probes():
    """Statements asking for the event index's asset_keys columns or its event tags table.

    Dagster's event log asks both for every asset event it stores.
    """
    probes: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if (
            'table_xinfo("asset_keys")' in statement
            or 'table_info("asset_event_tags")' in statement
        ):
            probes.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield probes
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


@pytest.fixture
def sqlite_connections():
    """The database file of every SQLite connection any engine opens while the test runs."""
    opened: list[str] = []

    def count(dbapi_connection, record) -> None:
        opened.append(Path(dbapi_connection.execute("PRAGMA database_list").fetchone()[2]).name)

    sa.event.listen(sa.Engine, "connect", count)
    yield opened
    sa.event.remove(sa.Engine, "connect", count)


def _five_day_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(assets=[daily_rows]).resolve_implicit_global_asset_job_def()
    tags = {
        "dagster/asset_partition_range_start": "2026-01-01",
        "dagster/asset_partition_range_end": "2026-01-05",
    }
    return job.execute_in_process(instance=instance, tags=tags)


def test_the_local_instance_stores_events_through_a_few_pooled_connections(
    local_instance, sqlite_connections, event_schema_probes
):
    result = _five_day_run(local_instance)
    assert result.success
    events = local_instance.all_logs(result.run_id)
    # Dagster's own SQLite event log opens a connection per event (two for asset events), and
    # reads the index's schema for every asset event (17 probes in this run); once per table
    # is enough, plus the two that creating the run's shard makes.
    event_log = [name for name in sqlite_connections if name != "runs.db"]
    assert len(event_log) <= 10 < len(events), sorted(event_log)
    assert len(event_schema_probes) <= 4, event_schema_probes
    assert isinstance(local_instance.event_log_storage, PooledSqliteEventLogStorage)
    materialized = local_instance.get_materialized_partitions(daily_rows.key)
    assert materialized == {f"2026-01-0{d}" for d in range(1, 6)}


@pytest.fixture
def ddl_statements():
    """CREATE statements any engine executes while the test runs."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("CREATE"):
            statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield statements
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


def _schema(path: Path) -> tuple[list, list, str]:
    """(tables and indexes with their SQL, the alembic revision, the journal mode) of a shard."""
    with sqlite3.connect(path) as conn:
        objects = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return objects, revision, journal


def test_a_new_run_shard_is_a_copy_of_the_schema_dagster_creates(
    local_instance, ddl_statements, tmp_path
):
    assert _five_day_run(local_instance).success  # the first run makes the template
    ddl_statements.clear()
    result = _five_day_run(local_instance)
    assert result.success
    # Dagster creates every table and index of a new shard (and loads alembic twice) per run.
    assert ddl_statements == []
    storage = local_instance.event_log_storage
    shard = Path(storage.path_for_shard(result.run_id))
    # The same shard as Dagster's own SQLite storage makes for a run.
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    with plain.run_connection("some-run"):
        pass
    assert _schema(shard) == _schema(Path(plain.path_for_shard("some-run")))
    assert _schema(shard)[2] == "wal"
    # The template is no run of the instance's.
    assert set(storage.get_all_run_ids()) == {r.run_id for r in local_instance.get_runs()}
    assert local_instance.all_logs(result.run_id)


def test_a_shard_another_process_began_is_initialized_by_dagster(tmp_path):
    """A shard file that exists but has no schema revision stamped gets Dagster's own setup."""
    storage = PooledSqliteEventLogStorage(str(tmp_path / "events"))
    sqlite3.connect(storage.path_for_shard("half-made")).close()  # an empty database file
    with storage.run_connection("half-made"):
        pass
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    with plain.run_connection("some-run"):
        pass
    made = _schema(Path(storage.path_for_shard("half-made")))
    assert made == _schema(Path(plain.path_for_shard("some-run")))
    storage.dispose()


@pytest.fixture
def alembic_script_loads(monkeypatch):
    """How often anything loads alembic's migration scripts (Dagster's revision check)."""
    from alembic.script import ScriptDirectory

    loads = []
    original = ScriptDirectory.from_config.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ScriptDirectory, "from_config", classmethod(counted))
    return loads


def test_opening_an_existing_home_loads_no_migration_scripts(local_instance, alembic_script_loads):
    """Dagster's run and schedule storages load alembic's scripts on every open to compare
    revisions (54 ms of every CLI command and backfill run); a stamped home opens directly."""
    assert _five_day_run(local_instance).success
    alembic_script_loads.clear()
    with dg.DagsterInstance.get() as again:
        assert len(again.get_runs()) == 1
        assert again.all_instigator_state() == []
        assert _five_day_run(again).success
    assert alembic_script_loads == []


def test_a_home_with_unstamped_databases_gets_dagsters_setup(tmp_path, monkeypatch):
    """A run or schedule database that exists but carries no revision (a process began it)
    goes through Dagster's own from_local, which creates and stamps it."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    (tmp_path / "history").mkdir()
    (tmp_path / "schedules").mkdir()
    sqlite3.connect(tmp_path / "history" / "runs.db").close()
    sqlite3.connect(tmp_path / "schedules" / "schedules.db").close()
    with dg.DagsterInstance.get() as instance:
        assert _five_day_run(instance).success
        assert instance.all_instigator_state() == []
    for db in (tmp_path / "history" / "runs.db", tmp_path / "schedules" / "schedules.db"):
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall(), db


def test_storing_events_of_a_known_asset_leaves_no_frames_to_the_cyclic_gc(local_instance):
    """Dagster's SQLite storage caught an IntegrityError for every event of a known asset (it
    inserts, then updates). Each traceback kept the frames above it in a reference cycle,
    the step's output among them, until the cyclic GC ran: in a backfill worker a chunk's raw
    frame stayed in memory while clean ran, up to 0.6 GB more at the backfill's peak."""
    errors: list[BaseException] = []

    def record(context) -> None:
        errors.append(context.original_exception)

    assert _five_day_run(local_instance).success  # the asset is known from here on
    gc.collect()
    sa.event.listen(sa.Engine, "handle_error", record)
    gc.disable()
    try:
        assert _five_day_run(local_instance).success
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        frames = [o.f_code.co_name for o in gc.garbage if isinstance(o, types.FrameType)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        sa.event.remove(sa.Engine, "handle_error", record)
    assert errors == []
    assert frames == []


def test_wipe_and_dispose_close_the_pooled_connections(local_instance):
    assert _five_day_run(local_instance).success
    local_instance.wipe()  # unlinks the run shards the pool had open
    assert local_instance.get_materialized_partitions(daily_rows.key) == set()
    result = _five_day_run(local_instance)  # new shards, new connections
    assert result.success
    assert len(local_instance.get_materialized_partitions(daily_rows.key)) == 5
    storage = local_instance.event_log_storage
    local_instance.dispose()
    assert storage._engines == {}  # noqa: SLF001


def test_long_lived_processes_keep_only_the_recent_shards_open(local_instance, monkeypatch):
    # Three runs and the index are four shards: with room for two, the oldest are closed,
    # and a closed shard opens again when read.
    monkeypatch.setattr(instance_storage, "MAX_OPEN_SHARDS", 2)
    storage = local_instance.event_log_storage
    for _ in range(3):
        assert _five_day_run(local_instance).success
    runs = [r.run_id for r in local_instance.get_runs()]
    for run_id in runs:
        assert local_instance.all_logs(run_id)
    assert len(storage._engines) <= 16  # noqa: SLF001
    assert list(storage._engines) == runs[-2:]  # noqa: SLF001 - the two shards read last


def test_the_suites_instances_use_the_local_storage(instance):
    """Every test on the ``instance`` fixture runs on the storage users run on."""
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
