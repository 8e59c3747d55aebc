"""Automation of the model half, on real automation-condition evaluations.

Predictions follow new features but not a new champion (the old quotes show as stale
instead); a new model makes the champion re-evaluate; a new features code version retrains
the latest week.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform_tests.pipeline.helpers import DATA_ASSETS, Platform

NOW = datetime(2026, 2, 11, 12, tzinfo=UTC)  # latest complete model week: 2026-02-02
SMALL_MODEL = {"min_training_rows": 1_000}


def _requested(defs, instance, cursor):
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=cursor, evaluation_time=NOW
    )
    requested = {
        key.to_user_string(): sorted(p for p in result.get_requested_partitions(key) if p) or ["*"]
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if result.get_requested_partitions(key)
    }
    return requested, result.cursor


@pytest.fixture
def trained(defs, instance, platform_home):
    generate_drops(platform_home.landing, date(2026, 1, 1), 42, GeneratorConfig(rows_per_day=1_000))
    p = Platform(defs, instance)
    assert p.run(DATA_ASSETS, first="2026-01-01", last="2026-02-11").success
    assert p.train("2026-02-02", **SMALL_MODEL).success
    assert p.promote().success
    assert p.predict("2026-02-09", "2026-02-10").success
    return p


def test_new_features_are_quoted_and_a_new_champion_rescores_nothing(trained):
    p = trained
    _, cursor = _requested(p.defs, p.instance, None)  # the daemon's baseline tick

    # A corrected drop: the day's features get new content (an identical re-run would not
    # be new work for automation).
    config = GeneratorConfig(rows_per_day=1_000, seed=99)
    generate_drops(Path(p.defs.resources["landing"].root), date(2026, 2, 10), 1, config)
    assert p.run(DATA_ASSETS, partition="2026-02-10").success
    requested, cursor = _requested(p.defs, p.instance, cursor)
    # 2026-02-10's quotes follow its new features; 2026-02-11's features read the corrected
    # day too (lane figures), so they are requested and their new quote day with them.
    assert requested.get("predictions/price_quotes") == ["2026-02-10", "2026-02-11"]
    assert "models/price_model" not in requested

    # An older week: the champion gate compares both on days neither trained on.
    assert p.train("2026-01-26", **SMALL_MODEL).success
    requested, cursor = _requested(p.defs, p.instance, cursor)
    assert requested.get("models/champion") == ["*"]  # a new model: re-evaluate the champion
    assert p.promote("2026-01-26", reason="test").success
    requested, cursor = _requested(p.defs, p.instance, cursor)
    assert "predictions/price_quotes" not in requested


def test_a_new_features_code_version_retrains_the_latest_week(trained):
    p = trained
    _, cursor = _requested(p.defs, p.instance, None)
    requested, cursor = _requested(p.defs, p.instance, cursor)
    assert "models/price_model" not in requested

    bumped = _with_features_code_version(p.defs, "2")
    requested, _ = _requested(bumped, p.instance, cursor)
    assert requested.get("models/price_model") == ["2026-02-02"]


def _with_features_code_version(defs: dg.Definitions, version: str) -> dg.Definitions:
    from ml_platform.assets.features import FEATURES_KEY

    assets = [
        a.map_asset_specs(
            lambda spec: (
                spec.replace_attributes(code_version=version) if spec.key == FEATURES_KEY else spec
            )
        )
        if isinstance(a, dg.AssetsDefinition) and FEATURES_KEY in a.keys
        else a
        for a in defs.assets
    ]
    return dg.Definitions(
        assets=assets, jobs=defs.jobs, sensors=defs.sensors, resources=defs.resources
    )
