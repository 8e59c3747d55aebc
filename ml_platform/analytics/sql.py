"""Read-only SQL over a catalog of stored versions: an in-memory DuckDB over verified copies.

Each view of the catalog becomes, in an in-memory DuckDB database, a view over verified
copies of its Parquet objects in the session's spool folder (``views.spool_objects``), or a
table of the Postgres rows streamed as Arrow (``views.table_batches``); the catalog itself
is ``ml_platform.versions``. DuckDB reads the copies at query time, only the columns and row
groups a query needs, keeps at most ``ML_PLATFORM_SQL_MEMORY_LIMIT`` in memory and spills
the rest to its temporary folder: a year of partitions is queried with the memory of a few,
and nothing of a view passes through Python whole. Both folders are in the session's
scratch folder (``analytics/scratch.py``), removed when the session closes.

Queries cannot change anything outside that database, twice over: only single SELECT
statements are accepted (``DROP``, ``INSERT``, ``COPY ... TO``, ``ATTACH``, ``SET`` ... are
refused before they run), and once the data is loaded DuckDB may read only the spool folder
(copies, never the lake's own files) and its configuration is locked, so a SELECT reads
nothing else. Results leave DuckDB as Arrow batches, written by ``analytics/results.py``
(table, CSV, JSON, Parquet).
"""

from __future__ import annotations

import difflib
import os
import re
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from ml_platform.analytics.scratch import SessionFolder
from ml_platform.analytics.views import (
    CATALOG_SCHEMA,
    VERSIONS_TABLE,
    Catalog,
    UnavailableVersionError,
    View,
    check_available,
    check_rows,
    quote_ident,
    spool_objects,
    table_batches,
)
from ml_platform.settings import load_settings

FORMATS = ("table", "csv", "json", "parquet")
_ALLOWED = {"SELECT"}


# Rows of a query result that pass through Python at a time. DuckDB prepares batches ahead,
# so smaller ones bound memory tighter: 30 days of raw rows as CSV peaked at 570 MB with
# 65,536-row batches and 380 MB with these, in the same time.
RESULT_BATCH_ROWS = 16_384


class QueryRefusedError(Exception):
    """A statement that is not a single read-only SELECT."""


class UnknownTableError(ValueError):
    """A query names a table that is not one of the views."""

    def __init__(self, name: str, views: list[str]) -> None:
        close = difflib.get_close_matches(name, views, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        super().__init__(f"no table {name}; {hint}the tables: {', '.join(views)}")


def duckdb_message(error: BaseException) -> str:
    """DuckDB's message on one line: its text without the LINE/caret excerpt."""
    lines = []
    for line in str(error).splitlines():
        if line.startswith("LINE ") or not line.strip():
            if line.startswith("LINE "):
                break
            continue
        lines.append(line.strip())
    return " ".join(lines) or type(error).__name__


class Session:
    """An in-memory DuckDB over one catalog; views are loaded the first time a query needs them."""

    def __init__(self, catalog: Catalog, memory_limit: str | None = None) -> None:
        check_available(catalog)
        self.catalog = catalog
        self.views = catalog.views()
        settings = load_settings()
        # DuckDB's spill files and the verified copies of stored objects, removed on close.
        memory_limit = memory_limit or settings.sql_memory_limit
        self._scratch = SessionFolder(settings.sql_scratch)
        try:
            self.con = duckdb.connect(
                ":memory:",
                config={
                    "memory_limit": memory_limit,
                    "temp_directory": str(self._scratch.path / "spill"),
                },
            )
            self._spool = self._scratch.path / "spool"
            self.loaded: set[str] = set()
            self.locked = False
            self._create_catalog_table()
            # Every view's schema now, so a mistyped table gets an answer naming the views.
            for schema in sorted({view.schema for view in self.views.values()}):
                self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        except BaseException:
            if hasattr(self, "con"):
                self.con.close()
            self._scratch.close()
            raise

    def close(self) -> None:
        self.con.close()
        self._scratch.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- loading ---------------------------------------------------------------------------
    def _create_catalog_table(self) -> None:
        self.con.execute(f"CREATE SCHEMA {quote_ident(CATALOG_SCHEMA)}")
        self._create(
            f"{quote_ident(CATALOG_SCHEMA)}.{VERSIONS_TABLE}",
            self.catalog.versions_frame().to_arrow(),
        )

    def _create(self, qualified: str, arrow: pa.Table | pa.RecordBatchReader) -> None:
        name = f"_load_{uuid.uuid4().hex}"
        self.con.register(name, arrow)
        try:
            self.con.execute(f"CREATE TABLE {qualified} AS SELECT * FROM {name}")  # noqa: S608
        finally:
            self.con.unregister(name)

    def load(self, names: set[str] | None = None) -> None:
        """Load the named views (all when None) that are not loaded yet."""
        wanted = sorted(set(self.views) if names is None else names & set(self.views))
        for name in wanted:
            if name in self.loaded:
                continue
            view = self.views[name]
            if self.locked:
                raise RuntimeError("views must be loaded before the session is locked")
            if self.catalog.kind(self.catalog.nodes[view.asset][0]) == "table":
                kind = "TABLE"
                with table_batches(self.catalog, view) as batches:
                    self._create(view.qualified, batches)
            else:
                kind = "VIEW"
                self._create_view_of_objects(view)
            count = f"SELECT count(*) FROM {view.qualified}"  # noqa: S608 (quoted identifiers)
            (rows,) = self.con.execute(count).fetchone()
            try:
                check_rows(self.catalog, view, rows)
            except UnavailableVersionError:
                self.con.execute(f"DROP {kind} {view.qualified}")
                raise
            self.loaded.add(name)

    def _create_view_of_objects(self, view: View) -> None:
        # A view over verified copies in the session's spool folder, which DuckDB reads at
        # query time: only the columns and row groups a query needs, a few at a time (a count
        # reads no row at all). By name, so a column added in later partitions is null in
        # earlier ones, as polars' diagonal concat has it. Copies rather than the lake's own
        # files: DuckDB may read the spool folder, and nothing else, once the session is
        # locked, so nothing the lake holds is within its reach.
        paths = spool_objects(self.catalog, view, self._spool / uuid.uuid4().hex)
        files = ", ".join(_literal(str(p)) for p in paths)
        self.con.execute(
            f"CREATE VIEW {view.qualified} AS "  # noqa: S608 (quoted identifiers, our own paths)
            # No hive partitioning: a name=value folder in the scratch path is not a column.
            f"SELECT * FROM read_parquet([{files}], union_by_name = true, hive_partitioning = false)"
        )

    def load_for(self, query: str) -> None:
        """Load the views a query reads (every view when that cannot be told)."""
        self.load(referenced_views(query, self.views))

    def lock(self) -> None:
        """No file access and no configuration change from here on."""
        if not self.locked:
            # The spooled copies the views read stay readable; every other file is not.
            spool = _literal(f"{self._spool}{os.sep}")
            self.con.execute(f"SET allowed_directories = [{spool}]")
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
            self.locked = True

    # -- querying --------------------------------------------------------------------------
    def query(self, sql: str) -> pa.RecordBatchReader:
        """Run one read-only SELECT; its rows stream in batches (read them while the session
        is open). DuckDB's errors propagate as ``duckdb.Error``."""
        refuse_unless_select(self.con, sql)
        unknown = unknown_tables(sql, self.views)
        if unknown:
            raise UnknownTableError(unknown[0], sorted(self.views))
        self.load_for(sql)
        self.lock()
        # Streamed: a result as large as the lake passes through Python a batch at a time.
        return self.con.sql(sql).to_arrow_reader(RESULT_BATCH_ROWS)

    def export(self, path: Path) -> list[str]:
        """Write every view and the catalog table as tables of a DuckDB database file.

        Written to a temporary file beside it and renamed, so an interrupted export never
        leaves a half-written database under the name. Returns the tables written.
        """
        path = export_target(path)
        self.load()
        if self.locked:
            raise RuntimeError("export before the session is locked")
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tables = [f"{CATALOG_SCHEMA}.{VERSIONS_TABLE}", *sorted(self.loaded)]
        self.con.execute(f"ATTACH {_literal(str(tmp))} AS ml_platform_export")
        try:
            for name in tables:
                schema, table = name.split(".", 1)
                target = f"ml_platform_export.{quote_ident(schema)}"
                self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {target}")
                self.con.execute(
                    f"CREATE TABLE {target}.{quote_ident(table)} AS "  # noqa: S608
                    f"SELECT * FROM memory.{quote_ident(schema)}.{quote_ident(table)}"
                )
        finally:
            self.con.execute("DETACH ml_platform_export")
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        return tables


# Every DuckDB database file has these bytes at offset 8 (after its header's checksum).
DUCKDB_MAGIC = b"DUCK"


def export_target(path: Path) -> Path:
    """Where an export may go: a new file in an existing folder, or a DuckDB database it
    replaces (exporting again refreshes it); anything else is refused before it is touched."""
    path = Path(path).absolute()
    if not path.parent.is_dir():
        raise ValueError(f"--export {path}: there is no folder {path.parent}")
    if path.exists():
        is_duckdb = False
        if path.is_file():
            with open(path, "rb") as f:
                is_duckdb = f.read(12)[8:] == DUCKDB_MAGIC
        if not is_duckdb:
            raise ValueError(
                f"--export {path}: exists and is not a DuckDB database; nothing was written"
            )
    return path


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def refuse_unless_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Accept exactly one SELECT (including WITH, DESCRIBE, SHOW, SUMMARIZE); refuse the rest."""
    statements = con.extract_statements(sql)
    if not statements:
        raise QueryRefusedError("no statement given")
    if len(statements) > 1:
        raise QueryRefusedError(f"one statement at a time, got {len(statements)}")
    kind = statements[0].type.name
    if kind not in _ALLOWED:
        raise QueryRefusedError(
            f"read-only: {kind} statements are refused, only SELECT queries run here"
        )


_ALIAS = re.compile(r"\s+AS\s+.*$", re.IGNORECASE | re.DOTALL)


def referenced_views(sql: str, views: dict[str, View]) -> set[str] | None:
    """The views a query names (none when it reads only the catalog table), or None (all of
    them) when it names no table (``SHOW TABLES``, ``duckdb_tables()``) or cannot be parsed."""
    names = _table_names(sql)
    if not names:
        return None
    return {name for name in names if name in views}


def unknown_tables(sql: str, views: dict[str, View]) -> list[str]:
    """Tables a query names in a schema of the views (or the catalog's) that do not exist."""
    schemas = {view.schema for view in views.values()} | {CATALOG_SCHEMA}
    known = set(views) | {f"{CATALOG_SCHEMA}.{VERSIONS_TABLE}"}
    return sorted(
        name
        for name in _table_names(sql) or []
        if name.split(".")[0] in schemas and name not in known
    )


def _table_names(sql: str) -> list[str] | None:
    """The tables a query names, as ``schema.table`` in lower case (None: unparseable)."""
    try:
        names = duckdb.get_table_names(sql, qualified=True)
    except duckdb.Error:
        return None
    found = []
    for name in names:
        base = _ALIAS.sub("", name).replace('"', "").strip().lower()
        if base.startswith("memory."):
            base = base[len("memory.") :]
        found.append(base if "." in base else f"main.{base}")  # unqualified: the main schema
    return found


# -- output --------------------------------------------------------------------------------
