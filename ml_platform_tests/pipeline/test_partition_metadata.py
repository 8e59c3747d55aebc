"""A range run writes, on each partition's materialization, figures about that partition only."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.pipeline.helpers import Platform, latest_materialization, run_range

START = date(2026, 1, 1)
DAYS = 12  # 2026-01-01 .. 2026-01-12
CONFIG = GeneratorConfig(rows_per_day=200, files_per_drop=1, bad_row_share=0.04)
RANGE = ["2026-01-09", "2026-01-10", "2026-01-11"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import PlatformHome, local_platform

    home = PlatformHome(tmp_path_factory.mktemp("partition_metadata") / "home")
    with local_platform(home.root) as (defs, instance):
        # Days of different sizes, so a range-wide figure cannot pass for a day's.
        for i in range(DAYS):
            day = date(2026, 1, 1 + i)
            generate_drops(
                home.landing,
                day,
                1,
                GeneratorConfig(**{**vars(CONFIG), "rows_per_day": 150 + 10 * i}),
            )
        manifests = {
            day: json.loads((home.landing / "shipments" / day / "_SUCCESS").read_text())
            for day in RANGE
        }
        assert run_range(defs, instance, "data_pipeline", "2026-01-01", "2026-01-12").success
        p = Platform(defs, instance)
        assert p.train("2026-01-05", min_training_rows=500).success
        assert p.promote().success
        assert p.predict(RANGE[0], RANGE[-1]).success
        yield instance, manifests


def _meta(instance, asset: str, day: str) -> dict:
    return {k: v.value for k, v in latest_materialization(instance, asset, day).metadata.items()}


def _stored(meta: dict) -> pl.DataFrame:
    return pl.read_parquet(Path(urlparse(meta["dagster/uri"]).path))


def test_data_assets_describe_each_day(platform):
    instance, manifests = platform
    for day in RANGE:
        manifest = manifests[day]
        bad = sum(manifest["bad_rows"].values())
        raw = _meta(instance, "raw/shipments", day)
        assert raw["ml_platform/rows"] == raw["dagster/row_count"] == manifest["rows"]
        clean = _meta(instance, "clean/shipments", day)
        assert clean["rows_in"] == manifest["rows"]
        assert clean["rows_rejected"] == bad
        assert clean["rows_out"] == clean["dagster/row_count"] == manifest["rows"] - bad
        rejected = _meta(instance, "clean/shipments_rejected", day)
        assert rejected["dagster/row_count"] == bad
        features = _meta(instance, "features/shipment_features", day)
        assert features["dagster/row_count"] == clean["rows_out"]


def test_quotes_describe_each_day(platform):
    instance, _ = platform
    rows = set()
    for day in RANGE:
        meta = _meta(instance, "predictions/price_quotes", day)
        quotes = _stored(meta)
        assert set(quotes["partition_date"].cast(pl.Utf8)) == {day}
        features = _meta(instance, "features/shipment_features", day)
        assert meta["rows"] == meta["dagster/row_count"] == quotes.height
        assert meta["rows"] == features["dagster/row_count"]
        prices = quotes["predicted_price_eur"]
        assert meta["predicted_price_eur"]["mean"] == pytest.approx(prices.mean())
        assert meta["predicted_price_eur"]["p50"] == pytest.approx(prices.median())
        rows.add(meta["rows"])
    assert len(rows) == len(RANGE)  # days of different sizes


def test_quality_describes_each_day(platform):
    instance, _ = platform
    for day in RANGE:
        meta = _meta(instance, "monitoring/prediction_quality", day)
        quality = _stored(meta)
        assert set(quality["partition_date"].cast(pl.Utf8)) == {day}
        assert meta["dagster/row_count"] == quality.height
        overall = quality.filter(pl.col("scope") == "overall").row(0, named=True)
        quoted = _meta(instance, "predictions/price_quotes", day)["rows"]
        # Every quote counted once for that day: as live performance, or (the range lies in
        # the model's training window) as in-sample and left out of the error figures.
        assert overall["rows"] + overall["in_sample_rows"] == quoted
