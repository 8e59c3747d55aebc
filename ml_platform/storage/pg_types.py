"""Polars column types <-> PostgreSQL column types, without loss.

Postgres has no 1-byte or unsigned integers, no categorical and one timestamp resolution
(microseconds), so a column is stored in the narrowest Postgres type that holds every value
of its polars type, and the polars type itself is recorded beside the table (as a code from
``dtype_code``) so a read casts each column back to exactly what was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl
import pyarrow as pa


class UnsupportedColumnType(TypeError):
    pass


@dataclass(frozen=True)
class PgColumn:
    """One stored column: its name, polars type (as a code) and Postgres type."""

    name: str
    dtype: str
    pg_type: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "dtype": self.dtype, "pg_type": self.pg_type}


# Simple polars types: code -> (dtype, Postgres type, Arrow type the bulk path sends).
_SIMPLE: dict[str, tuple[pl.DataType, str, pa.DataType]] = {
    "Boolean": (pl.Boolean(), "boolean", pa.bool_()),
    "Int8": (pl.Int8(), "smallint", pa.int16()),
    "Int16": (pl.Int16(), "smallint", pa.int16()),
    "Int32": (pl.Int32(), "integer", pa.int32()),
    "Int64": (pl.Int64(), "bigint", pa.int64()),
    "UInt8": (pl.UInt8(), "smallint", pa.int16()),
    "UInt16": (pl.UInt16(), "integer", pa.int32()),
    "UInt32": (pl.UInt32(), "bigint", pa.int64()),
    "UInt64": (pl.UInt64(), "numeric(20,0)", pa.decimal128(20, 0)),
    "Float32": (pl.Float32(), "real", pa.float32()),
    "Float64": (pl.Float64(), "double precision", pa.float64()),
    "String": (pl.String(), "text", pa.large_string()),
    "Categorical": (pl.Categorical(), "text", pa.large_string()),
    "Binary": (pl.Binary(), "bytea", pa.large_binary()),
    "Date": (pl.Date(), "date", pa.date32()),
    "Time": (pl.Time(), "time", pa.time64("us")),
}
_DATETIME = re.compile(r"^Datetime\((ms|us|ns),(.*)\)$")
_DECIMAL = re.compile(r"^Decimal\((\d+),(\d+)\)$")


def dtype_code(name: str, dtype: pl.DataType) -> str:
    """A stable text code for a polars type; raises naming the column when it has no mapping."""
    if isinstance(dtype, pl.Datetime):
        return f"Datetime({dtype.time_unit},{dtype.time_zone or ''})"
    if isinstance(dtype, pl.Decimal):
        if dtype.precision > 1000:
            raise UnsupportedColumnType(f"column {name!r}: {dtype} exceeds numeric's precision")
        return f"Decimal({dtype.precision},{dtype.scale})"
    for code, (simple, _, _) in _SIMPLE.items():
        if dtype == simple:
            return code
    raise UnsupportedColumnType(
        f"column {name!r} has polars type {dtype}, which the Postgres IO manager does not "
        f"store (supported: {', '.join(_SIMPLE)}, Datetime, Decimal)"
    )


def dtype_from_code(code: str) -> pl.DataType:
    if code in _SIMPLE:
        return _SIMPLE[code][0]
    if m := _DATETIME.match(code):
        return pl.Datetime(m.group(1), m.group(2) or None)
    if m := _DECIMAL.match(code):
        return pl.Decimal(int(m.group(1)), int(m.group(2)))
    raise UnsupportedColumnType(f"unknown stored column type code {code!r}")


def pg_type(code: str) -> str:
    """The Postgres column type for a dtype code (fixed strings, never user input)."""
    if code in _SIMPLE:
        return _SIMPLE[code][1]
    if m := _DATETIME.match(code):
        return "timestamp with time zone" if m.group(2) else "timestamp without time zone"
    if m := _DECIMAL.match(code):
        return f"numeric({m.group(1)},{m.group(2)})"
    raise UnsupportedColumnType(f"unknown stored column type code {code!r}")


def columns_of(df: pl.DataFrame) -> list[PgColumn]:
    out = []
    for name, dtype in df.schema.items():
        code = dtype_code(name, dtype)
        out.append(PgColumn(name, code, pg_type(code)))
    return out


def to_arrow_for_copy(df: pl.DataFrame, columns: list[PgColumn]) -> pa.Table:
    """The frame as an Arrow table whose types the bulk path maps onto the stored columns."""
    exprs = []
    for col in columns:
        dtype = df.schema[col.name]
        expr = pl.col(col.name)
        if isinstance(dtype, pl.Datetime) and dtype.time_unit == "ns":
            _check_whole_microseconds(df, col.name)
            expr = expr.dt.cast_time_unit("us")
        elif dtype == pl.Categorical():
            expr = expr.cast(pl.String())
        exprs.append(expr)
    table = df.select(exprs).to_arrow()
    fields = []
    for col, field in zip(columns, table.schema, strict=True):
        target = _arrow_target(col.dtype, field.type)
        fields.append(pa.field(col.name, target, nullable=True))
    return table.cast(pa.schema(fields))


def _arrow_target(code: str, current: pa.DataType) -> pa.DataType:
    if code in _SIMPLE:
        return _SIMPLE[code][2]
    if m := _DATETIME.match(code):
        return pa.timestamp("us", "UTC" if m.group(2) else None)
    if m := _DECIMAL.match(code):
        precision, scale = int(m.group(1)), int(m.group(2))
        return pa.decimal128(precision, scale) if precision <= 38 else current
    return current


def _check_whole_microseconds(df: pl.DataFrame, name: str) -> None:
    if df.select((pl.col(name).dt.nanosecond() % 1000 != 0).any()).item():
        raise UnsupportedColumnType(
            f"column {name!r} has timestamps with sub-microsecond parts; Postgres stores "
            "microseconds, so they would be truncated"
        )


def from_arrow_read(table: pa.Table, columns: list[PgColumn]) -> pl.DataFrame:
    """A table read back from Postgres, cast to exactly the polars types that were written."""
    # numeric comes back as an Arrow extension type over text: unwrap it to its storage.
    arrays = [_unwrap(table.column(i)) for i in range(table.num_columns)]
    plain = pa.table(arrays, names=[c.name for c in columns])
    df = pl.from_arrow(plain)
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(_cast_back(c) for c in columns)


def _unwrap(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if not isinstance(column.type, pa.BaseExtensionType):
        return column
    return pa.chunked_array([c.storage for c in column.chunks], type=column.type.storage_type)


def _cast_back(col: PgColumn) -> pl.Expr:
    target = dtype_from_code(col.dtype)
    expr = pl.col(col.name)
    if isinstance(target, pl.Datetime) and target.time_zone:
        # timestamptz reads back in UTC: same instants, shown in the written zone.
        return expr.dt.convert_time_zone(target.time_zone).dt.cast_time_unit(target.time_unit)
    if isinstance(target, pl.Datetime):
        return expr.dt.cast_time_unit(target.time_unit)
    return expr.cast(target)
