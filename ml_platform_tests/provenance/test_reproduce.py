"""`reproduce`: re-executions pinned to recorded versions, on real runs of a real instance.

One history, built step by step: data for six weeks, a model for week W1, quotes; then the
drop of RELANDED is re-landed, the data and features rebuilt, W1 retrained and promoted and a
day re-quoted, so every first version is no longer current. The first quote day, feature day
and model week must still reproduce identically, pinned to the old versions, without touching
live state. Then retention removes the old versions, and reproducing them must say which one
is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform.provenance.reproduce import reproduce
from ml_platform.provenance.reproduce_text import as_text
from ml_platform.storage.object_store import LocalObjectStore
from ml_platform.storage.retention import apply_retention
from ml_platform_tests.pipeline.helpers import Platform, run_failure_message

START = date(2026, 1, 1)
DAYS = 42  # through 2026-02-11
RELANDED = "2026-02-05"
FEATURE_DAY = "2026-02-06"
QUOTE_DAY = "2026-02-10"
W1 = "2026-02-02"
CONFIG = GeneratorConfig(rows_per_day=400, bad_row_share=0.0)
DATA = ["raw/shipments", "clean/shipments", "clean/shipments_rejected"]
SMALL = {"min_training_rows": 1_000, "max_iter": 40}

RAW = dg.AssetKey(["raw", "shipments"])
CLEAN = dg.AssetKey(["clean", "shipments"])
FEATURES = dg.AssetKey(["features", "shipment_features"])
MODEL = dg.AssetKey(["models", "price_model"])
QUOTES = dg.AssetKey(["predictions", "price_quotes"])


def ok(result):
    assert result.success, run_failure_message(result)


def latest_id(instance, key: dg.AssetKey, partition: str) -> int:
    flt = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition])
    return instance.fetch_materializations(flt, limit=1).records[0].storage_id


def live_state(instance, home: Path) -> dict:
    """Everything a reproduction must leave alone: events, runs, files in the lake and zones."""
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    return {
        "max_event_id": instance.event_log_storage.get_maximum_record_id(),
        "runs": len(instance.get_run_records()),
        "files": files,
    }


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("reproduce") / "home"
    snap: dict = {}
    with local_platform(home) as (defs, instance):
        generate_drops(home / "landing", START, DAYS, CONFIG)
        p = Platform(defs, instance)
        ok(p.run([*DATA, "features/shipment_features"], first=START.isoformat(), last="2026-02-11"))
        ok(p.train(W1, **SMALL))
        ok(p.promote())
        ok(p.predict("2026-02-09", QUOTE_DAY))
        first = {
            "raw": latest_id(instance, RAW, RELANDED),
            "clean": latest_id(instance, CLEAN, RELANDED),
            "features": latest_id(instance, FEATURES, FEATURE_DAY),
            "features_relanded": latest_id(instance, FEATURES, RELANDED),
            "model": latest_id(instance, MODEL, W1),
            "quotes": latest_id(instance, QUOTES, QUOTE_DAY),
        }
        snap["first"] = first

        # A re-drop changes RELANDED; everything downstream is rebuilt, W1 retrained.
        generate_drops(
            home / "landing",
            date.fromisoformat(RELANDED),
            1,
            GeneratorConfig(rows_per_day=400, seed=99, bad_row_share=0.0),
        )
        ok(p.run(DATA, partition=RELANDED))
        ok(p.run(["features/shipment_features"], first=RELANDED, last="2026-02-11"))
        ok(p.train(W1, **SMALL))
        ok(p.promote(W1, reason="retrained after the re-drop"))
        ok(p.predict(QUOTE_DAY, QUOTE_DAY))
        for name, key, part in (
            ("features", FEATURES, FEATURE_DAY),
            ("model", MODEL, W1),
            ("quotes", QUOTES, QUOTE_DAY),
        ):
            assert latest_id(instance, key, part) != first[name]

        before = live_state(instance, home)
        snap["old"] = {
            name: reproduce(defs, instance, key, storage_id=first[name])
            for name, key in (("features", FEATURES), ("model", MODEL), ("quotes", QUOTES))
        }
        snap["old_raw"] = reproduce(defs, instance, RAW, storage_id=first["raw"])
        snap["current_quotes"] = reproduce(defs, instance, QUOTES, QUOTE_DAY)
        snap["live_untouched"] = (before, live_state(instance, home))

        # Retention: nothing protected, every version that is not current goes.
        report = apply_retention(
            LocalObjectStore(home / "storage"), instance, timedelta(0), protected=[]
        )
        assert report.removed
        snap["after_retention"] = reproduce(defs, instance, FEATURES, storage_id=first["features"])
        yield {"defs": defs, "instance": instance, "home": home, "snap": snap}


def test_old_versions_reproduce_identically_pinned_to_what_they_read(history):
    snap = history["snap"]
    first = snap["first"]
    for name in ("features", "model", "quotes"):
        result = snap["old"][name]
        assert result.status == "identical", as_text(result)
        assert result.storage_id == first[name]
        assert result.code_version == {"recorded": "1", "current": "1"}
        # Some of what it read is no longer current: the re-run used the recorded versions.
        assert any(not i["current"] for i in result.inputs), as_text(result)
    features = snap["old"]["features"]
    pinned = {(i["asset"], i["partition"]): i["storage_id"] for i in features.inputs}
    assert pinned[("clean/shipments", RELANDED)] == first["clean"]
    assert features.reproduced["content_hash"] == features.recorded["content_hash"]
    model = snap["old"]["model"]
    assert {(i["asset"], i["partition"]) for i in model.inputs} >= {
        ("features/shipment_features", RELANDED)
    }
    assert {i["storage_id"] for i in model.inputs} >= {first["features_relanded"]}
    quotes = snap["old"]["quotes"]
    assert {i["asset"] for i in quotes.inputs} == {"features/shipment_features", "models/champion"}


def test_a_model_week_reproduces_with_its_recorded_metrics(history):
    model = history["snap"]["old"]["model"]
    metrics = model.model["metrics"]
    assert metrics["holdout_mape"]["recorded"] == metrics["holdout_mape"]["reproduced"]
    assert model.model["differing_metrics"] == []
    # skops artifacts are never byte-stable; the report says so and compares predictions.
    assert "bitwise identity is impossible" in model.model["artifact"]
    assert "bitwise equal" in model.model["artifact"]
    assert model.model["predictions_compared"] > 0
    assert model.model["library_versions"]["recorded"] == model.model["library_versions"]["current"]


def test_current_versions_reproduce_too(history):
    result = history["snap"]["current_quotes"]
    assert result.identical, as_text(result)
    assert all(i["current"] for i in result.inputs)


def test_reproducing_touches_no_live_state(history):
    before, after = history["snap"]["live_untouched"]
    assert before == after


def test_a_redropped_source_file_makes_raw_impossible_naming_the_file(history):
    result = history["snap"]["old_raw"]
    assert result.status == "impossible"
    assert "landed file" in result.reason and RELANDED in result.reason
    assert "changed since it was ingested" in result.reason
    assert result.likely_causes == ["the landed source file was re-dropped or removed"]


def test_after_retention_the_missing_version_is_named(history):
    result = history["snap"]["after_retention"]
    first = history["snap"]["first"]
    assert result.status == "impossible", as_text(result)
    assert f"clean/shipments {RELANDED}" in result.reason
    assert f"storage id {first['clean']}" in result.reason
    assert "no longer exists" in result.reason
    assert result.likely_causes == ["a missing stored version (retention)"]


def test_a_changed_code_version_is_named_as_the_likely_cause(history, monkeypatch):
    import ml_platform.assets.features as features_module

    real = features_module.build_features

    def changed(clean, days, window):  # the "new code": a different lane mean on a few rows
        df = real(clean, days, window)
        first_rows = pl.int_range(pl.len()) < 3
        return df.with_columns(
            lane_mean_price_28d=pl.when(first_rows)
            .then(pl.col("lane_mean_price_28d") * 1.5)
            .otherwise(pl.col("lane_mean_price_28d"))
        )

    monkeypatch.setattr(features_module, "build_features", changed)
    defs = history["defs"]
    bumped = dg.Definitions(
        assets=dg.map_asset_specs(
            lambda s: s.replace_attributes(code_version="2") if s.key == FEATURES else s,
            list(defs.assets),
        ),
        resources=defs.resources,
    )
    result = reproduce(bumped, history["instance"], FEATURES, FEATURE_DAY)
    assert result.status == "different", as_text(result)
    assert result.code_version == {"recorded": "1", "current": "2"}
    assert result.likely_causes[0].startswith("changed code version")
    changed_rows = result.diff["changed"]
    assert changed_rows["count"] == 3
    assert changed_rows["columns"] == {"lane_mean_price_28d": 3}
    assert set(changed_rows["first"][0]["changed"]) == {"lane_mean_price_28d"}
    assert result.diff["key"] == "shipment_id"
    text = as_text(result)
    assert "3 row(s) changed by shipment_id" in text and "likely cause: changed code" in text


@pytest.mark.timeout(300)
def test_cli(history):
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(history["home"]),
        "DAGSTER_HOME": history["instance"].root_directory,
    }
    cli = Path(sys.executable).parent / "ml-platform"
    ok_run = subprocess.run(
        [cli, "reproduce", "features/shipment_features", "--partition", FEATURE_DAY,
         "--format", "json"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert ok_run.returncode == 0, ok_run.stderr
    assert json.loads(ok_run.stdout)["status"] == "identical"
    gone = subprocess.run(
        [cli, "reproduce", "features/shipment_features",
         "--storage-id", str(history["snap"]["first"]["features"])],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert gone.returncode == 1
    assert "IMPOSSIBLE" in gone.stdout and "no longer exists" in gone.stdout
    assert "Traceback" not in gone.stderr
    (line,) = gone.stderr.strip().splitlines()[-1:]
    assert line.startswith("reproduce: impossible:")
    # A scratch path that is a file is the user's mistake, not a different result of the code.
    a_file = Path(history["home"]) / "not-a-folder"
    a_file.write_text("x")
    wrong = subprocess.run(
        [cli, "reproduce", "features/shipment_features", "--partition", FEATURE_DAY,
         "--scratch", str(a_file)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr == f"reproduce: --scratch {a_file} exists and is not a folder\n"


def test_an_unusable_scratch_folder_is_impossible_not_different(history, tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    result = reproduce(
        history["defs"], history["instance"], FEATURES, FEATURE_DAY, scratch_dir=str(a_file)
    )
    assert result.status == "impossible" and result.likely_causes == []
    assert result.reason == f"the scratch folder {a_file} exists and is not a folder"


@pytest.mark.timeout(300)
def test_postgres_warehouse_versions_are_pinned_or_named_replaced(pg_env, platform_home, instance):
    from ml_platform.definitions import build_definitions
    from ml_platform.storage.postgres_io_manager import PostgresIOManager

    generate_drops(platform_home.landing, START, 10, GeneratorConfig(rows_per_day=50))
    base = build_definitions()
    defs = dg.Definitions(
        assets=base.assets,
        resources={**base.resources, "warehouse_io_manager": PostgresIOManager()},
    )
    p = Platform(defs, instance)
    ok(p.run([*DATA, "features/shipment_features"], first="2026-01-01", last="2026-01-10"))
    features = latest_id(instance, FEATURES, "2026-01-10")
    for key, day in ((CLEAN, "2026-01-04"), (FEATURES, "2026-01-10")):
        result = reproduce(defs, instance, key, day)
        assert result.identical, as_text(result)
    # The rows of one clean day are replaced: the old features' input is gone from the table.
    generate_drops(
        platform_home.landing, date(2026, 1, 4), 1, GeneratorConfig(rows_per_day=50, seed=7)
    )
    ok(p.run(DATA, partition="2026-01-04"))
    result = reproduce(defs, instance, FEATURES, storage_id=features)
    assert result.status == "impossible", as_text(result)
    assert "clean/shipments 2026-01-04" in result.reason and "replaced" in result.reason
