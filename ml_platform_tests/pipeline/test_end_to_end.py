"""35 generated days through the real sensor, real runs and real automation ticks."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.pipeline.helpers import (
    AutomationDriver,
    SensorDriver,
    current_frame,
    latest_materialization,
)

START = date(2026, 1, 1)
DAYS = 35
CONFIG = GeneratorConfig(rows_per_day=1_000, files_per_drop=2, bad_row_share=0.02)


@pytest.fixture(scope="module")
def landed_and_processed(tmp_path_factory):
    """Land 35 drops, let the sensor and automation process them; shared by the assertions."""
    from ml_platform_tests.fixtures.dagster import PlatformHome, local_platform

    home = PlatformHome(tmp_path_factory.mktemp("e2e") / "home")
    with local_platform(home.root) as (defs, instance):
        drops = generate_drops(home.landing, START, DAYS, CONFIG)
        automation = AutomationDriver(defs, instance)
        assert automation.tick() == {}  # the daemon's first tick: nothing landed yet

        sensor = SensorDriver(defs, instance)
        requests = sensor.tick()
        runs = [sensor.run(r) for r in requests]
        assert all(r.success for r in runs)

        downstream_tick = automation.tick()
        quiet_tick = automation.tick()
        yield {
            "home": home,
            "instance": instance,
            "drops": drops,
            "requests": requests,
            "ticks": (downstream_tick, quiet_tick),
        }


def _days() -> list[str]:
    return [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


def test_sensor_requested_one_run_per_drop(landed_and_processed):
    requests = landed_and_processed["requests"]
    assert sorted(r.partition_key for r in requests) == _days()


def test_automation_carries_clean_and_features_along_then_rests(landed_and_processed):
    downstream_tick, quiet_tick = landed_and_processed["ticks"]
    assert downstream_tick == {
        "clean/shipments": _days(),
        "clean/shipments_rejected": _days(),
        "features/shipment_features": _days(),
    }
    assert quiet_tick == {}


def test_raw_keeps_every_landed_row_with_its_source(landed_and_processed):
    home, drops = landed_and_processed["home"], landed_and_processed["drops"]
    instance = landed_and_processed["instance"]
    for drop in drops[:3]:
        day = drop.partition.isoformat()
        raw = current_frame(home.storage, landed_and_processed["instance"], "raw/shipments", day)
        manifest = json.loads(drop.marker.read_text())
        assert raw.height == manifest["rows"]
        meta = latest_materialization(instance, "raw/shipments", day).metadata
        sources = meta["ml_platform/source_files"].value
        assert {s["uri"].rsplit("/", 1)[1]: s["sha256"] for s in sources} == {
            f["name"]: f["sha256"] for f in manifest["files"]
        }
        for path in drop.files:
            assert hashlib.sha256(path.read_bytes()).hexdigest() in set(raw["_source_sha256"])
        assert raw["_source_row"].min() == 1


def test_clean_rejects_exactly_the_bad_rows(landed_and_processed):
    home, drops = landed_and_processed["home"], landed_and_processed["drops"]
    instance = landed_and_processed["instance"]
    for drop in drops:
        day = drop.partition.isoformat()
        bad = json.loads(drop.marker.read_text())["bad_rows"]
        clean = current_frame(
            home.storage, landed_and_processed["instance"], "clean/shipments", day
        )
        rejected = current_frame(
            home.storage, landed_and_processed["instance"], "clean/shipments_rejected", day
        )
        assert rejected.height == sum(bad.values())
        assert clean.height == drop.rows - sum(bad.values())
        assert clean["shipment_id"].is_unique().all()
        reasons = rejected["reason"]
        assert reasons.str.contains("duplicate shipment_id").sum() == bad["duplicate_id"]
        assert reasons.str.contains("weight_kg: greater_than").sum() == bad["negative_weight"]
        assert reasons.str.contains("transport_mode: isin").sum() == bad["unknown_mode"]
        assert reasons.str.contains("not_nullable").sum() == bad["null"]
        meta = latest_materialization(instance, "clean/shipments", day).metadata
        assert meta["rows_in"].value == drop.rows
        assert meta["rows_out"].value == clean.height
        assert meta["rows_rejected"].value == rejected.height


def test_features_aggregate_exactly_the_28_days_before(landed_and_processed):
    home = landed_and_processed["home"]
    day = START + timedelta(days=DAYS - 1)
    clean = pl.concat(
        current_frame(
            home.storage, landed_and_processed["instance"], "clean/shipments", d.isoformat()
        )
        for d in (day - timedelta(days=i) for i in range(29))
        if d >= START
    )
    features = current_frame(
        home.storage,
        landed_and_processed["instance"],
        "features/shipment_features",
        day.isoformat(),
    )
    assert features.height == clean.filter(pl.col("partition_date") == day).height
    history = clean.filter(pl.col("partition_date") < day)
    expected = history.group_by("lane").agg(n=pl.len(), mean_price=pl.col("price_eur").mean())
    got = features.select("lane", "lane_shipments_28d", "lane_mean_price_28d").unique()
    joined = got.join(expected, on="lane", how="left").with_columns(pl.col("n").fill_null(0))
    assert (joined["lane_shipments_28d"] == joined["n"]).all()
    with_history = joined.filter(pl.col("n") > 0)
    assert ((with_history["lane_mean_price_28d"] - with_history["mean_price"]).abs() < 1e-6).all()
    assert joined.filter(pl.col("n") == 0)["lane_mean_price_28d"].is_null().all()


def test_features_record_exactly_which_clean_partitions_and_versions_they_read(
    landed_and_processed,
):
    import dagster as dg

    instance = landed_and_processed["instance"]
    day = START + timedelta(days=30)
    meta = latest_materialization(instance, "features/shipment_features", day.isoformat()).metadata
    inputs = meta["ml_platform/inputs"].value
    assert [i["asset"] for i in inputs] == ["clean/shipments"]
    read = inputs[0]["partitions"]
    assert [r["partition"] for r in read] == [
        (day - timedelta(days=i)).isoformat() for i in range(28, -1, -1)
    ]
    for r in read:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["clean", "shipments"]), asset_partitions=[r["partition"]]
            ),
            limit=1,
        ).records[0]
        assert r["storage_id"] == record.storage_id
        assert r["run_id"] == record.run_id
        assert r["data_version"] == record.asset_materialization.tags["dagster/data_version"]
        assert f"/{record.run_id}-" in r["uri"] and r["uri"].endswith(".parquet")

    first = latest_materialization(instance, "features/shipment_features", START.isoformat())
    assert [
        r["partition"] for r in first.metadata["ml_platform/inputs"].value[0]["partitions"]
    ] == [START.isoformat()]


def test_checks_passed_on_every_run(landed_and_processed):
    import dagster as dg

    instance = landed_and_processed["instance"]
    for asset in (["clean", "shipments"], ["features", "shipment_features"]):
        for check in ("schema_contract", "row_count_sanity"):
            key = dg.AssetCheckKey(dg.AssetKey(asset), check)
            records = instance.event_log_storage.get_asset_check_execution_history(key, limit=500)
            assert {r.status.value for r in records} == {"SUCCEEDED"}, key
            assert sorted(r.partition for r in records) == _days(), key
