"""The local instance's storage: Dagster's SQLite storage, with one engine per database file.

Dagster's ``SqliteEventLogStorage`` creates a SQLAlchemy engine and opens a new SQLite
connection for every event it stores, two or three times for an asset event (the run's
shard, then the cross-run index). A 5-day raw+clean run stores 63 events; that cost 0.64 s
of its 1.3 s fixed cost here, and a backfill pays it for every chunk. This storage keeps one
pooled engine per shard instead (0.32 s). It also creates a run's shard as a copy of an empty
one Dagster initialized (Dagster sets up each new shard itself, loading alembic's scripts
twice: 0.19 s a run), remembers the schema it has found instead of probing it for every
event, and upserts an asset's row instead of catching an IntegrityError for every event of a
known asset (whose tracebacks kept step outputs alive), and opens run and schedule databases
whose schema is stamped without loading alembic's scripts. Otherwise it is Dagster's: same
files, same layout, same schema, so a home can switch between the two either way.

The local ``dagster.yaml`` selects it:

    storage:
      custom:
        module: ml_platform.instance_storage
        class: PooledSqliteStorage
        config:
          base_dir: {env: DAGSTER_HOME}

Production keeps its instance on PostgreSQL, whose storage pools connections already.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ml_platform.dagster_internals import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    AssetKeyTable,
    DagsterSqliteStorage,
    SqliteEventLogStorage,
    SqliteRunStorage,
    SqliteScheduleStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
    create_db_conn_string,
)

# Long-lived processes (webserver, daemon) read many runs' shards: keep the engines of the
# most recently used ones open, close the rest.
MAX_OPEN_SHARDS = 16


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage reusing one engine (and its connection) per shard."""

    def __init__(self, base_dir: str, inst_data=None) -> None:
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()  # guarded by _db_lock
        self._known_tables: set[str] = set()
        self._known_asset_key_columns: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        # The same contract as Dagster's: one transaction under the storage's lock.
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                with conn.begin():
                    yield conn

    def _engine(self, shard: str) -> sa.Engine:
        """The shard's engine, created on first use; called under ``_db_lock``."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = sa.create_engine(
            self.conn_string_for_shard(shard),
            pool_size=1,
            max_overflow=2,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        if shard not in self._initialized_dbs:
            if not (self._create_from_template(shard) or self._is_stamped(shard, engine)):
                self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > MAX_OPEN_SHARDS:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    # Dagster initializes every new run shard itself: it loads alembic's migration scripts
    # twice (to compare revisions, then to stamp one) and creates each table and index; 0.19 s
    # of a run's 0.85 s fixed cost here, paid by every run. A new shard is a copy of one that
    # Dagster initialized, instead: a millisecond.
    def _create_from_template(self, shard: str) -> bool:
        """Create a new run shard from the template; False if it exists (or is the index)."""
        path = Path(self.path_for_shard(shard))
        if shard == INDEX_SHARD_NAME or path.exists():
            return False
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        shutil.copyfile(self._shard_template(), partial)
        try:
            os.link(partial, path)  # never replaces a shard another process made meanwhile
        except FileExistsError:
            return False
        finally:
            partial.unlink()
        return True

    def _is_stamped(self, shard: str, engine: sa.Engine) -> bool:
        """Whether the shard exists with a schema revision stamped, so Dagster's _initdb would
        leave it as it is (it creates tables only where no revision is stamped); that check
        loads alembic's scripts, 0.13 s in every process on its first event."""
        return _stamped(Path(self.path_for_shard(shard)), engine)

    def _shard_template(self) -> Path:
        """An empty shard as this Dagster release initializes one, made on first use."""
        # Not *.db: Dagster lists the runs by the shards' names.
        template = Path(self._base_dir) / f".shard-template-{dg.__version__}.sqlite"
        if not template.exists():
            partial = template.with_name(f"{template.name}.{uuid.uuid4().hex}.partial")
            engine = sa.create_engine(f"sqlite:///{partial}", poolclass=sa.NullPool)
            try:
                self._initdb(engine)  # Dagster's own initialization, as for any new shard
            finally:
                engine.dispose()  # the last connection's close checkpoints the WAL into the file
            os.replace(partial, template)
        return template

    # Dagster's version inserts the asset's row and, when the asset is known (for nearly every
    # event), catches the IntegrityError and updates it. Each caught error's traceback keeps
    # the frames above it alive in a reference cycle, the step's output among them, until the
    # cyclic GC runs: in a backfill worker, a chunk's raw frame stayed in memory while clean
    # ran (0.2 to 0.6 GB more at the peak, depending on when the GC happened to run). An
    # upsert, as Dagster's Postgres storage does it, raises nothing.
    def _store_asset_event(self, conn: sa.Connection, event, event_id: int) -> None:
        if not (event.dagster_event and event.dagster_event.asset_key):
            return
        values = self._get_asset_entry_values(
            event, event_id, self._has_asset_key_index_cols_on_connection(conn)
        )
        if not values:
            return
        insert = sqlite_insert(AssetKeyTable).values(
            asset_key=event.dagster_event.asset_key.to_string(), **values
        )
        conn.execute(
            insert.on_conflict_do_update(index_elements=[AssetKeyTable.c.asset_key], set_=values)
        )

    # Dagster probes the index's schema for every asset event it stores: the asset_keys
    # table's columns by reflection, and whether the event tags table exists through a new
    # engine. Tables and columns are only ever added (by `dagster instance migrate`), so one
    # found is remembered for the life of the process; one missing is asked again.
    def has_table(self, table_name: str) -> bool:
        ask = partial(super().has_table, table_name)
        return _found_once(self._known_tables, table_name, ask)

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        ask = partial(super()._has_asset_key_col_on_connection, conn, column_name)
        return _found_once(self._known_asset_key_columns, column_name, ask)

    def close_engines(self) -> None:
        """Close every open connection (before a fork, a wipe, or at the end)."""
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self.close_engines()  # wiping unlinks the shard files these connections point at
        super().wipe()

    def dispose(self) -> None:
        self.close_engines()
        super().dispose()


def _found_once(known: set[str], name: str, ask: Callable[[], bool]) -> bool:
    """``ask()``, remembered in ``known`` once it is True."""
    if name in known:
        return True
    if ask():
        known.add(name)
        return True
    return False


class PooledSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite instance storage with the pooled event log above."""

    # Dagster's constructor opens the run and schedule storages through their from_local,
    # which loads alembic's migration scripts for each to compare revisions: 54 ms of every
    # process's first DagsterInstance.get(), so of every CLI command and every backfill run,
    # only to find the schema stamped. A stamped database is opened directly; any other goes
    # through Dagster's from_local, which creates, stamps or migrates it. The same attributes
    # as Dagster's constructor sets (ml_platform_tests/test_dagster_internals.py checks).
    def __init__(self, base_dir: str, inst_data=None) -> None:
        super(DagsterSqliteStorage, self).__init__()
        self.base_dir = base_dir
        self._run_storage = _open_stamped(
            SqliteRunStorage, _runs_directory(base_dir), "runs", also_needs="instance_info"
        )
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = _open_stamped(
            SqliteScheduleStorage, _schedule_directory(base_dir), "schedules"
        )
        self._inst_data = inst_data

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteStorage:
        # Dagster's own returns a DagsterSqliteStorage whatever the class it is called on.
        return cls.from_local(inst_data=inst_data, **config_value)


def _open_stamped(storage_class, base_dir: str, db_name: str, also_needs: str | None = None):
    """``storage_class`` on ``base_dir``'s database: directly when its schema revision is
    stamped (and table ``also_needs`` exists), else through Dagster's ``from_local``."""
    conn_string = create_db_conn_string(base_dir, db_name)
    engine = sa.create_engine(conn_string, poolclass=sa.NullPool)
    try:
        ready = _stamped(Path(base_dir, f"{db_name}.db"), engine, also_needs)
    finally:
        engine.dispose()
    return storage_class(conn_string) if ready else storage_class.from_local(base_dir)


def _stamped(path: Path, engine: sa.Engine, also_needs: str | None = None) -> bool:
    """Whether the SQLite database at ``path`` (``engine``'s) exists with a schema revision
    stamped, and table ``also_needs`` if named: then Dagster's setup would leave it as it is."""
    if not path.exists():  # connecting would create it
        return False
    with engine.connect() as conn:  # None where no revision (or no such table) exists yet
        if MigrationContext.configure(conn).get_current_revision() is None:
            return False
        return also_needs is None or sa.inspect(conn).has_table(also_needs)
