"""Automation fires only on changed data, and never quotes days nobody asked for.

The issue's scenario: re-materializing two clean days with byte-identical content made
automation recompute every feature day whose window holds them and then quote days that were
never quoted. Here, on real runs and real automation evaluations:

- a backfill of unchanged clean days: the next evaluation requests nothing;
- a changed re-drop of one day: one evaluation requests exactly that day's clean, the feature
  days whose window holds it and the quotes (and their quality) of those days that exist,
  never a new quote day inside the live model's training window;
- a new day after the training window cascades raw -> clean -> features -> quotes in one tick.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops, write_drop
from ml_platform_tests.pipeline.helpers import AutomationDriver, Platform, run_range

START = date(2026, 1, 1)
DAYS = 16  # 2026-01-01 .. 2026-01-16
CONFIG = GeneratorConfig(rows_per_day=200, files_per_drop=1, bad_row_share=0.02)
CHANGED = GeneratorConfig(rows_per_day=200, files_per_drop=1, bad_row_share=0.05)
WEEK = "2026-01-05"  # trains on features 2026-01-01 .. 2026-01-11
QUOTED_IN_WINDOW = "2026-01-10"
QUOTED_AFTER = ("2026-01-12", "2026-01-16")
REDROPPED = "2026-01-09"
NEW_DAY = "2026-01-17"


def _days(first: str, last: str) -> list[str]:
    d, end, out = date.fromisoformat(first), date.fromisoformat(last), []
    while d <= end:
        out.append(d.isoformat())
        d += timedelta(days=1)
    return out


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import PlatformHome, local_platform

    home = PlatformHome(tmp_path_factory.mktemp("no_rework") / "home")
    with local_platform(home.root) as (defs, instance):
        generate_drops(home.landing, START, DAYS, CONFIG)
        p = Platform(defs, instance)
        last = (START + timedelta(days=DAYS - 1)).isoformat()
        assert run_range(defs, instance, "data_pipeline", START.isoformat(), last).success
        assert p.train(WEEK, min_training_rows=500).success
        assert p.promote().success
        assert p.predict(QUOTED_IN_WINDOW, QUOTED_IN_WINDOW).success
        assert p.predict(*QUOTED_AFTER).success

        automation = AutomationDriver(defs, instance)
        ticks = {"baseline": automation.tick(), "quiet": automation.tick()}

        # A backfill of two clean days whose content did not change.
        assert p.run(
            ["clean/shipments", "clean/shipments_rejected"], first="2026-01-05", last="2026-01-06"
        ).success
        ticks["unchanged_backfill"] = automation.tick()

        # A changed re-drop of one day, read by the sensor's raw run; the tick's runs execute.
        write_drop(home.landing, date.fromisoformat(REDROPPED), CHANGED)
        assert run_range(defs, instance, "ingest_shipments", REDROPPED, REDROPPED).success
        ticks["changed_redrop"] = automation.tick()
        ticks["after_changed_redrop"] = automation.tick()

        # A new day after the training window: the whole chain in one tick.
        write_drop(home.landing, date.fromisoformat(NEW_DAY), CONFIG)
        assert run_range(defs, instance, "ingest_shipments", NEW_DAY, NEW_DAY).success
        ticks["new_day"] = automation.tick()
        ticks["after_new_day"] = automation.tick()
        yield ticks


def test_nothing_to_do_before_anything_changes(story):
    assert story["quiet"] == {}


def test_a_backfill_of_unchanged_days_requests_nothing(story):
    assert story["unchanged_backfill"] == {}


def test_a_changed_day_refreshes_exactly_what_depends_on_it(story):
    features = _days(REDROPPED, "2026-01-16")  # every feature day whose window holds it
    # Quotes exist for 2026-01-10 (inside the training window) and 2026-01-12..16; none are
    # created for 2026-01-09 or 2026-01-11 (inside the window, never quoted).
    quotes = [QUOTED_IN_WINDOW, *_days(*QUOTED_AFTER)]
    assert story["changed_redrop"] == {
        "clean/shipments": [REDROPPED],
        "clean/shipments_rejected": [REDROPPED],
        "features/shipment_features": features,
        "predictions/price_quotes": quotes,
        "monitoring/prediction_quality": quotes,
    }
    assert story["after_changed_redrop"] == {}


def test_a_new_day_after_the_training_window_cascades_in_one_tick(story):
    assert story["new_day"] == {
        "clean/shipments": [NEW_DAY],
        "clean/shipments_rejected": [NEW_DAY],
        "features/shipment_features": [NEW_DAY],
        "predictions/price_quotes": [NEW_DAY],
        "monitoring/prediction_quality": [NEW_DAY],
    }
    assert story["after_new_day"] == {}
