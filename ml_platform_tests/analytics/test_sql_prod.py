"""`ml-platform sql` on the prod deployment: the lake on GCS (emulator), analyst tables on Postgres.

A small prod setup built the way the prod end-to-end test builds its own (same environment,
same landing upload): three days of drops, raw -> clean -> features. Raw and features are
downloaded through the GCS client to verified files, clean streamed through the platform's
Postgres reader.
Then the drop of the middle day is re-landed and its raw and clean rebuilt: Postgres keeps
only the new rows, so a query as of a features day that read the old ones must refuse,
naming them, while a features day that did not read them still answers exactly.
"""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops
from ml_platform.provenance.lineage import node_from_record, root_record
from ml_platform_tests.analytics.helpers import run_sql
from ml_platform_tests.deployments.test_prod_end_to_end import (
    LAKE_BUCKET,
    LANDING_BUCKET,
    _land,
    _prod_environment,
)
from ml_platform_tests.fixtures.gcs import emulator_environment, start_emulator
from ml_platform_tests.fixtures.postgres import fresh_database
from ml_platform_tests.pipeline.helpers import Platform, run_failure_message

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
REDROPPED = "2026-01-02"
DATA = [
    "raw/shipments",
    "clean/shipments",
    "clean/shipments_rejected",
    "features/shipment_features",
]


def latest(instance, asset: str, day: str) -> dict:
    """The day's latest materialization as provenance sees it (run, rows, uri, object key)."""
    node = node_from_record(root_record(instance, dg.AssetKey.from_user_string(asset), day))
    return {"run_id": node.run_id, "rows": node.rows, "uri": node.uri, "key": node.object_key}


def ok(result):
    assert result.success, run_failure_message(result)


@pytest.fixture(scope="module")
def prod(tmp_path_factory, pg_server, gcs_emulator):
    from ml_platform_tests.fixtures.dagster import sqlite_instance

    root = tmp_path_factory.mktemp("sql-prod")
    server = start_emulator(root / "emulator.log")
    pg = fresh_database(pg_server)
    mp = pytest.MonkeyPatch()
    try:
        with emulator_environment(server.url):
            client = server.client()
            client.create_bucket(LAKE_BUCKET)
            client.create_bucket(LANDING_BUCKET)
            _prod_environment(mp, pg, root / "home")
            from ml_platform.definitions import build_definitions

            defs = build_definitions()
            config = GeneratorConfig(rows_per_day=200, files_per_drop=1)
            _land(client, generate_drops(root / "first", START, len(DAYS), config))
            with sqlite_instance() as instance:
                p = Platform(defs, instance)
                ok(p.run(DATA, first=DAYS[0], last=DAYS[-1]))
                before = {
                    a: {d: latest(instance, a, d) for d in DAYS}
                    for a in ("raw/shipments", "clean/shipments", "features/shipment_features")
                }
                redrop = GeneratorConfig(rows_per_day=150, files_per_drop=1, seed=99)
                _land(
                    client,
                    generate_drops(root / "again", date.fromisoformat(REDROPPED), 1, redrop),
                )
                ok(p.run(DATA[:3], partition=REDROPPED))
                yield {"defs": defs, "instance": instance, "before": before, "client": client}
    finally:
        mp.undo()
        server.stop()


def sql(prod, query, **options) -> tuple[int, list[dict], str]:
    code, out, err = run_sql(prod, query, **{"format": "json", **options})
    return code, json.loads(out) if out else [], err


def test_current_views_read_gcs_and_postgres(prod):
    code, rows, err = sql(
        prod,
        "SELECT 'raw' AS v, partition_date::VARCHAR AS d, count(*) AS n FROM raw.shipments "
        "GROUP BY ALL UNION ALL "
        "SELECT 'clean', partition_date::VARCHAR, count(*) FROM clean.shipments GROUP BY ALL "
        "UNION ALL SELECT 'features', partition_date::VARCHAR, count(*) "
        "FROM features.shipment_features GROUP BY ALL ORDER BY 1, 2",
    )
    assert code == 0, err
    got = {(r["v"], r["d"]): r["n"] for r in rows}
    for day in DAYS:
        expected_raw = 150 if day == REDROPPED else 200
        assert got[("raw", day)] == expected_raw
        assert got[("features", day)] == prod["before"]["features/shipment_features"][day]["rows"]
    # The re-dropped day's clean rows are the new ones (the table's current rows).
    assert got[("clean", REDROPPED)] == 150
    code, kinds, _ = sql(prod, "SELECT DISTINCT view, kind, uri FROM ml_platform.versions")
    by_view = {k["view"]: k for k in kinds if k["view"]}
    assert by_view["raw.shipments"]["uri"].startswith(f"gs://{LAKE_BUCKET}/")
    assert by_view["features.shipment_features"]["kind"] == "parquet"
    assert by_view["clean.shipments"]["kind"] == "table"
    assert by_view["clean.shipments"]["uri"].startswith("postgresql://")


def test_as_of_a_day_that_read_only_unchanged_versions(prod):
    before = prod["before"]
    code, rows, err = sql(
        prod,
        "SELECT (SELECT count(*) FROM raw.shipments) AS raw, "
        "(SELECT count(*) FROM clean.shipments) AS clean, "
        "(SELECT sum(price_eur) FROM features.shipment_features) AS price",
        as_of="features/shipment_features",
        partition=DAYS[0],
    )
    assert code == 0, err
    assert rows[0]["raw"] == before["raw/shipments"][DAYS[0]]["rows"]
    assert rows[0]["clean"] == before["clean/shipments"][DAYS[0]]["rows"]
    assert rows[0]["price"] > 0


def test_as_of_refuses_postgres_rows_that_were_replaced(prod):
    replaced = prod["before"]["clean/shipments"][REDROPPED]
    code, rows, err = sql(
        prod,
        "SELECT count(*) FROM features.shipment_features",
        as_of="features/shipment_features",
        partition=DAYS[-1],
    )
    assert code == 1 and rows == []
    assert len(err.strip().splitlines()) == 1
    assert f"clean/shipments {REDROPPED}" in err
    assert f"the rows of run {replaced['run_id']}" in err and "were replaced by run" in err


def test_as_of_refuses_a_gcs_version_that_is_gone(prod):
    """Retention removed an object the provenance names: named, nothing queried."""
    version = prod["before"]["raw/shipments"][DAYS[0]]
    bucket = prod["client"].bucket(LAKE_BUCKET)
    blob = bucket.blob(f"lake/{version['key']}")
    data = blob.download_as_bytes()
    blob.delete()
    try:
        code, _, err = sql(
            prod,
            "SELECT count(*) FROM features.shipment_features",
            as_of="features/shipment_features",
            partition=DAYS[0],
        )
    finally:
        bucket.blob(f"lake/{version['key']}").upload_from_string(data)
    assert code == 1
    assert f"raw/shipments {DAYS[0]}" in err and "no longer exists" in err
    assert version["uri"] in err


def test_unknown_materialization_is_one_line(prod):
    code, _, err = sql(
        prod,
        "SELECT 1",
        as_of="features/shipment_features",
        storage_id=10**9,
    )
    assert code == 1 and "has no materialization" in err and len(err.splitlines()) == 1
