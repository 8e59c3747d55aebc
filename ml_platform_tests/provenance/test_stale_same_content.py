"""A day rebuilt with the same content is not new upstream data, whichever run built it.

A range run gives every partition of an output one data version (the whole range's), so the
same day built alone, or in another range, gets another data version with the same rows.
Staleness compares the per-partition content hash the IO managers record instead.
"""

from __future__ import annotations

from datetime import date

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform.provenance.staleness import stale_partitions
from ml_platform_tests.pipeline.helpers import DATA_ASSETS, Platform, run_failure_message

CLEAN = ["clean/shipments", "clean/shipments_rejected"]


def ok(result):
    assert result.success, run_failure_message(result)


def test_rebuilding_days_with_the_same_content_makes_nothing_stale(tmp_path):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path / "home"
    with local_platform(home) as (defs, instance):
        graph = defs.resolve_asset_graph()
        generate_drops(home / "landing", date(2026, 1, 1), 6, GeneratorConfig(rows_per_day=200))
        p = Platform(defs, instance)
        ok(p.run(DATA_ASSETS, first="2026-01-01", last="2026-01-06"))
        assert stale_partitions(instance, graph) == []

        ok(p.run(CLEAN, partition="2026-01-03"))  # one day alone: same rows
        ok(p.run(CLEAN, first="2026-01-01", last="2026-01-04"))  # another range: same rows
        assert [(s.asset, s.partition) for s in stale_partitions(instance, graph)] == []

        # Different content still counts: the day's drop re-landed with other rows.
        generate_drops(
            home / "landing", date(2026, 1, 5), 1, GeneratorConfig(rows_per_day=200, seed=99)
        )
        ok(p.run(["raw/shipments", *CLEAN], partition="2026-01-05"))
        stale = {(s.asset, s.partition) for s in stale_partitions(instance, graph)}
        assert stale == {
            ("features/shipment_features", "2026-01-05"),
            ("features/shipment_features", "2026-01-06"),
        }
