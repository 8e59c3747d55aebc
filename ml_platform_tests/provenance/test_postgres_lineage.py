"""The backward query on a Dagster instance on Postgres: batched storage-id lookups, exact versions.

Events are reported as runless materializations carrying ``ml_platform/inputs`` records of
the platform's shape (the pipelines themselves are exercised on SQLite in test_scenarios).
"""

from __future__ import annotations

import dagster as dg

from ml_platform.provenance.impact import impact, starts_for_partition
from ml_platform.provenance.lineage import backward

K = dg.AssetKey.from_user_string
DAYS = [f"2026-01-{d:02d}" for d in range(1, 11)]


def _report(instance, asset: str, partition: str | None, inputs: list[dict]) -> int:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=K(asset),
            partition=partition,
            metadata={"ml_platform/inputs": dg.MetadataValue.json(inputs)},
        )
    )
    flt = dg.AssetRecordsFilter(
        asset_key=K(asset), asset_partitions=[partition] if partition else None
    )
    return instance.fetch_materializations(flt, limit=1).records[0].storage_id


def _reads(asset: str, ids: dict) -> dict:
    return {
        "asset": asset,
        "partitions": [
            {
                "partition": p,
                "run_id": "",
                "uri": f"u/{p}",
                "sha256": "0",
                "size": 1,
                "generation": "1",
                "rows": 1,
                "content_hash": "c",
                "storage_id": i,
            }
            for p, i in ids.items()
        ],
    }


def test_backward_on_postgres_names_the_versions_read(pg_instance):
    raw = {d: _report(pg_instance, "raw/shipments", d, []) for d in DAYS}
    clean = {
        d: _report(pg_instance, "clean/shipments", d, [_reads("raw/shipments", {d: raw[d]})])
        for d in DAYS
    }
    features = _report(
        pg_instance, "features/shipment_features", DAYS[-1], [_reads("clean/shipments", clean)]
    )
    model = _report(
        pg_instance,
        "models/price_model",
        "2026-01-05",
        [_reads("features/shipment_features", {DAYS[-1]: features})],
    )
    champion = _report(
        pg_instance, "models/champion", None, [_reads("models/price_model", {"2026-01-05": model})]
    )
    quotes = _report(
        pg_instance,
        "predictions/price_quotes",
        DAYS[-1],
        [
            _reads("features/shipment_features", {DAYS[-1]: features}),
            _reads("models/champion", {None: champion}),
        ],
    )
    # Later versions the quotes did not read.
    newer_raw = _report(pg_instance, "raw/shipments", DAYS[3], [])
    _report(
        pg_instance, "clean/shipments", DAYS[3], [_reads("raw/shipments", {DAYS[3]: newer_raw})]
    )

    lineage = backward(pg_instance, K("predictions/price_quotes"), DAYS[-1])
    assert lineage.root == quotes
    assert {n.storage_id for n in lineage.by_asset("raw/shipments")} == set(raw.values())
    assert {n.storage_id for n in lineage.by_asset("clean/shipments")} == set(clean.values())
    assert [n.storage_id for n in lineage.by_asset("models/champion")] == [champion]
    # raw, clean, features, model, champion, quotes: features reached twice, listed once.
    assert len(lineage.nodes) == 2 * len(DAYS) + 4

    from ml_platform.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    items = impact(
        pg_instance, graph, starts_for_partition(pg_instance, K("raw/shipments"), DAYS[3])
    )
    got = {(i.asset, i.partition, i.superseded) for i in items}
    assert ("clean/shipments", DAYS[3], True) in got
    assert ("predictions/price_quotes", DAYS[-1], False) in got
    assert ("models/champion", None, False) in got
