"""The catalog of the analyst tables in PostgreSQL: schema ``_ml_platform``.

``tables`` holds each stored table's polars column types (so reads cast back without loss)
and partition column; ``partitions`` holds, per partition, the run that wrote the current
rows (written by ml_platform/storage/postgres_tables.py). Tables are created here, and
evolved only by adding columns: a changed or dropped column is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ml_platform.storage.pg_types import PgColumn, pg_type

META_SCHEMA = "_ml_platform"
_MAX_IDENTIFIER_BYTES = 63  # longer names are silently truncated by Postgres: refuse them


class TableSchemaError(ValueError):
    """A write that would change or drop a stored column; the table is left untouched."""


def quote_ident(name: str) -> str:
    """A Postgres identifier, always double-quoted; refuses names Postgres would alter."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}: empty or contains NUL")
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"SQL identifier {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes; "
            "Postgres would truncate it"
        )
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableInfo:
    schema: str
    table: str
    columns: list[PgColumn]
    partition_column: str | None

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    def column(self, name: str) -> PgColumn:
        return next(c for c in self.columns if c.name == name)


def bootstrap(cur: Any) -> None:
    """Create the catalog schema and its two tables where they are missing."""
    meta = quote_ident(META_SCHEMA)
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {meta}")
    cur.execute(
        f"""CREATE TABLE IF NOT EXISTS {meta}.tables (
            schema_name text NOT NULL, table_name text NOT NULL, partition_column text,
            columns jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (schema_name, table_name))"""
    )
    cur.execute(
        f"""CREATE TABLE IF NOT EXISTS {meta}.partitions (
            schema_name text NOT NULL, table_name text NOT NULL, partition_key text NOT NULL,
            run_id text NOT NULL, rows bigint NOT NULL, content_hash text NOT NULL,
            sha256 text NOT NULL, size_bytes bigint NOT NULL, txid bigint NOT NULL,
            written_at timestamptz NOT NULL,
            PRIMARY KEY (schema_name, table_name, partition_key))"""
    )


def stored_info_or_none(cur: Any, schema: str, table: str) -> TableInfo | None:
    """The table's catalog entry; None also where nothing was ever stored (no catalog yet)."""
    cur.execute(f"SELECT to_regclass('{META_SCHEMA}.tables') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    return stored_info(cur, schema, table)


def stored_info(cur: Any, schema: str, table: str) -> TableInfo | None:
    cur.execute(
        f"SELECT columns::text, partition_column FROM {quote_ident(META_SCHEMA)}.tables "  # noqa: S608
        "WHERE schema_name = $1 AND table_name = $2",
        (schema, table),
    )
    row = cur.fetchone()
    if row is None:
        return None
    # The Postgres type is derived again from the dtype code, never taken from the catalog
    # row: it is written into SQL, and a catalog row is data anyone with write access to the
    # metadata schema could change.
    columns = [PgColumn(c["name"], c["dtype"], pg_type(c["dtype"])) for c in json.loads(row[0])]
    return TableInfo(schema, table, columns, row[1])


def create_table(cur: Any, info: TableInfo) -> None:
    cols = ", ".join(f"{quote_ident(c.name)} {c.pg_type}" for c in info.columns)
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(info.schema)}")
    cur.execute(f"CREATE TABLE {info.qualified} ({cols})")
    if info.partition_column is not None:
        # BRIN: partitions arrive as contiguous blocks of rows, so a tiny BRIN index finds a
        # partition's blocks while costing the bulk load next to nothing (a btree over the
        # same column halves COPY throughput).
        cur.execute(
            f"CREATE INDEX ON {info.qualified} USING brin ({quote_ident(info.partition_column)})"
        )
    save_info(cur, info)


def evolve(
    cur: Any, stored: TableInfo, columns: list[PgColumn], partition_column: str | None
) -> TableInfo:
    if stored.partition_column != partition_column:
        raise TableSchemaError(
            f"{stored.name}: stored with partition column {stored.partition_column!r}, "
            f"written now with {partition_column!r}"
        )
    new = {c.name: c for c in columns}
    removed = [c.name for c in stored.columns if c.name not in new]
    if removed:
        raise TableSchemaError(
            f"{stored.name}: column(s) {removed} are stored but missing from the output; "
            "dropping a column needs an explicit migration, the table was left untouched"
        )
    for old in stored.columns:
        if new[old.name].dtype != old.dtype:
            raise TableSchemaError(
                f"{stored.name}: column {old.name!r} changed type from {old.dtype} to "
                f"{new[old.name].dtype}; the table was left untouched"
            )
    known = {c.name for c in stored.columns}
    added = [c for c in columns if c.name not in known]
    if not added:
        return stored
    for c in added:
        cur.execute(f"ALTER TABLE {stored.qualified} ADD COLUMN {quote_ident(c.name)} {c.pg_type}")
    info = TableInfo(stored.schema, stored.table, [*stored.columns, *added], partition_column)
    save_info(cur, info)
    return info


def save_info(cur: Any, info: TableInfo) -> None:
    cur.execute(
        f"""INSERT INTO {quote_ident(META_SCHEMA)}.tables (schema_name, table_name,
                partition_column, columns)
            VALUES ($1, $2, $3, $4::jsonb)
            ON CONFLICT (schema_name, table_name) DO UPDATE SET columns = excluded.columns""",  # noqa: S608
        (
            info.schema,
            info.table,
            info.partition_column,
            json.dumps([c.as_dict() for c in info.columns]),
        ),
    )
