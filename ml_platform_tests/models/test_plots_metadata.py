"""Per-partition figures the Dagster UI plots: numbers as float/int metadata, one event per day.

One range run quotes and judges four days (two inside the model's training window, two
after it); each day's materialization must carry that day's own figures, recomputed here
from the stored quotes and the prices paid, and identifiers must be text.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_platform.assets.predictions import WORST_LANE_MIN_ROWS, WORST_LANES
from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.pipeline.helpers import (
    DATA_ASSETS,
    Platform,
    current_frame,
    latest_materialization,
    run_failure_message,
)

START = date(2026, 1, 1)
DAYS = 35  # through 2026-02-04
WEEK = "2026-01-26"  # features 2026-01-05..2026-02-01
IN_SAMPLE = ["2026-01-31", "2026-02-01"]
UNSEEN = ["2026-02-02", "2026-02-03"]
SMALL = {"min_training_rows": 1_000, "max_iter": 50}


@pytest.fixture(scope="module")
def plots(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("plots") / "home"
    with local_platform(home) as (defs, instance):
        generate_drops(home / "landing", START, DAYS, GeneratorConfig(rows_per_day=600))
        p = Platform(defs, instance)
        last = (START + timedelta(days=DAYS - 1)).isoformat()
        data = p.run(DATA_ASSETS, first=START.isoformat(), last=last)
        assert data.success, run_failure_message(data)
        trained = p.train(WEEK, **SMALL)
        assert trained.success, run_failure_message(trained)
        assert p.promote(WEEK, reason="plots").success
        quoted = p.predict(IN_SAMPLE[0], UNSEEN[-1])  # one run over the four days
        assert quoted.success, run_failure_message(quoted)
        yield {"home": home, "instance": instance}


def _meta(plots, asset: str, day: str) -> dict:
    return latest_materialization(plots["instance"], asset, day).metadata


def _frame(plots, asset: str, day: str) -> pl.DataFrame:
    return current_frame(plots["home"] / "storage", plots["instance"], asset, day)


def _float(meta: dict, key: str) -> float:
    assert isinstance(meta[key], dg.FloatMetadataValue), (key, meta[key])
    return meta[key].value


def _int(meta: dict, key: str) -> int:
    assert isinstance(meta[key], dg.IntMetadataValue), (key, meta[key])
    return meta[key].value


def _text(meta: dict, key: str) -> str:
    assert isinstance(meta[key], dg.TextMetadataValue), (key, meta[key])
    return meta[key].value


def _joined(plots, day: str) -> pl.DataFrame:
    quotes = _frame(plots, "predictions/price_quotes", day)
    actual = _frame(plots, "clean/shipments", day).select(
        "shipment_id", pl.col("price_eur").alias("actual")
    )
    return quotes.join(actual, on="shipment_id")


def test_each_quote_day_records_its_count_and_percentiles_as_numbers(plots):
    medians = set()
    for day in IN_SAMPLE + UNSEEN:
        meta = _meta(plots, "predictions/price_quotes", day)
        prices = _frame(plots, "predictions/price_quotes", day)["predicted_price_eur"]
        assert _int(meta, "rows") == prices.len()
        assert _float(meta, "predicted_price_p10") == pytest.approx(prices.quantile(0.1))
        assert _float(meta, "predicted_price_p50") == pytest.approx(prices.median())
        assert _float(meta, "predicted_price_p90") == pytest.approx(prices.quantile(0.9))
        # The existing JSON entry other code reads stays.
        assert meta["predicted_price_eur"].value["p50"] == pytest.approx(prices.median())
        assert _text(meta, "model_run_id") and _text(meta, "model_week") == WEEK
        medians.add(meta["predicted_price_p50"].value)
    assert len(medians) == 4  # each day its own figures, not the range's


def test_each_quality_day_records_its_errors_as_numbers(plots):
    for day in UNSEEN:
        meta = _meta(plots, "monitoring/prediction_quality", day)
        joined = _joined(plots, day)
        error = joined["predicted_price_eur"].to_numpy() - joined["actual"].to_numpy()
        relative = np.abs(error) / joined["actual"].to_numpy()
        assert _int(meta, "rows") == joined.height
        assert _int(meta, "in_sample_rows") == 0
        assert _float(meta, "mae") == pytest.approx(np.mean(np.abs(error)))
        assert _float(meta, "mape") == pytest.approx(np.mean(relative))
        assert _float(meta, "bias") == pytest.approx(np.mean(error))
        assert _float(meta, "share_over_20pct") == pytest.approx(np.mean(relative > 0.2))
        assert _text(meta, "model_week") == WEEK
    days = [_meta(plots, "monitoring/prediction_quality", d)["mae"].value for d in UNSEEN]
    assert days[0] != days[1]


def test_in_sample_quality_days_plot_nothing(plots):
    for day in IN_SAMPLE:
        meta = _meta(plots, "monitoring/prediction_quality", day)
        assert _int(meta, "rows") == 0
        assert _int(meta, "in_sample_rows") == _joined(plots, day).height > 0
        assert not {"mae", "mape", "bias", "share_over_20pct", "worst_lanes"} & set(meta)


def test_the_worst_lanes_of_a_day_are_a_table(plots):
    day = UNSEEN[0]
    table = _meta(plots, "monitoring/prediction_quality", day)["worst_lanes"]
    assert isinstance(table, dg.TableMetadataValue)
    columns = {c.name: c.type for c in table.schema.columns}
    assert columns == {
        "lane": "string",
        "rows": "int",
        "mape": "float",
        "mae": "float",
        "bias": "float",
        "share_over_20pct": "float",
    }
    joined = _joined(plots, day).with_columns(
        relative=(pl.col("predicted_price_eur") - pl.col("actual")).abs() / pl.col("actual")
    )
    expected = (
        joined.group_by("lane")
        .agg(rows=pl.len(), mape=pl.col("relative").mean())
        .filter(pl.col("rows") >= WORST_LANE_MIN_ROWS)
        .sort(["mape", "lane"], descending=[True, False])
        .head(WORST_LANES)
    )
    assert expected.height > 0
    records = [r.data for r in table.records]
    assert [r["lane"] for r in records] == expected["lane"].to_list()
    assert [r["rows"] for r in records] == expected["rows"].to_list()
    assert [r["mape"] for r in records] == pytest.approx(expected["mape"].to_list(), abs=1e-5)
    assert all(isinstance(r["lane"], str) and isinstance(r["rows"], int) for r in records)


def test_each_model_week_records_its_holdout_and_baseline_errors_as_numbers(plots):
    meta = _meta(plots, "models/price_model", WEEK)
    for key in ("holdout_mae", "holdout_mape", "baseline_mae", "baseline_mape"):
        assert _float(meta, key) > 0
    assert _int(meta, "rows_train") > 0
    champion = (
        plots["instance"]
        .fetch_materializations(dg.AssetKey(["models", "champion"]), limit=1)
        .records[0]
        .asset_materialization.metadata
    )
    # Identifiers are text, never numbers the UI would plot.
    assert isinstance(champion["model_storage_id"], dg.TextMetadataValue)
