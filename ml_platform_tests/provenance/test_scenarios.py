"""Change history, then check that provenance is exact: backward, forward and staleness.

One history on a real SQLite instance, built step by step; after each step the fixture
takes snapshots (lineage of chosen materializations, impact lists, stale partitions) that
the tests check. Scenarios: a raw drop re-landed with different content after features and a
model were built from it; a model retrained, promoted and rolled back; a feature code-version
bump.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import dagster as dg
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform.provenance.impact import impact, starts_for_file, starts_for_partition
from ml_platform.provenance.lineage import backward
from ml_platform.provenance.staleness import stale_partitions
from ml_platform.provenance.summary import PROVENANCE_MD_KEY
from ml_platform.provenance.verify import verifier_for
from ml_platform_tests.pipeline.helpers import DATA_ASSETS, Platform, run_failure_message

START = date(2026, 1, 1)
DAYS = 46  # through 2026-02-15
RELANDED = "2026-02-05"
W1, W2 = "2026-02-02", "2026-02-09"
CONFIG = GeneratorConfig(rows_per_day=1_000, bad_row_share=0.0)
SMALL = {"min_training_rows": 1_000}

PRICES = dg.AssetKey(["predictions", "price_quotes"])
RAW = dg.AssetKey(["raw", "shipments"])
CLEAN = dg.AssetKey(["clean", "shipments"])
MODEL = dg.AssetKey(["models", "price_model"])


def days(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def latest_id(instance, key: dg.AssetKey, partition: str | None = None) -> int:
    flt = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
    return instance.fetch_materializations(flt, limit=1).records[0].storage_id


def stale_set(stale) -> set[tuple[str, str | None]]:
    return {(s.asset, s.partition) for s in stale}


def ok(result):
    assert result.success, run_failure_message(result)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path_factory.mktemp("provenance") / "home"
    snap: dict = {}
    with local_platform(home) as (defs, instance), verifier_for(defs) as verifier:
        graph = defs.resolve_asset_graph()
        generate_drops(home / "landing", START, DAYS, CONFIG)
        p = Platform(defs, instance)
        ok(p.run(DATA_ASSETS, first=START.isoformat(), last="2026-02-15"))
        ok(p.train(W1, **SMALL))
        ok(p.promote())
        ok(p.predict("2026-02-10", "2026-02-12"))
        quotes = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=PRICES, asset_partitions=["2026-02-10"]), limit=1
        ).records[0]
        snap["quote_summary"] = quotes.asset_materialization.metadata[PROVENANCE_MD_KEY].value
        snap["baseline_stale"] = stale_partitions(instance, graph)
        snap["first_raw"] = latest_id(instance, RAW, RELANDED)
        snap["first_clean"] = latest_id(instance, CLEAN, RELANDED)
        snap["first_model"] = latest_id(instance, MODEL, W1)
        snap["first_quotes"] = latest_id(instance, PRICES, "2026-02-10")

        # Scenario A: the drop of RELANDED is re-landed with different content; raw and clean
        # are rebuilt, features and the model are not.
        generate_drops(
            home / "landing",
            date.fromisoformat(RELANDED),
            1,
            GeneratorConfig(rows_per_day=1_000, seed=99, bad_row_share=0.0),
        )
        ok(
            p.run(
                ["raw/shipments", "clean/shipments", "clean/shipments_rejected"], partition=RELANDED
            )
        )
        snap["a_lineage"] = backward(
            instance, PRICES, storage_id=snap["first_quotes"], verifier=verifier
        )
        raw_record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=RAW, asset_partitions=[RELANDED]), limit=1
        ).records[0]
        snap["relanded_uri"] = raw_record.asset_materialization.metadata[
            "ml_platform/source_files"
        ].value[0]["uri"]
        snap["a_impact_file"] = impact(
            instance, graph, starts_for_file(instance, snap["relanded_uri"])
        )
        snap["a_stale"] = stale_partitions(instance, graph)

        # Scenario B: rebuild the features, re-quote with the same champion, train and promote
        # week W2, quote two days with it, then roll back to W1.
        ok(p.run(["features/shipment_features"], first=RELANDED, last="2026-02-15"))
        ok(p.predict("2026-02-10", "2026-02-12"))
        ok(p.train(W2, **SMALL))
        ok(p.promote())
        ok(p.predict("2026-02-13", "2026-02-14"))
        snap["w2_model"] = latest_id(instance, MODEL, W2)
        ok(p.promote(W1, reason="rollback"))
        snap["b_lineage_13"] = backward(instance, PRICES, "2026-02-13", verifier=verifier)
        snap["b_lineage_10"] = backward(instance, PRICES, "2026-02-10", verifier=verifier)
        snap["b_impact_w2"] = impact(instance, graph, starts_for_partition(instance, MODEL, W2))
        snap["b_stale"] = stale_partitions(instance, graph)

        # Scenario C: the features' code version is bumped (a new deployment).
        bumped = dg.Definitions(
            assets=[
                *dg.map_asset_specs(
                    lambda s: (
                        s.replace_attributes(code_version="2")
                        if s.key == dg.AssetKey(["features", "shipment_features"])
                        else s
                    ),
                    list(graph.assets_defs),
                )
            ]
        ).resolve_asset_graph()
        snap["c_stale"] = stale_partitions(instance, bumped)
        yield {"instance": instance, "defs": defs, "snap": snap, "home": home}


def test_a_fresh_history_has_nothing_stale(history):
    assert history["snap"]["baseline_stale"] == []


def test_backward_chain_names_the_versions_read_not_the_latest(history):
    snap, instance = history["snap"], history["instance"]
    lineage = snap["a_lineage"]
    root = lineage.node(lineage.root)
    assert (root.asset, root.partition) == ("predictions/price_quotes", "2026-02-10")
    raws = {n.partition: n for n in lineage.by_asset("raw/shipments")}
    # The re-landed day appears with the version the features were built from, not the new one.
    assert raws[RELANDED].storage_id == snap["first_raw"]
    assert raws[RELANDED].storage_id != latest_id(instance, RAW, RELANDED)
    cleans = {n.partition: n for n in lineage.by_asset("clean/shipments")}
    assert cleans[RELANDED].storage_id == snap["first_clean"]
    # The model is the champion's exact materialization; raw leaves name their source files.
    (model,) = lineage.by_asset("models/price_model")
    assert model.storage_id == snap["first_model"]
    assert all(n.source_files and n.source_files[0]["sha256"] for n in raws.values())
    # Feature checks ran per partition and are part of the record.
    (features,) = lineage.by_asset("features/shipment_features")[-1:]
    assert {c["check"] for c in features.checks} == {"schema_contract", "row_count_sanity"}
    # Every stored version is still loadable and unchanged (the local lake keeps versions).
    assert {n.status for n in lineage.nodes.values()} == {"verified"}


def test_forward_impact_of_a_relanded_file_is_complete(history):
    snap = history["snap"]
    items = {(i.asset, i.partition, i.storage_id): i for i in snap["a_impact_file"]}
    by_asset: dict[str, set] = {}
    for asset, partition, _ in items:
        by_asset.setdefault(asset, set()).add(partition)
    # Both landings of the file's URI, and everything built from the first.
    assert by_asset["raw/shipments"] == {RELANDED}
    assert len([k for k in items if k[0] == "raw/shipments"]) == 2
    assert by_asset["features/shipment_features"] == set(days(RELANDED, "2026-02-15"))
    assert by_asset["models/price_model"] == {W1}
    assert by_asset["models/champion"] == {None}
    assert by_asset["predictions/price_quotes"] == set(days("2026-02-10", "2026-02-12"))
    assert by_asset["monitoring/prediction_quality"] == set(days("2026-02-10", "2026-02-12"))
    first_clean = items[("clean/shipments", RELANDED, snap["first_clean"])]
    assert first_clean.superseded
    assert not items[("models/price_model", W1, snap["first_model"])].superseded


def test_stale_after_a_relanded_drop(history):
    stale = history["snap"]["a_stale"]
    expected = (
        {("features/shipment_features", d) for d in days(RELANDED, "2026-02-15")}
        | {("models/price_model", W1)}
        | {("predictions/price_quotes", d) for d in days("2026-02-10", "2026-02-12")}
        | {("monitoring/prediction_quality", d) for d in days("2026-02-10", "2026-02-12")}
    )
    assert stale_set(stale) == expected
    kinds = {(s.asset, s.partition): {r["kind"] for r in s.reasons} for s in stale}
    assert kinds[("features/shipment_features", RELANDED)] == {"new_upstream_data"}
    assert kinds[("models/price_model", W1)] == {"upstream_stale"}


def test_rollback_chains_name_the_champion_each_day_was_scored_by(history):
    snap, instance = history["snap"], history["instance"]
    (model_13,) = snap["b_lineage_13"].by_asset("models/price_model")
    assert model_13.storage_id == snap["w2_model"]
    (model_10,) = snap["b_lineage_10"].by_asset("models/price_model")
    assert model_10.storage_id == snap["first_model"]
    (champion_13,) = snap["b_lineage_13"].by_asset("models/champion")
    assert champion_13.extra["promotion"]["model_week"] == W2
    assert champion_13.storage_id != latest_id(instance, dg.AssetKey(["models", "champion"]))


def test_impact_of_a_retrained_model_and_its_superseded_champion(history):
    items = history["snap"]["b_impact_w2"]
    got = {(i.asset, i.partition, i.superseded) for i in items}
    assert got == (
        {("models/price_model", W2, False), ("models/champion", None, True)}
        | {("predictions/price_quotes", d, False) for d in days("2026-02-13", "2026-02-14")}
        | {("monitoring/prediction_quality", d, False) for d in days("2026-02-13", "2026-02-14")}
    )


def test_stale_after_retrain_promote_and_rollback(history):
    stale = history["snap"]["b_stale"]
    assert stale_set(stale) == (
        {("models/price_model", W1)}
        | {("predictions/price_quotes", d) for d in days("2026-02-13", "2026-02-14")}
        | {("monitoring/prediction_quality", d) for d in days("2026-02-13", "2026-02-14")}
    )
    kinds = {(s.asset, s.partition): {r["kind"] for r in s.reasons} for s in stale}
    assert kinds[("predictions/price_quotes", "2026-02-13")] == {"new_champion"}
    assert kinds[("models/price_model", W1)] == {"new_upstream_data"}


def test_stale_after_a_feature_code_version_bump(history):
    stale = history["snap"]["c_stale"]
    features = {s.partition for s in stale if s.asset == "features/shipment_features"}
    assert features == set(days(START.isoformat(), "2026-02-15"))
    assert stale_set(stale) >= {("models/price_model", W1), ("models/price_model", W2)}
    assert {s.asset for s in stale} == {
        "features/shipment_features",
        "models/price_model",
        "predictions/price_quotes",
        "monitoring/prediction_quality",
    }
    kinds = {(s.asset, s.partition): {r["kind"] for r in s.reasons} for s in stale}
    assert kinds[("features/shipment_features", "2026-01-01")] == {"new_code_version"}
    assert kinds[("models/price_model", W2)] == {"upstream_stale"}


def test_a_quote_days_provenance_reads_as_a_summary_first(history):
    """Which model, which feature days, which raw drops: one line, before the full record."""
    first, rest = history["snap"]["quote_summary"].split("\n", 1)
    assert re.fullmatch(
        r"\*\*Summary:\*\* made from model week 2026-02-02 \(run `\w{8}`, sha256 `\w{12}…`\); "
        r"features 2026-02-10; raw drops 2026-01-13\.\.2026-02-10 \(29\), \d+ landed file\(s\)",
        first,
    ), first
    assert "**Made from**" in rest and "`features/shipment_features`" in rest
