"""Models people can trust: exact rollback, exact check results, serialized promotions, one
source of truth for "live", retention that keeps rollback targets, honest evaluation.

One platform, one module: the tests run in file order and build on each other's models
(weeks 2026-01-26 and 2026-02-02 of 49 small days). Every test reproduces one defect of
issue 12 with real runs on a real instance.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform.provenance.champion import (
    CHAMPION_KEY,
    PRICE_MODEL_KEY,
    champion_history,
    current_champion,
)
from ml_platform_tests.pipeline.helpers import (
    DATA_ASSETS,
    Platform,
    current_frame,
    run_failure_message,
)

START = date(2026, 1, 1)
DAYS = 49  # through 2026-02-18
ROWS = 800
SMALL = {"min_training_rows": 1_000, "max_iter": 100}
W_OLD = "2026-01-26"  # features 2026-01-05..2026-02-01, trained through 2026-01-29
W_NEW = "2026-02-02"  # features 2026-01-12..2026-02-08, trained through 2026-02-05


def _model(instance: dg.DagsterInstance, week: str) -> dict:
    """The exact version of a week's latest model: materialization, run, artifact sha256."""
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PRICE_MODEL_KEY, asset_partitions=[week]), limit=1
    ).records
    meta = record.asset_materialization.metadata
    return {
        "storage_id": record.storage_id,
        "run_id": record.run_id,
        "sha256": meta["ml_platform/sha256"].value,
    }


def _live(instance: dg.DagsterInstance) -> dict:
    live = current_champion(instance)
    return {
        "storage_id": live["model_storage_id"],
        "run_id": live["model_run_id"],
        "sha256": live["model_sha256"],
    }


def _check_metadata(result: dg.ExecuteInProcessResult, check: str) -> dict:
    (evaluation,) = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == check
    ]
    return {k: v.value for k, v in evaluation.metadata.items()}


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("trust") / "home"
    with local_platform(home) as (defs, instance):
        generate_drops(home / "landing", START, DAYS, GeneratorConfig(rows_per_day=ROWS))
        p = Platform(defs, instance)
        last = (START + timedelta(days=DAYS - 1)).isoformat()
        data = p.run(DATA_ASSETS, first=START.isoformat(), last=last)
        assert data.success, run_failure_message(data)
        first = p.train(W_NEW, **SMALL)
        assert first.success, run_failure_message(first)
        assert p.promote(W_NEW, reason="first model").success
        # An older week, trained while the newer week's model is live: the champion gate.
        older = p.train(W_OLD, **SMALL)
        yield {
            "p": p,
            "home": home,
            "first": _model(instance, W_NEW),
            "older": older,
        }


@pytest.fixture
def rollback(trust, monkeypatch, capsys):
    """`ml-platform rollback` as the CLI runs it, its job executed on the test instance."""
    from ml_platform.cli import models as cli_models

    p = trust["p"]
    monkeypatch.setenv("DAGSTER_HOME", str(p.instance.root_directory))

    def run_job(job_name, *, partition=None, first=None, last=None, config=None):
        assert job_name == "promote_champion"
        result = p.run(["models/champion"], config=config)
        return 0 if result.success else 1

    monkeypatch.setattr(cli_models, "run_job", run_job)

    def roll_back(reason: str) -> tuple[int, str]:
        code = cli_models.run_rollback(reason)
        out = capsys.readouterr()
        return code, out.out + out.err

    return roll_back


def test_the_champion_gate_compares_on_rows_neither_model_trained_on(trust):
    """An older week is compared with the live (newer) model on days neither trained on."""
    older = trust["older"]
    assert older.success, run_failure_message(older)  # default tolerance, no 10.0 needed
    meta = _check_metadata(older, "not_worse_than_champion")
    compared = meta["compared_on"]
    # The live model trained through 2026-02-05, the challenger through 2026-01-29: both
    # held out 2026-02-06..2026-02-08 from training (the live model's holdout days).
    assert (compared["first_day"], compared["last_day"]) == ("2026-02-06", "2026-02-08")
    assert compared["days"] == 3
    features = (
        trust["p"]
        .instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["features", "shipment_features"]),
                asset_partitions=["2026-02-06", "2026-02-07", "2026-02-08"],
            ),
            limit=10,
        )
        .records
    )
    assert compared["rows"] == sum(
        r.asset_materialization.metadata["dagster/row_count"].value for r in features
    )
    assert meta["champion"]["model_storage_id"] == trust["first"]["storage_id"]
    assert meta["challenger_mape"] <= meta["limit"]


def test_rollback_restores_exactly_the_model_that_was_live(trust, rollback):
    p, first = trust["p"], trust["first"]
    # Re-promoting the live model changes nothing: a rollback says so and changes nothing.
    assert p.promote(W_NEW, reason="confirmed by pricing").success
    code, out = rollback("nothing to undo")
    assert code == 1
    assert "nothing to roll back to" in out
    assert _live(p.instance) == first

    # Retrain the live week (run B), which fails its checks, then promote another week.
    failed = p.train(W_NEW, min_training_rows=1_000, max_iter=1, learning_rate=0.001)
    assert not failed.success
    assert p.promote(W_OLD, reason="older data").success
    code, out = rollback("older data was worse")
    assert code == 0, out
    assert "rolling back from week 2026-01-26 to week 2026-02-02" in out
    assert _live(p.instance) == first  # run A's model, not week W's latest (run B)
    last = champion_history(p.instance)[-1]
    assert last["reason"] == "rollback: older data was worse"
    assert last["model_storage_id"] == first["storage_id"]

    # Re-promote the same week with a good retrain (run D), then roll back: run A again.
    retrained = p.train(W_NEW, **{**SMALL, "max_iter": 120})
    assert retrained.success, run_failure_message(retrained)
    assert p.promote(W_NEW, reason="retrained").success
    live = current_champion(p.instance)
    assert live["model_run_id"] == retrained.run_id
    assert live["previous_model_storage_id"] == first["storage_id"]
    code, out = rollback("retrained model misbehaves")
    assert code == 0, out
    assert _live(p.instance) == first


def test_promotion_reads_exactly_that_models_check_results(trust):
    """More than 100 check executions of other weeks do not hide an older week's result."""
    p = trust["p"]
    mondays = [(date(2027, 1, 4) + timedelta(weeks=i)).isoformat() for i in range(101)]
    for week in mondays:
        p.instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=PRICE_MODEL_KEY,
                check_name="beats_naive_baseline",
                passed=True,
                partition=week,
            )
        )
    result = p.promote(W_OLD, reason="checks of other weeks")
    assert result.success, run_failure_message(result)
    assert current_champion(p.instance)["model_run_id"] == trust["older"].run_id


def _promote_elsewhere(instance_ref, home, week, reason, mode, ready, go, inside, done, out):
    """A promotion in another process on the same instance (Dagster runs in one process
    must not share it between threads: its logging setup deadlocks)."""
    import os

    os.environ.update(ML_PLATFORM_HOME=str(home), ML_PLATFORM_DEPLOYMENT="local")
    for name in (
        "ML_PLATFORM_LANDING_ROOT",
        "ML_PLATFORM_STORAGE_ROOT",
        "ML_PLATFORM_QUARANTINE_ROOT",
    ):
        os.environ.pop(name, None)
    import ml_platform.assets.champion as models_module
    from ml_platform.definitions import build_definitions

    real = models_module.champion_history

    def paced(instance):
        if mode == "meet":  # read the history, then wait for the other promotion to read it
            history = real(instance)
            inside.set()
            done.wait(timeout=3)
            return history
        inside.set()  # "late": wait for the other promotion to finish, then read
        done.wait(timeout=3)
        return real(instance)

    models_module.champion_history = paced
    defs = build_definitions()
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        ready.set()
        go.wait(timeout=120)
        result = Platform(defs, instance).promote(week, reason=reason)
        out.put(run_failure_message(result) if not result.success else "ok")


def _race(p: Platform, home: Path, other_week: str, week: str, mode: str):
    """Start a promotion of ``other_week`` elsewhere; when it is inside, promote ``week`` here."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, go, inside, done, out = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue()
    args = (p.instance.get_ref(), home, other_week, f"elsewhere {other_week}", mode)
    process = ctx.Process(target=_promote_elsewhere, args=(*args, ready, go, inside, done, out))
    process.start()
    try:
        assert ready.wait(timeout=120)
        go.set()
        inside.wait(timeout=60)
        here = p.promote(week, reason=f"here {week}")
        done.set()
        elsewhere = out.get(timeout=120)
    finally:
        process.join(timeout=60)
    assert elsewhere == "ok", elsewhere
    assert here.success, run_failure_message(here)


def test_two_concurrent_promotions_both_stay_in_the_history(trust):
    """One promotion read the history, then another promoted before it wrote: unless
    promotions are serialized, the stored history loses one and "previous" is wrong."""
    p, home = trust["p"], trust["home"]
    before = len(champion_history(p.instance))
    _race(p, home, W_OLD, W_NEW, mode="meet")
    history = champion_history(p.instance)
    assert len(history) == before + 2
    stored = current_frame(home / "storage", p.instance, "models/champion", None)
    assert stored.height == len(history)
    assert stored["model_run_id"].to_list() == [h["model_run_id"] for h in history]
    assert history[-1]["previous_run_id"] == history[-2]["model_run_id"]


def test_predictions_and_champion_name_the_same_live_model(trust):
    """A promotion that read the history late must not make quotes use another model."""
    p, home = trust["p"], trust["home"]
    _race(p, home, W_OLD, W_NEW, mode="late")
    predicted = p.predict("2026-02-12", "2026-02-12")
    assert predicted.success, run_failure_message(predicted)
    quotes = current_frame(home / "storage", p.instance, "predictions/price_quotes", "2026-02-12")
    live = current_champion(p.instance)
    assert set(quotes["model_run_id"]) == {live["model_run_id"]}
    assert set(quotes["model_sha256"]) == {live["model_sha256"]}
    assert set(quotes["champion_storage_id"]) == {live["champion_storage_id"]}


def test_in_sample_days_are_marked_and_not_counted_as_live_performance(trust):
    p, home = trust["p"], trust["home"]
    live = current_champion(p.instance)
    assert live["model_week"] == W_NEW  # features 2026-01-12..2026-02-08
    result = p.predict("2026-02-07", "2026-02-09")
    assert result.success, run_failure_message(result)

    def frame(asset, day):
        return current_frame(home / "storage", p.instance, asset, day)

    assert frame("predictions/price_quotes", "2026-02-07")["in_sample"].all()
    assert not frame("predictions/price_quotes", "2026-02-09")["in_sample"].any()
    inside = frame("monitoring/prediction_quality", "2026-02-07")
    overall = inside.filter(pl.col("scope") == "overall").row(0, named=True)
    assert overall["rows"] == 0 and overall["mape"] is None
    assert overall["in_sample_rows"] == frame("predictions/price_quotes", "2026-02-07").height
    assert inside.filter(pl.col("scope") == "lane").height == 0
    outside = frame("monitoring/prediction_quality", "2026-02-09")
    overall = outside.filter(pl.col("scope") == "overall").row(0, named=True)
    assert overall["rows"] > 0 and overall["in_sample_rows"] == 0

    evaluations = {
        e.event_specific_data.partition: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert evaluations["2026-02-07"].passed
    assert evaluations["2026-02-07"].metadata["evaluated"].value is False
    assert "trained on" in evaluations["2026-02-07"].metadata["note"].value
    assert evaluations["2026-02-09"].metadata["evaluated"].value is True


def test_quotes_use_the_feature_columns_the_model_recorded(trust, monkeypatch):
    """Today's feature list no longer has a column the live model was trained with."""
    from ml_platform.models import training

    p = trust["p"]
    monkeypatch.setattr(training, "FEATURES", [c for c in training.FEATURES if c != "day_of_year"])
    result = p.predict("2026-02-10", "2026-02-10")
    assert result.success, run_failure_message(result)


def test_a_model_missing_its_feature_columns_fails_naming_them(trust):
    from ml_platform.models.training import MissingFeaturesError, predict
    from ml_platform.provenance.champion import load_champion_model

    p, home = trust["p"], trust["home"]
    store = p.defs.resources["lake_io_manager"].store()
    model = load_champion_model(current_champion(p.instance), store)
    features = current_frame(
        home / "storage", p.instance, "features/shipment_features", "2026-02-10"
    )
    with pytest.raises(MissingFeaturesError, match=r"\['day_of_year', 'distance_km'\]"):
        predict(model, features.drop("distance_km", "day_of_year"))


def test_stale_reasons_flow_through_the_champion_to_the_quotes(trust):
    """Quotes whose own features are unchanged, made by a model whose features changed."""
    from ml_platform.provenance.staleness import stale_partitions

    p, home = trust["p"], trust["home"]
    live = current_champion(p.instance)
    predicted = p.predict("2026-02-12", "2026-02-12")  # quotes by the live champion
    assert predicted.success, run_failure_message(predicted)
    # A corrected drop for 2026-01-05: clean changes, and with it the lane figures of the
    # features of 2026-01-12 the live model trained on (not the features of 2026-02-12).
    generate_drops(
        home / "landing", date(2026, 1, 5), 1, GeneratorConfig(rows_per_day=ROWS, seed=99)
    )
    assert p.run(DATA_ASSETS[:3], partition="2026-01-05").success
    assert p.run(DATA_ASSETS[3:], partition="2026-01-12").success
    stale = {
        (s.asset, s.partition): s
        for s in stale_partitions(p.instance, p.defs.resolve_asset_graph())
    }
    assert ("models/champion", None) not in stale  # a promotion decision, never reported
    quotes = stale[("predictions/price_quotes", "2026-02-12")]
    (reason,) = quotes.reasons
    assert reason["kind"] == "upstream_stale"
    assert reason["upstream"] == CHAMPION_KEY.to_user_string()
    assert f"week {live['model_week']}" in reason["detail"]
    assert "features/shipment_features 2026-01-12" in reason["detail"]


def test_retention_keeps_every_model_a_rollback_can_target(trust, rollback):
    from ml_platform.storage.retention import apply_retention

    p, first = trust["p"], trust["first"]
    # Run A's model (no longer week 2026-02-02's latest) live, then another one.
    exact = {"model_storage_id": first["storage_id"], "reason": "exact model"}
    result = p.run(["models/champion"], config={"ops": {"models__champion": {"config": exact}}})
    assert result.success, run_failure_message(result)
    assert _live(p.instance) == first
    assert p.promote(W_OLD, reason="older again").success

    store = p.defs.resources["lake_io_manager"].store()
    later = datetime.now(UTC) + timedelta(days=1)
    report = apply_retention(store, p.instance, timedelta(hours=1), now=later)
    assert report.removed  # superseded versions nobody needs are removed
    code, out = rollback("after retention")
    assert code == 0, out
    assert _live(p.instance) == first
    # Everything run A's model was trained on is still there (some of it superseded).
    (record,) = p.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PRICE_MODEL_KEY, storage_ids=[first["storage_id"]]),
        limit=1,
    ).records
    inputs = record.asset_materialization.metadata["ml_platform/inputs"].value
    uris = [r["uri"] for entry in inputs for r in entry["partitions"]]
    assert len(uris) == 28
    assert all(Path(urlparse(u).path).exists() for u in uris)
