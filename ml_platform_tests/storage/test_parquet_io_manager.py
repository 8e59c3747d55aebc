"""The versioned Parquet IO manager: atomic, versioned, range-aware and lazy."""

import json
from datetime import date

import dagster as dg
import polars as pl
import pytest

from ml_platform.storage.object_store import LocalObjectStore
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager

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
    return pl.concat([_frame(k, 3, int(offset)) for k in context.partition_keys])


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


def _materialize(tmp_path, instance, selection, **kwargs):
    return dg.materialize(
        [numbers, window_sum],
        selection=selection,
        instance=instance,
        resources={"lake": LocalParquetIOManager(root=str(tmp_path / "lake"))},
        **kwargs,
    )


def _pointer(tmp_path, asset: str, partition: str) -> dict:
    return json.loads((tmp_path / "lake" / asset / partition / "_CURRENT.json").read_text())


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
        pointer = _pointer(tmp_path, "numbers", day)
        assert pointer["run_id"] == result.run_id
        stored = pl.read_parquet(tmp_path / "lake" / pointer["key"])
        assert stored.equals(_frame(day, 3))
    mats = result.get_asset_materialization_events()
    by_partition = {m.partition: m.materialization.metadata for m in mats}
    assert by_partition["2026-01-02"]["dagster/row_count"].value == 3
    assert (
        by_partition["2026-01-02"]["ml_platform/sha256"].value
        == _pointer(tmp_path, "numbers", "2026-01-02")["sha256"]
    )


def test_window_is_loaded_lazily_and_recorded_exactly(tmp_path, instance):
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        assert _materialize(tmp_path, instance, [numbers], partition_key=day).success
    result = _materialize(tmp_path, instance, [window_sum], partition_key="2026-01-03")
    stored = pl.read_parquet(
        tmp_path / "lake" / _pointer(tmp_path, "window_sum", "2026-01-03")["key"]
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


def test_a_crash_between_object_and_pointer_leaves_the_previous_version_current(
    tmp_path, instance, monkeypatch
):
    assert _materialize(tmp_path, instance, [numbers], partition_key="2026-01-01").success
    before = _pointer(tmp_path, "numbers", "2026-01-01")

    real_put = LocalObjectStore.put

    def crash_on_pointer(self, key, data):
        if key.endswith("_CURRENT.json"):
            raise OSError("disk full while writing the pointer")
        return real_put(self, key, data)

    monkeypatch.setattr(LocalObjectStore, "put", crash_on_pointer)
    result = _materialize(
        tmp_path,
        instance,
        [numbers],
        partition_key="2026-01-01",
        tags={"offset": "100"},
        raise_on_error=False,
    )
    assert not result.success
    assert _pointer(tmp_path, "numbers", "2026-01-01") == before
    assert pl.read_parquet(tmp_path / "lake" / before["key"])["value"].to_list() == [0, 1, 2]
    leftovers = [p.name for p in (tmp_path / "lake" / "numbers" / "2026-01-01").iterdir()]
    assert not [n for n in leftovers if ".tmp-" in n]


def test_loading_a_partition_never_stored_names_it(tmp_path, instance):
    result = _materialize(
        tmp_path, instance, [window_sum], partition_key="2026-01-03", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "numbers partition 2026-01-01 has never been stored" in str(
        failure.step_failure_data.error.cause or failure.step_failure_data.error
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
