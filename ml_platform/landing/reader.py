"""Parse one landed file into a loosely typed frame, or say exactly what is wrong with it."""

from __future__ import annotations

import gzip
import io
import zlib

import polars as pl

from ml_platform.landing.zone import DropFile

REQUIRED_COLUMNS = (
    "shipment_id",
    "booked_at",
    "origin_city",
    "origin_country",
    "destination_city",
    "destination_country",
    "distance_km",
    "weight_kg",
    "volume_m3",
    "transport_mode",
    "carrier",
    "price_eur",
)


class DropFileError(ValueError):
    """A landed file that cannot be read; the message names the file and the problem."""

    def __init__(self, file: DropFile, problem: str) -> None:
        self.file = file
        self.problem = problem
        super().__init__(f"{file.uri}: {problem}")


def parse_drop_file(file: DropFile, data: bytes) -> pl.DataFrame:
    """All columns as strings (timestamps as ISO 8601 UTC), required columns checked."""
    if not data:
        raise DropFileError(file, "empty file (0 bytes)")
    if file.name.endswith(".csv"):
        df = _parse_csv(file, data)
    elif file.name.endswith((".csv.gz", ".csv.zst")):
        df = _parse_csv(file, _decompress(file, data))
    elif file.name.endswith(".parquet"):
        df = _parse_parquet(file, data)
    else:
        raise DropFileError(
            file, "unsupported file type (expected .csv, .csv.gz, .csv.zst or .parquet)"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1 and any(d in df.columns[0] for d in ";\t|"):
            hint = " (the header looks like it uses another delimiter than ',')"
        raise DropFileError(
            file, f"missing required columns {missing}; found {df.columns[:20]}{hint}"
        )
    if df.height == 0:
        raise DropFileError(file, "no data rows (header only)")
    return df


def _decompress(file: DropFile, data: bytes) -> bytes:
    """The CSV inside a .csv.gz or .csv.zst (the source sha256 stays that of the landed bytes)."""
    codec = "gzip" if file.name.endswith(".gz") else "zstd"
    try:
        if codec == "gzip":
            raw = gzip.decompress(data)
        else:
            import pyarrow as pa  # pyarrow ships zstd: no extra dependency for it

            raw = pa.CompressedInputStream(pa.BufferReader(data), "zstd").read()
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise DropFileError(file, f"corrupt {codec} data: {_first_line(e)}") from None
    if not raw:
        raise DropFileError(file, f"empty file ({codec} data of 0 bytes)")
    return raw


def _parse_csv(file: DropFile, data: bytes) -> pl.DataFrame:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DropFileError(
            file, f"not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}"
        ) from None
    try:
        return pl.read_csv(io.BytesIO(data), infer_schema=False)
    except Exception as e:  # polars raises several error types for malformed CSV
        raise DropFileError(file, f"malformed CSV: {_first_line(e)}") from None


# The lake's text form of an instant: Parquet drops' times are written so, and the clean step
# parses with it given (ml_platform/transforms/shipments.py).
ISO_UTC = "%Y-%m-%dT%H:%M:%S%.fZ"


def _parse_parquet(file: DropFile, data: bytes) -> pl.DataFrame:
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except Exception as e:  # truncated or corrupt files raise from several layers
        raise DropFileError(file, f"unreadable Parquet: {_first_line(e)}") from None
    return df.with_columns(
        [
            pl.col(name).dt.convert_time_zone("UTC").dt.to_string(ISO_UTC)
            if isinstance(dtype, pl.Datetime) and dtype.time_zone
            else pl.col(name).dt.to_string(ISO_UTC)
            if isinstance(dtype, pl.Datetime)
            else pl.col(name).cast(pl.Utf8)
            for name, dtype in df.schema.items()
        ]
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
