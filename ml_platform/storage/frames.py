"""Helpers for polars frames that IO managers and assets share."""

from __future__ import annotations

import hashlib
import io
from typing import IO

import polars as pl


def content_hash(df: pl.DataFrame) -> str:
    """A data version for a frame: same rows in the same order and schema give the same hash.

    polars' row hash is stable for one polars version; an upgrade may change every hash
    once, which shows as new data versions, never as a false "unchanged".
    """
    return content_sha256(df)[:24]


def content_sha256(df: pl.DataFrame) -> str:
    """The full sha256 behind ``content_hash``, for stores with no byte-level digest (tables)."""
    h = hashlib.sha256(repr(df.schema).encode())
    if df.height:
        h.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()


def write_parquet(df: pl.DataFrame, sink: IO[bytes]) -> None:
    """The lake's Parquet encoding: zstd, with statistics for predicate pushdown."""
    df.write_parquet(sink, compression="zstd", statistics=True)


def to_parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    write_parquet(df, buf)
    return buf.getvalue()


def split_by_partition(
    df: pl.DataFrame, column: str, partition_keys: list[str]
) -> dict[str, pl.DataFrame]:
    """One frame per partition key; partitions without rows get an empty frame."""
    if column not in df.columns:
        raise ValueError(
            f"the output spans partitions {partition_keys[0]}..{partition_keys[-1]} but has no "
            f"partition column {column!r} to split it by (columns: {df.columns})"
        )
    # Partition values become key strings only once each: casting the whole column (a Date
    # to text) cost 40 ms per million rows, more than the split itself.
    runs = df.select(pl.col(column).rle()).unnest(column)
    keys = runs["value"].cast(pl.Utf8)
    if keys.is_unique().all():
        # Each partition's rows are contiguous (outputs sorted by their partition, as all of
        # ours are): zero-copy slices, so a range's output is never copied to be split.
        parts, offset = {}, 0
        for length, key in zip(runs["len"], keys, strict=True):
            parts[key] = df.slice(offset, length)
            offset += length
    else:
        groups = df.partition_by(column, as_dict=True, maintain_order=True)
        values = pl.Series([value for (value,) in groups], dtype=df.schema[column])
        parts = dict(zip(values.cast(pl.Utf8), groups.values(), strict=True))
    unexpected = sorted(set(parts) - set(partition_keys))
    if unexpected:
        raise ValueError(
            f"the output has rows for partitions outside the run's range: {unexpected[:5]}"
        )
    return {key: parts.get(key, df.clear()) for key in partition_keys}


def scan_parquet_union(sources: list) -> pl.LazyFrame:
    """One lazy scan over Parquet sources whose schemas may differ by added columns.

    A column added on some day (a nullable column a producer started sending) reads as
    null on the days before it. A column whose type differs between sources is an error
    naming it, never a silent cast. Footers are read once each to find the union schema.
    """
    if len(sources) <= 1:
        return pl.scan_parquet(sources)
    union: dict[str, pl.DataType] = {}
    differ = False
    for source in sources:
        schema = pl.scan_parquet(source).collect_schema()
        if union and list(schema.keys()) != list(union.keys()):
            differ = True
        for name, dtype in schema.items():
            seen = union.setdefault(name, dtype)
            if seen != dtype:
                raise ValueError(
                    f"column {name!r} is {seen} in one stored partition and {dtype} in "
                    "another; a changed column type needs those partitions re-materialized"
                )
    if not differ:
        return pl.scan_parquet(sources)
    return pl.scan_parquet(sources, schema=union, missing_columns="insert")
