"""The whole asset graph on the prod deployment: GCS landing and lake, Postgres warehouse.

``build_definitions()`` under ``ML_PLATFORM_DEPLOYMENT=prod`` builds the real prod resources
from environment variables, pointed at a GCS emulator of this module's own and the suite's
PostgreSQL server; the Dagster instance stores its runs and events in that Postgres too.
Generated drops are uploaded to the landing bucket (marker last), the real landing sensor
requests the raw runs, and clean -> features, a weekly model, its promotion and a few days
of predictions run on top. Then the retention job removes what nothing needs any more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest
from dagster_gcp import GCSResource
from psycopg import sql

from ml_platform.assets.features import FEATURES_KEY
from ml_platform.assets.predictions import PREDICTIONS_KEY, QUALITY_KEY
from ml_platform.assets.raw import RAW_SHIPMENTS
from ml_platform.demo.generator import DropSummary, GeneratorConfig, generate_drops
from ml_platform.devtools.postgres_server import PostgresServer
from ml_platform.provenance.champion import CHAMPION_KEY, current_champion
from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform.storage.retention import DEFAULT_PROTECTED_ASSETS, referenced_uris
from ml_platform_tests.fixtures.gcs import emulator_environment, start_emulator
from ml_platform_tests.fixtures.postgres import fresh_database, postgres_instance
from ml_platform_tests.pipeline.helpers import (
    Platform,
    SensorDriver,
    latest_materialization,
    run_failure_message,
)

pytestmark = pytest.mark.slow

START = date(2026, 1, 1)
DAYS = 35  # through 2026-02-04
CONFIG = GeneratorConfig(rows_per_day=1_000, files_per_drop=2, bad_row_share=0.02)
LAKE_BUCKET, LAKE_PREFIX = "ml-platform-lake", "lake"
LANDING_BUCKET, LANDING_PREFIX = "ml-platform-landing", "drops"
# The week's model trains on 2026-01-05 .. 2026-02-01; quotes are for the days after it.
WEEK = "2026-01-26"
PREDICTED = ["2026-02-02", "2026-02-03", "2026-02-04"]
# Re-materialized after the predictions: its first version is then neither current nor
# read by anything the champion or the predictions were made from.
SUPERSEDED_FEATURES_DAY = "2026-01-02"
# Fewer boosting rounds than the default: a third of the training time, still far better
# than the naive baseline on the generator's prices.
TRAINING = {"ops": {"models__price_model": {"config": {"max_iter": 100}}}}


def _days() -> list[str]:
    return [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


@dataclass
class Prod:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    pg: PostgresServer
    client: object  # google.cloud.storage.Client on the emulator
    drops: list[DropSummary]
    home: Path
    runs: dict[str, dg.ExecuteInProcessResult]
    requests: list[dg.RunRequest]
    # Taken before retention ran, to compare with what is left after it.
    before_retention: dict


def _land(client, drops: list[DropSummary]) -> None:
    """Upload each generated drop's files to the landing bucket, its _SUCCESS marker last."""
    bucket = client.bucket(LANDING_BUCKET)

    def upload(drop: DropSummary) -> None:
        prefix = f"{LANDING_PREFIX}/shipments/{drop.partition.isoformat()}"
        for path in drop.files:
            bucket.blob(f"{prefix}/{path.name}").upload_from_filename(str(path))
        bucket.blob(f"{prefix}/{drop.marker.name}").upload_from_filename(str(drop.marker))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(upload, drops))


def _prod_environment(mp: pytest.MonkeyPatch, pg: PostgresServer, home: Path) -> None:
    mp.setenv("ML_PLATFORM_DEPLOYMENT", "prod")
    # Prod must not touch it: asserted to stay absent.
    mp.setenv("ML_PLATFORM_HOME", str(home))
    mp.setenv("ML_PLATFORM_GCS_BUCKET", LAKE_BUCKET)
    mp.setenv("ML_PLATFORM_GCS_PREFIX", LAKE_PREFIX)
    mp.setenv("ML_PLATFORM_GCS_UPLOAD_CHUNK_MB", "1")
    mp.setenv("ML_PLATFORM_LANDING_BUCKET", LANDING_BUCKET)
    mp.setenv("ML_PLATFORM_LANDING_PREFIX", LANDING_PREFIX)
    mp.setenv("ML_PLATFORM_QUARANTINE_PREFIX", "quarantine")
    for name in ("GCP_PROJECT", "ML_PLATFORM_EXECUTOR", "ML_PLATFORM_START_DATE"):
        mp.delenv(name, raising=False)
    for name in ("ML_PLATFORM_LANDING_ROOT", "ML_PLATFORM_STORAGE_ROOT"):
        mp.delenv(name, raising=False)
    for name, value in pg.env().items():
        mp.setenv(name, value)


@pytest.fixture(scope="module")
def prod(tmp_path_factory, pg_server, gcs_emulator) -> Iterator[Prod]:
    """Everything run once for the module; the tests below only look at what it left.

    The emulator is the module's own: its cost per write grows with the objects it holds.
    (It depends on the session emulator only so the environment variable is restored in
    order.)
    """
    root = tmp_path_factory.mktemp("prod-e2e")
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
            drops = generate_drops(root / "generated", START, DAYS, CONFIG)
            _land(client, drops)
            with postgres_instance(pg, root / "dagster_home") as instance:
                yield _run_everything(defs, instance, pg, client, drops, root / "home")
    finally:
        mp.undo()
        server.stop()


def _run_everything(defs, instance, pg, client, drops, home) -> Prod:
    sensor = SensorDriver(defs, instance)
    requests = sensor.tick()
    ingest_runs = [sensor.run(r) for r in requests]
    for run in ingest_runs:
        assert run.success, run_failure_message(run)
    assert sensor.tick() == []  # nothing new landed: no second run for any drop

    p = Platform(defs, instance)
    runs = {
        "data": p.run(
            ["clean/shipments", "clean/shipments_rejected", "features/shipment_features"],
            first=_days()[0],
            last=_days()[-1],
        ),
    }
    assert runs["data"].success, run_failure_message(runs["data"])
    runs["train"] = p.run(["models/price_model"], partition=WEEK, config=TRAINING)
    assert runs["train"].success, run_failure_message(runs["train"])
    runs["promote"] = p.promote()
    assert runs["promote"].success, run_failure_message(runs["promote"])
    runs["predict"] = p.predict(PREDICTED[0], PREDICTED[-1])
    assert runs["predict"].success, run_failure_message(runs["predict"])
    runs["rewrite"] = p.run(["features/shipment_features"], partition=SUPERSEDED_FEATURES_DAY)
    assert runs["rewrite"].success, run_failure_message(runs["rewrite"])

    before = {
        "objects": {b.name for b in client.list_blobs(LAKE_BUCKET)},
        "referenced": referenced_uris(
            instance, [dg.AssetKey.from_user_string(k) for k in DEFAULT_PROTECTED_ASSETS]
        ),
        "last_quotes": defs.load_asset_value(
            PREDICTIONS_KEY, partition_key=PREDICTED[-1], instance=instance
        ),
    }
    runs["retention"] = defs.resolve_job_def("retention_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"remove_old_versions": {"config": {"older_than": "0"}}}},
        raise_on_error=False,
    )
    assert runs["retention"].success, run_failure_message(runs["retention"])
    # After retention: score the last day again from what is left in the lake.
    runs["predict_again"] = p.predict(PREDICTED[-1], PREDICTED[-1])
    return Prod(defs, instance, pg, client, drops, home, runs, requests, before)


# -- helpers -----------------------------------------------------------------------------------


def _sql(pg: PostgresServer, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _counts(pg: PostgresServer, table: str) -> dict[str, int]:
    """Rows per partition_date of "schema"."table"."""
    query = sql.SQL("SELECT partition_date::text, count(*) FROM {} GROUP BY 1").format(
        sql.Identifier(*table.split("."))
    )
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        return dict(conn.execute(query).fetchall())


def _lake() -> GCSParquetIOManager:
    # The configured resource holds EnvVars (resolved only inside runs): inspect with values.
    return GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=LAKE_BUCKET, gcs_prefix=LAKE_PREFIX)


def _inputs(materialization: dg.AssetMaterialization) -> dict[str, list[dict]]:
    return {
        entry["asset"]: entry["partitions"]
        for entry in materialization.metadata[INPUTS_METADATA_KEY].value
    }


def _pg_uri(pg: PostgresServer, table: str, partition: str | None) -> str:
    suffix = f"#partition={partition}" if partition else ""
    return f"postgresql://{pg.host}:{pg.port}/{pg.dbname}/{table}{suffix}"


def _bad(drop: DropSummary) -> int:
    return sum(drop.bad_rows.values())


def _model(prod: Prod) -> dg.AssetMaterialization:
    return latest_materialization(prod.instance, "models/price_model", WEEK)


# -- the deployment ----------------------------------------------------------------------------


def test_prod_resources_and_a_postgres_instance_ran_everything(prod):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from ml_platform.landing.gcs_zone import GCSLandingZone
    from ml_platform.storage.postgres_io_manager import PostgresIOManager

    resources = prod.defs.resources
    assert isinstance(resources["landing"], GCSLandingZone)
    assert isinstance(resources["lake_io_manager"], GCSParquetIOManager)
    assert isinstance(resources["warehouse_io_manager"], PostgresIOManager)
    assert isinstance(prod.instance.run_storage, PostgresRunStorage)
    assert isinstance(prod.instance.event_log_storage, PostgresEventLogStorage)
    runs = prod.instance.get_runs()
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert len(runs) == DAYS + len(prod.runs)
    # Nothing went to the local deployment's folders.
    assert not prod.home.exists()


def test_sensor_requested_one_ingest_run_per_drop_in_the_landing_bucket(prod):
    assert sorted(r.partition_key for r in prod.requests) == _days()
    for drop in prod.drops[:3]:
        day = drop.partition.isoformat()
        meta = latest_materialization(prod.instance, "raw/shipments", day).metadata
        manifest = json.loads(drop.marker.read_text())
        sources = meta["ml_platform/source_files"].value
        assert {s["uri"]: s["sha256"] for s in sources} == {
            f"gs://{LANDING_BUCKET}/{LANDING_PREFIX}/shipments/{day}/{f['name']}": f["sha256"]
            for f in manifest["files"]
        }


# -- data: raw in the lake, clean in Postgres, features in the lake ----------------------------


def test_raw_in_the_lake_holds_every_landed_row(prod):
    lake = _lake()
    for drop in prod.drops:
        pointer = lake.current_version(prod.instance, RAW_SHIPMENTS, drop.partition.isoformat())
        assert pointer["uri"].startswith(f"gs://{LAKE_BUCKET}/{LAKE_PREFIX}/raw/shipments/")
        assert pointer["rows"] == drop.rows


def test_postgres_clean_tables_hold_the_landed_rows_minus_the_rejects(prod):
    clean = _counts(prod.pg, "clean.shipments")
    rejected = _counts(prod.pg, "clean.shipments_rejected")
    assert clean == {d.partition.isoformat(): d.rows - _bad(d) for d in prod.drops}
    assert rejected == {d.partition.isoformat(): _bad(d) for d in prod.drops}
    assert sum(rejected.values()) > 0
    day = prod.drops[-1].partition.isoformat()
    meta = latest_materialization(prod.instance, "clean/shipments", day).metadata
    assert meta["dagster/uri"].value == _pg_uri(prod.pg, "clean.shipments", day)
    assert meta["dagster/row_count"].value == clean[day]
    raw_read = _inputs(latest_materialization(prod.instance, "clean/shipments", day))
    assert raw_read["raw/shipments"][0]["uri"].startswith(f"gs://{LAKE_BUCKET}/")


def test_features_in_the_lake_read_clean_partitions_from_postgres(prod):
    lake = _lake()
    clean = _counts(prod.pg, "clean.shipments")
    for day in _days():
        pointer = lake.current_version(prod.instance, FEATURES_KEY, day)
        prefix = f"gs://{LAKE_BUCKET}/{LAKE_PREFIX}/features/shipment_features/{day}/"
        assert pointer["uri"].startswith(prefix)
        assert pointer["rows"] == clean[day]
    features = pl.read_parquet(
        lake.store().get(lake.current_version(prod.instance, FEATURES_KEY, _days()[-1])["key"])
    )
    assert features.height == clean[_days()[-1]]
    last = latest_materialization(prod.instance, "features/shipment_features", _days()[-1])
    reads = _inputs(last)["clean/shipments"]
    window = [(date.fromisoformat(_days()[-1]) - timedelta(days=i)).isoformat() for i in range(29)]
    assert [r["partition"] for r in reads] == sorted(window)
    assert {r["uri"] for r in reads} == {_pg_uri(prod.pg, "clean.shipments", d) for d in window}
    # Resolved to the Postgres instance's own materialization events.
    for read in reads[-3:]:
        record = prod.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["clean", "shipments"]), asset_partitions=[read["partition"]]
            ),
            limit=1,
        ).records[0]
        assert (read["storage_id"], read["run_id"]) == (record.storage_id, record.run_id)


# -- the model, its promotion and the quotes ---------------------------------------------------


def test_the_model_artifact_is_in_the_lake_with_its_recorded_sha256(prod):
    meta = _model(prod).metadata
    uri = meta["dagster/uri"].value
    assert uri.startswith(f"gs://{LAKE_BUCKET}/{LAKE_PREFIX}/models/price_model/{WEEK}/")
    assert uri.endswith(".skops")
    blob = prod.client.bucket(LAKE_BUCKET).get_blob(uri.removeprefix(f"gs://{LAKE_BUCKET}/"))
    assert blob is not None
    assert hashlib.sha256(blob.download_as_bytes()).hexdigest() == meta["ml_platform/sha256"].value
    assert meta["training_window"].value == {"first_day": "2026-01-05", "last_day": "2026-02-01"}
    reads = _inputs(_model(prod))["features/shipment_features"]
    assert len(reads) == 28
    assert all(r["uri"].startswith(f"gs://{LAKE_BUCKET}/{LAKE_PREFIX}/features/") for r in reads)


def test_the_champion_table_in_postgres_names_that_model(prod):
    model = _model(prod)
    rows = _sql(
        prod.pg,
        'SELECT model_week, model_run_id, model_uri, model_sha256 FROM "models"."champion"',
    )
    assert rows == [
        (
            WEEK,
            prod.runs["train"].run_id,
            model.metadata["dagster/uri"].value,
            model.metadata["ml_platform/sha256"].value,
        )
    ]
    champion = current_champion(prod.instance)
    assert champion["model_week"] == WEEK
    record = prod.instance.fetch_materializations(CHAMPION_KEY, limit=1).records[0]
    meta = record.asset_materialization.metadata
    assert meta["dagster/uri"].value == _pg_uri(prod.pg, "models.champion", None)
    model_read = _inputs(record.asset_materialization)["models/price_model"]
    assert [r["uri"] for r in model_read] == [model.metadata["dagster/uri"].value]


def test_prediction_rows_name_the_model_week_and_the_champion_materialization(prod):
    champion = current_champion(prod.instance)
    rows = _sql(
        prod.pg,
        "SELECT partition_date::text, model_week, model_sha256, champion_storage_id, count(*) "
        'FROM "predictions"."price_quotes" GROUP BY 1, 2, 3, 4 ORDER BY 1',
    )
    clean = _counts(prod.pg, "clean.shipments")
    assert rows == [
        (day, WEEK, champion["model_sha256"], champion["champion_storage_id"], clean[day])
        for day in PREDICTED
    ]
    quality = _sql(
        prod.pg,
        'SELECT partition_date::text, rows, model_week FROM "monitoring"."prediction_quality" '
        "WHERE scope = 'overall' ORDER BY 1",
    )
    assert quality == [(day, clean[day], WEEK) for day in PREDICTED]


def test_prediction_provenance_names_lake_features_and_the_postgres_champion(prod):
    champion = current_champion(prod.instance)
    for day in PREDICTED:
        inputs = _inputs(latest_materialization(prod.instance, "predictions/price_quotes", day))
        features = inputs["features/shipment_features"]
        assert [r["partition"] for r in features] == [day]
        assert (
            features[0]["uri"] == _lake().current_version(prod.instance, FEATURES_KEY, day)["uri"]
        )
        assert features[0]["uri"].startswith(f"gs://{LAKE_BUCKET}/")
        [champion_read] = inputs["models/champion"]
        assert champion_read["uri"] == _pg_uri(prod.pg, "models.champion", None)
        assert champion_read["storage_id"] == champion["champion_storage_id"]
        quality = _inputs(
            latest_materialization(prod.instance, "monitoring/prediction_quality", day)
        )
        assert quality["predictions/price_quotes"][0]["uri"] == _pg_uri(
            prod.pg, "predictions.price_quotes", day
        )
        assert quality["clean/shipments"][0]["uri"] == _pg_uri(prod.pg, "clean.shipments", day)
    # The champion's own provenance reaches the model artifact in the lake.
    assert champion["model_uri"].startswith(f"gs://{LAKE_BUCKET}/{LAKE_PREFIX}/models/")


# -- retention ---------------------------------------------------------------------------------


def _retention_report(prod: Prod) -> dict:
    event = next(
        e
        for e in prod.runs["retention"].all_events
        if e.is_successful_output and e.step_key == "remove_old_versions"
    )
    return event.event_specific_data.metadata["report"].value


def test_retention_removes_only_the_version_nothing_needs(prod):
    report = _retention_report(prod)
    first_run = prod.runs["data"].run_id
    prefix = (
        f"gs://{LAKE_BUCKET}/{LAKE_PREFIX}/features/shipment_features/"
        f"{SUPERSEDED_FEATURES_DAY}/{first_run}-"
    )
    [superseded] = [r["uri"] for r in report["removed"]]
    assert superseded.startswith(prefix) and superseded.endswith(".parquet")
    after = {b.name for b in prod.client.list_blobs(LAKE_BUCKET)}
    assert set(prod.before_retention["objects"]) - after == {
        superseded.removeprefix(f"gs://{LAKE_BUCKET}/")
    }


def test_after_retention_the_champion_and_predictions_still_load(prod):
    from ml_platform.provenance.champion import load_champion_model

    champion = current_champion(prod.instance)
    load_champion_model(champion, _lake().store())  # verifies the sha256 as well
    # Everything the champion and the predictions were made from, followed transitively
    # (model, its training features, their clean inputs, the raw those read), is still there.
    in_lake = {
        uri for uri in prod.before_retention["referenced"] if uri.startswith(f"gs://{LAKE_BUCKET}/")
    }
    assert any("/models/price_model/" in uri for uri in in_lake)
    assert any("/raw/shipments/" in uri for uri in in_lake)
    after = {f"gs://{LAKE_BUCKET}/{b.name}" for b in prod.client.list_blobs(LAKE_BUCKET)}
    assert in_lake <= after
    stored = prod.defs.load_asset_value(
        PREDICTIONS_KEY, partition_key=PREDICTED[0], instance=prod.instance
    )
    assert stored.height == _counts(prod.pg, "clean.shipments")[PREDICTED[0]]
    again = prod.runs["predict_again"]
    assert again.success, run_failure_message(again)
    rescored = prod.defs.load_asset_value(
        PREDICTIONS_KEY, partition_key=PREDICTED[-1], instance=prod.instance
    )
    assert set(rescored["model_week"]) == {WEEK}
    # Same champion, same features: the same quotes as before retention.
    columns = ["shipment_id", "predicted_price_eur", "model_sha256"]
    assert (
        rescored.select(columns)
        .sort("shipment_id")
        .equals(prod.before_retention["last_quotes"].select(columns).sort("shipment_id"))
    )
    quality = prod.defs.load_asset_value(
        QUALITY_KEY, partition_key=PREDICTED[-1], instance=prod.instance
    )
    assert quality.filter(pl.col("scope") == "overall")["rows"].to_list() == [rescored.height]
