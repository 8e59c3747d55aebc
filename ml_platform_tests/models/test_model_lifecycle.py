"""Train weekly models, auto-promote, predict, detect a demand shock, roll back: end to end.

The generator shocks prices on GB lanes by +35 % from SHOCK (a Monday). Weekly models are
trained on the four weeks of features before and including their week; predictions for a day
use the champion live at the time.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform.demo.prices import expected_price
from ml_platform.provenance.champion import champion_history, current_champion
from ml_platform_tests.pipeline.helpers import (
    Platform,
    current_frame,
    current_version,
    latest_materialization,
    run_failure_message,
)

START = date(2026, 1, 1)
SHOCK = date(2026, 2, 23)
DAYS = 63  # through 2026-03-04
CONFIG = GeneratorConfig(rows_per_day=1_500, shock_date=SHOCK, bad_row_share=0.0)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("models") / "home"
    last_day = (START + timedelta(days=DAYS - 1)).isoformat()
    with local_platform(home) as (defs, instance):
        generate_drops(home / "landing", START, DAYS, CONFIG)
        p = Platform(defs, instance)
        steps = {}
        data = p.run(
            [
                "raw/shipments",
                "clean/shipments",
                "clean/shipments_rejected",
                "features/shipment_features",
            ],
            first=START.isoformat(),
            last=last_day,
        )
        assert data.success, run_failure_message(data)
        steps["no_champion_predict"] = p.predict("2026-02-16", "2026-02-16")
        for week in ("2026-02-09", "2026-02-16"):
            assert p.train(week).success
            assert p.promote().success  # automatic: the newest model that passed its checks
            if week == "2026-02-09":
                assert p.predict("2026-02-16", "2026-02-22").success
        assert p.predict("2026-02-23", "2026-03-01").success  # the shock week, old champion
        assert p.train("2026-02-23").success
        assert p.promote().success
        steps["rollback"] = p.promote(
            "2026-02-16", reason="shock model not validated by pricing team"
        )
        yield {"p": p, "home": home, "instance": instance, "steps": steps, "defs": defs}


def test_predictions_before_any_champion_fail_clearly(lifecycle):
    result = lifecycle["steps"]["no_champion_predict"]
    assert not result.success
    assert "no model has been promoted yet" in run_failure_message(result)


def test_champion_history_reads_every_promotion_page_by_page(lifecycle, monkeypatch):
    from ml_platform.provenance import champion

    whole = champion_history(lifecycle["instance"])
    monkeypatch.setattr(champion, "HISTORY_PAGE", 3)  # four promotions: two pages
    assert champion_history(lifecycle["instance"]) == whole
    assert whole[-1] == current_champion(lifecycle["instance"])  # the live model is the last


def test_champion_history_is_the_audit_trail(lifecycle):
    assert lifecycle["steps"]["rollback"].success
    history = champion_history(lifecycle["instance"])
    assert [(h["model_week"], h["promoted_by"]) for h in history] == [
        ("2026-02-09", "automation"),
        ("2026-02-16", "automation"),
        ("2026-02-23", "automation"),
        ("2026-02-16", "manual"),
    ]
    assert history[-1]["reason"] == "shock model not validated by pricing team"
    assert history[-1]["previous_week"] == "2026-02-23"
    model = latest_materialization(lifecycle["instance"], "models/price_model", "2026-02-16")
    assert history[-1]["model_storage_id"] == history[1]["model_storage_id"]
    assert history[-1]["model_sha256"] == model.metadata["ml_platform/sha256"].value
    stored = current_frame(
        lifecycle["home"] / "storage", lifecycle["instance"], "models/champion", None
    )
    assert stored["model_week"].to_list() == [
        "2026-02-09",
        "2026-02-16",
        "2026-02-23",
        "2026-02-16",
    ]


def test_models_record_training_window_metrics_and_hyperparameters(lifecycle):
    meta = latest_materialization(
        lifecycle["instance"], "models/price_model", "2026-02-16"
    ).metadata
    assert meta["training_window"].value == {"first_day": "2026-01-26", "last_day": "2026-02-22"}
    inputs = meta["ml_platform/inputs"].value[0]
    assert inputs["asset"] == "features/shipment_features"
    assert len(inputs["partitions"]) == 28
    assert meta["holdout_mape"].value < meta["baseline_mape"].value
    assert meta["hyperparameters"].value["learning_rate"] == 0.1
    assert meta["dagster/uri"].value.endswith(".skops")


def test_quotes_carry_the_model_and_champion_that_made_them(lifecycle):
    instance, home = lifecycle["instance"], lifecycle["home"]
    history = champion_history(instance)
    quotes = current_frame(
        home / "storage", lifecycle["instance"], "predictions/price_quotes", "2026-02-18"
    )
    assert set(quotes["model_week"]) == {"2026-02-09"}
    assert set(quotes["champion_storage_id"]) == {history[0]["champion_storage_id"]}
    shocked = current_frame(
        home / "storage", lifecycle["instance"], "predictions/price_quotes", "2026-02-25"
    )
    assert set(shocked["model_week"]) == {"2026-02-16"}
    assert set(shocked["champion_storage_id"]) == {history[1]["champion_storage_id"]}


def test_model_predicts_the_generators_prices_within_15_percent_before_the_shock(lifecycle):
    home = lifecycle["home"]
    days = [(date(2026, 2, 16) + timedelta(days=i)).isoformat() for i in range(7)]
    quotes = pl.concat(
        current_frame(home / "storage", lifecycle["instance"], "predictions/price_quotes", d)
        for d in days
    )
    clean = pl.concat(
        current_frame(home / "storage", lifecycle["instance"], "clean/shipments", d) for d in days
    )
    rows = quotes.join(clean, on="shipment_id")
    truth = expected_price(rows, shock_date=SHOCK).to_numpy()
    mape = float(np.mean(np.abs(rows["predicted_price_eur"].to_numpy() - truth) / truth))
    assert mape < 0.15


def test_monitoring_flags_the_demand_shock_and_not_the_calm_week(lifecycle):
    instance = lifecycle["instance"]
    key = dg.AssetCheckKey(dg.AssetKey(["monitoring", "prediction_quality"]), "error_within_bounds")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
    status = {}
    for h in history:  # newest first: keep each day's latest evaluation
        status.setdefault(h.partition, h.status.value)
    calm = [(date(2026, 2, 16) + timedelta(days=i)).isoformat() for i in range(7)]
    shock = [(SHOCK + timedelta(days=i)).isoformat() for i in range(7)]
    assert {status[d] for d in calm} == {"SUCCEEDED"}
    assert {status[d] for d in shock} == {"FAILED"}
    quality = current_frame(
        lifecycle["home"] / "storage",
        lifecycle["instance"],
        "monitoring/prediction_quality",
        "2026-02-25",
    )
    overall = quality.filter(pl.col("scope") == "overall").row(0, named=True)
    assert overall["share_over_20pct"] > 0.10
    gb = quality.filter(pl.col("scope") == "lane", pl.col("lane").str.contains("London|Manchester"))
    assert gb["mape"].mean() > 0.2


def test_promoting_a_week_never_trained_fails_and_keeps_the_champion(lifecycle):
    p = lifecycle["p"]
    before = current_champion(p.instance)
    result = p.promote("2026-01-05", reason="typo")
    assert not result.success
    assert "week 2026-01-05 has no materialized price_model" in run_failure_message(result)
    assert current_champion(p.instance) == before


def test_a_model_that_fails_its_checks_cannot_be_promoted(lifecycle):
    p = lifecycle["p"]
    before = current_champion(p.instance)
    # One boosting iteration on a tiny learning rate cannot beat the naive baseline.
    trained = p.train("2026-02-02", max_iter=1, learning_rate=0.001)
    assert not trained.success
    result = p.promote("2026-02-02", reason="try it")
    assert not result.success
    assert "cannot go live: check beats_naive_baseline failed" in run_failure_message(result)
    assert current_champion(p.instance) == before


def test_a_tampered_artifact_is_refused_and_the_champion_stays(lifecycle):
    p, home = lifecycle["p"], lifecycle["home"]
    # Week 2026-02-09's model passed its checks (it was live once); its bytes are changed.
    pointer = current_version(p.instance, "models/price_model", "2026-02-09")
    artifact = home / "storage" / pointer["key"]
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    before = current_champion(p.instance)
    result = p.promote("2026-02-09", reason="roll back further")
    assert not result.success
    assert "sha256 mismatch" in run_failure_message(result)
    assert current_champion(p.instance) == before


def test_too_few_training_rows_fail_clearly(lifecycle):
    result = lifecycle["p"].train("2026-01-05", min_training_rows=1_000_000)
    assert not result.success
    assert "cannot train week 2026-01-05" in run_failure_message(result)
    assert "minimum 1000000" in run_failure_message(result)


def test_quotes_from_a_model_no_longer_live_show_as_stale_in_dagster(lifecycle):
    """Dagster's own stale status (the UI's): the champion's data version is its model's sha256."""
    from ml_platform_tests.dagster_internals import (
        CachingStaleStatusResolver,
        LoadingContextForTest,
        StaleStatus,
    )

    instance, defs = lifecycle["instance"], lifecycle["defs"]
    resolver = CachingStaleStatusResolver(
        instance, defs.resolve_asset_graph(), LoadingContextForTest(instance)
    )
    key = dg.AssetKey(["predictions", "price_quotes"])
    # Scored by week 2026-02-09's model; week 2026-02-16's is live again after the rollback.
    assert resolver.get_status(key, "2026-02-18") == StaleStatus.STALE
    cause = resolver.get_stale_causes(key, "2026-02-18")[0]
    assert cause.dependency.asset_key == dg.AssetKey(["models", "champion"])
    # Scored by week 2026-02-16's model, which the rollback made live again: not stale.
    assert resolver.get_status(key, "2026-02-25") == StaleStatus.FRESH
