"""The versioned Parquet IO manager: atomic, versioned, range-aware and lazy."""

from datetime import date

import dagster as dg
import polars as pl
import pytest

from ml_platform.storage.object_store import LocalObjectStore
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager
from ml_platform_tests.pipeline.helpers import current_version

daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")


def _frame(day: str, n: int, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "partition_date": [date.fromisoformat(day)] * n,
            "value": list(range(offset, offset + n)),
        }
    )


@dg.asset(
    partitions_def=daily,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "partition_date"},
    io_manager_key="lake",
)
def numbers(context: dg.AssetExecutionContext) -> pl.DataFrame:
    offset = context.run.tags.get("offset", "0")
    df = pl.concat([_frame(k, 3, int(offset)) for k in context.partition_keys])
    if context.run.tags.get("extra"):
        # A producer starts sending a new nullable column on one day.
        df = df.with_columns(note=pl.lit("new"))
    return df


@dg.asset(
    partitions_def=daily,
    ins={"numbers": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2))},
    io_manager_key="lake",
)
def window_sum(numbers: pl.LazyFrame) -> pl.DataFrame:
    assert isinstance(numbers, pl.LazyFrame)
    return (
        numbers.group_by("partition_date")
        .agg(pl.col("value").sum())
        .sort("partition_date")
        .collect()
    )


@dg.asset(
    partitions_def=daily,
    ins={"numbers": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-2))},
    io_manager_key="lake",
)
def drift_window(numbers: pl.DataFrame) -> pl.DataFrame:
    return numbers.sort("partition_date", "value")


def _failure(result) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    return str(error.cause or error)


def _materialize(tmp_path, instance, selection, **kwargs):
    return dg.materialize(
        [numbers, window_sum, drift_window],
        selection=selection,
        instance=instance,
        resources={"lake": LocalParquetIOManager(root=str(tmp_path / "lake"))},
        **kwargs,
    )


def _pointer(instance, asset: str, partition: str) -> dict:
    """The current version: what the partition's latest materialization names."""
    return current_version(instance, asset, partition)


def test_range_output_is_split_into_one_versioned_object_per_partition(tmp_path, instance):
    result = _materialize(
        tmp_path,
        instance,
        [numbers],
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-03",
        },
    )
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        pointer = _pointer(instance, "numbers", day)
        assert pointer["run_id"] == result.run_id
        stored = pl.read_parquet(tmp_path / "lake" / pointer["key"])
        assert stored.equals(_frame(day, 3))
    mats = result.get_asset_materialization_events()
    by_partition = {m.partition: m.materialization.metadata for m in mats}
    assert by_partition["2026-01-02"]["dagster/row_count"].value == 3
    assert (
        by_partition["2026-01-02"]["ml_platform/sha256"].value
        == _pointer(instance, "numbers", "2026-01-02")["sha256"]
    )


def test_window_is_loaded_lazily_and_recorded_exactly(tmp_path, instance):
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        assert _materialize(tmp_path, instance, [numbers], partition_key=day).success
    result = _materialize(tmp_path, instance, [window_sum], partition_key="2026-01-03")
    stored = pl.read_parquet(
        tmp_path / "lake" / _pointer(instance, "window_sum", "2026-01-03")["key"]
    )
    assert stored["value"].to_list() == [3, 3, 3]
    inputs = (
        result.get_asset_materialization_events()[0]
        .materialization.metadata["ml_platform/inputs"]
        .value
    )
    read = inputs[0]["partitions"]
    assert [r["partition"] for r in read] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert all(r["storage_id"] is not None and r["data_version"] for r in read)


def test_a_range_run_failing_half_way_publishes_nothing(tmp_path, instance, monkeypatch):
    """Partitions written before the failure are invisible: no event names them."""
    first = _materialize(
        tmp_path,
        instance,
        [numbers],
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-03",
        },
    )
    before = {
        d: _pointer(instance, "numbers", d) for d in ("2026-01-01", "2026-01-02", "2026-01-03")
    }

    real_put = LocalObjectStore.put_streamed
    writes = []

    def fail_third_write(self, key, write, size_hint):
        writes.append(key)
        if len(writes) == 3:
            raise OSError("disk full on the third partition")
        return real_put(self, key, write, size_hint)

    monkeypatch.setattr(LocalObjectStore, "put_streamed", fail_third_write)
    result = _materialize(
        tmp_path,
        instance,
        [numbers],
        tags={
            "offset": "100",
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-03",
        },
        raise_on_error=False,
    )
    assert not result.success
    monkeypatch.undo()
    # Two objects of the failed run exist on disk, yet every reader still gets the first run's.
    assert len(list((tmp_path / "lake" / "numbers").rglob(f"{result.run_id}-*.parquet"))) == 2
    for day, pointer in before.items():
        assert _pointer(instance, "numbers", day) == pointer
        assert pointer["run_id"] == first.run_id
    summed = _materialize(tmp_path, instance, [window_sum], partition_key="2026-01-03")
    stored = pl.read_parquet(
        tmp_path / "lake" / _pointer(instance, "window_sum", "2026-01-03")["key"]
    )
    assert stored["value"].to_list() == [3, 3, 3]  # the first run's values, not offset 100
    inputs = summed.get_asset_materialization_events()[0].materialization.metadata
    assert {r["run_id"] for r in inputs["ml_platform/inputs"].value[0]["partitions"]} == {
        first.run_id
    }


def test_a_version_whose_object_is_gone_fails_naming_it(tmp_path, instance):
    assert _materialize(tmp_path, instance, [numbers], partition_key="2026-01-03").success
    for day in ("2026-01-01", "2026-01-02"):
        assert _materialize(tmp_path, instance, [numbers], partition_key=day).success
    gone = _pointer(instance, "numbers", "2026-01-02")
    (tmp_path / "lake" / gone["key"]).unlink()
    result = _materialize(
        tmp_path, instance, [window_sum], partition_key="2026-01-03", raise_on_error=False
    )
    assert not result.success
    message = _failure(result)
    assert "numbers partition 2026-01-02" in message
    assert gone["run_id"] in message and "no longer exists" in message


def test_a_range_spanning_an_added_column_loads_with_nulls_before_it(tmp_path, instance):
    assert _materialize(tmp_path, instance, [numbers], partition_key="2026-01-01").success
    assert _materialize(
        tmp_path, instance, [numbers], partition_key="2026-01-02", tags={"extra": "yes"}
    ).success
    assert _materialize(tmp_path, instance, [numbers], partition_key="2026-01-03").success
    result = _materialize(tmp_path, instance, [drift_window], partition_key="2026-01-03")
    assert result.success
    loaded = pl.read_parquet(
        tmp_path / "lake" / _pointer(instance, "drift_window", "2026-01-03")["key"]
    )
    assert loaded["note"].to_list() == [None] * 3 + ["new"] * 3 + [None] * 3


def test_loading_a_partition_never_stored_names_it(tmp_path, instance):
    result = _materialize(
        tmp_path, instance, [window_sum], partition_key="2026-01-03", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert (
        "numbers has no materialization of partition(s) 2026-01-01, 2026-01-02, 2026-01-03"
        in str(failure.step_failure_data.error.cause or failure.step_failure_data.error)
    )


def test_object_keys_cannot_escape_the_storage_root(tmp_path):
    store = LocalObjectStore(tmp_path / "lake")
    with pytest.raises(ValueError, match="escapes the storage root"):
        store.put("../../etc/evil", b"x")


def test_a_stored_partition_loads_outside_a_run(tmp_path, instance):
    """Definitions.load_asset_value (notebooks, analysts) reads without recording provenance."""
    _materialize(tmp_path, instance, [numbers], partition_key="2026-01-02")
    defs = dg.Definitions(
        assets=[numbers], resources={"lake": LocalParquetIOManager(root=str(tmp_path / "lake"))}
    )
    loaded = defs.load_asset_value(numbers.key, partition_key="2026-01-02", instance=instance)
    assert loaded.equals(_frame("2026-01-02", 3))
