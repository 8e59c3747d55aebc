"""Writing a query's result, batch by batch: memory holds one batch, not the result."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow as pa


def write_result(
    result: pa.RecordBatchReader,
    fmt: str,
    out: IO[str],
    output: Path | None = None,
    max_rows: int = 100,
) -> None:
    """Write a query result as a table (its first ``max_rows`` rows), CSV, JSON (an array of
    objects) or Parquet, batch by batch: memory holds one batch, not the result."""
    if fmt == "parquet":
        if output is None:
            raise ValueError("--format parquet needs --output FILE")
        import pyarrow.parquet as pq

        with pq.ParquetWriter(output, result.schema, compression="zstd") as writer:
            for batch in result:
                writer.write_batch(batch)
        return
    with open(output, "w") if output is not None else contextlib.nullcontext(out) as sink:
        if fmt == "csv":
            _write_csv(result, sink)
        elif fmt == "json":
            _write_json(result, sink)
        else:
            _write_table(result, sink, max_rows)


def _frames(result: pa.RecordBatchReader):
    # SQL allows a result two columns of one name (SELECT * over a join); a frame does not:
    # the later ones are written name_2, name_3, ...
    names = _unique_names(result.schema.names)
    for batch in result:
        frame = pl.from_arrow(batch.rename_columns(names))
        assert isinstance(frame, pl.DataFrame)
        yield frame


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def _write_csv(result: pa.RecordBatchReader, sink: IO[str]) -> None:
    header = True
    for frame in _frames(result):
        sink.write(frame.write_csv(include_header=header))
        header = False
    if header:  # no rows: the header alone
        sink.write(",".join(_unique_names(result.schema.names)) + "\n")


def _write_json(result: pa.RecordBatchReader, sink: IO[str]) -> None:
    sink.write("[")
    first = True
    for frame in _frames(result):
        if frame.height:
            sink.write(("" if first else ",") + frame.write_json()[1:-1])
            first = False
    sink.write("]\n")


def _write_table(result: pa.RecordBatchReader, sink: IO[str], max_rows: int) -> None:
    shown: list[pl.DataFrame] = []
    have, more = 0, 0
    for frame in _frames(result):
        take = max(0, min(frame.height, max_rows - have))
        if take:
            shown.append(frame.head(take))
            have += take
        more += frame.height - take  # counted, not kept
    empty = pl.from_arrow(
        result.schema.empty_table().rename_columns(_unique_names(result.schema.names))
    )
    table = pl.concat(shown) if shown else empty
    with pl.Config(
        tbl_rows=max_rows,
        tbl_cols=-1,
        tbl_width_chars=200,
        fmt_str_lengths=60,
        tbl_hide_column_data_types=False,
    ):
        sink.write(str(table) + "\n")
    if more:
        sink.write(f"({more:,} more rows not shown: --max-rows N, or --format csv)\n")
