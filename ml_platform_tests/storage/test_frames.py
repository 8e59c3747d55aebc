"""Splitting a range's output into its partitions (storage.frames.split_by_partition)."""

from datetime import date

import polars as pl
import pytest

from ml_platform.storage.frames import split_by_partition

KEYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def _frame(days: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"partition_date": [date.fromisoformat(d) for d in days], "row": range(len(days))}
    )


def test_contiguous_days_split_into_slices_keyed_by_partition_key():
    df = _frame(["2026-01-01", "2026-01-01", "2026-01-03"])
    parts = split_by_partition(df, "partition_date", KEYS)
    assert list(parts) == KEYS
    assert parts["2026-01-01"]["row"].to_list() == [0, 1]
    assert parts["2026-01-02"].height == 0
    assert parts["2026-01-02"].schema == df.schema  # an empty day keeps the columns
    assert parts["2026-01-03"]["row"].to_list() == [2]


def test_interleaved_days_split_in_row_order():
    df = _frame(["2026-01-02", "2026-01-01", "2026-01-02", "2026-01-01"])
    parts = split_by_partition(df, "partition_date", KEYS)
    assert parts["2026-01-01"]["row"].to_list() == [1, 3]
    assert parts["2026-01-02"]["row"].to_list() == [0, 2]
    assert parts["2026-01-01"].columns == df.columns


def test_text_partition_column_splits_alike():
    df = pl.DataFrame({"day": ["2026-01-03", "2026-01-01"], "row": [0, 1]})
    parts = split_by_partition(df, "day", KEYS)
    assert parts["2026-01-03"]["row"].to_list() == [0]
    assert parts["2026-01-01"]["row"].to_list() == [1]


def test_rows_outside_the_range_are_refused_naming_them():
    df = _frame(["2026-01-01", "2026-02-01"])
    with pytest.raises(ValueError, match="2026-02-01"):
        split_by_partition(df, "partition_date", KEYS)
    with pytest.raises(ValueError, match="2026-02-01"):  # interleaved: the other path
        split_by_partition(
            _frame(["2026-02-01", "2026-01-01", "2026-02-01"]), "partition_date", KEYS
        )
