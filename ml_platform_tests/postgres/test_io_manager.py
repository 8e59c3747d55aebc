"""PostgresIOManager inside real Dagster runs: env config, range writes, metadata, provenance."""

import csv
import io
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_platform.landing.reader import REQUIRED_COLUMNS
from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.storage.postgres_io_manager import PostgresIOManager
from ml_platform.storage.postgres_tables import MissingPartitionError

from .helpers import day_frame, sql, store

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")
WINDOW = dg.TimeWindowPartitionMapping(start_offset=-2, end_offset=0)


@dg.asset(
    key=["clean", "days"],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="warehouse_io_manager",
    metadata={"partition_expr": "partition_date"},
)
def days_asset(context: dg.AssetExecutionContext) -> pl.DataFrame:
    frames = [day_frame(k, 10 + i) for i, k in enumerate(context.partition_keys)]
    return pl.concat(frames)


# The query plans window_asset was given, to see what its lazy input scans.
PLANS: list[str] = []


@dg.asset(
    key=["features", "window_sums"],
    partitions_def=PARTITIONS,
    ins={"days": dg.AssetIn(key=["clean", "days"], partition_mapping=WINDOW)},
    io_manager_key="warehouse_io_manager",
)
def window_asset(context: dg.AssetExecutionContext, days: pl.LazyFrame) -> pl.DataFrame:
    assert isinstance(days, pl.LazyFrame)
    PLANS.append(days.explain())
    return days.group_by("partition_date").agg(pl.len().alias("rows")).collect()


def _run_range(instance, assets, first: str, last: str) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(
        assets=assets,
        resources={"warehouse_io_manager": PostgresIOManager()},
        jobs=[dg.define_asset_job("j", partitions_def=PARTITIONS)],
    ).resolve_job_def("j")
    return job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )


def _materialization(instance, key, partition):
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    )
    return result.records[0]


def test_config_comes_from_environment_variables(pg_env):
    fields = PostgresIOManager.model_fields
    assert fields["password"].default == dg.EnvVar("ML_PLATFORM_PG_PASSWORD")
    manager = PostgresIOManager()
    with dg.build_resources({"io": manager}) as resources:
        assert resources.io.port == pg_env.port and resources.io.password == pg_env.password


def test_a_single_run_backfill_writes_its_range_with_per_partition_metadata(pg_env, instance):
    result = _run_range(instance, [days_asset], "2026-01-01", "2026-01-05")
    assert result.success
    rows = sql(
        pg_env,
        "SELECT partition_date::text, count(*) FROM clean.days GROUP BY 1 ORDER BY 1",
    )
    assert rows == [(f"2026-01-0{i + 1}", 10 + i) for i in range(5)]
    record = _materialization(instance, ["clean", "days"], "2026-01-03")
    meta = record.asset_materialization.metadata
    assert meta["dagster/table_name"].value == "clean.days"
    assert meta["dagster/row_count"].value == 12
    assert meta["ml_platform/run_id"].value == result.run_id
    assert meta["dagster/uri"].value == (
        f"postgresql://{pg_env.host}:{pg_env.port}/{pg_env.dbname}/clean.days#partition=2026-01-03"
    )
    assert meta["ml_platform/write_range"].value == {
        "first": "2026-01-01",
        "last": "2026-01-05",
        "partitions": 5,
    }
    version = store(pg_env).versions("clean", "days", ["2026-01-03"])[0]
    assert meta["ml_platform/content_hash"].value == version.content_hash
    assert meta["ml_platform/txid"].value == str(version.txid)


def test_reads_record_exactly_which_rows_a_window_was_made_from(pg_env, instance):
    first = _run_range(instance, [days_asset], "2026-01-01", "2026-01-05")
    # Re-write one day in a later run: the window must name that run for that day.
    again = dg.materialize(
        [days_asset],
        partition_key="2026-01-04",
        instance=instance,
        resources={"warehouse_io_manager": PostgresIOManager()},
    )
    result = dg.materialize(
        [days_asset, window_asset],
        selection=[window_asset],
        partition_key="2026-01-05",
        instance=instance,
        resources={"warehouse_io_manager": PostgresIOManager()},
    )
    assert result.success
    out = store(pg_env).read("features", "window_sums", ["2026-01-05"])[0]
    assert out.sort("partition_date")["rows"].to_list() == [12, 10, 14]  # 01-04 re-written alone
    # The window's rows were spooled to a local file and scanned lazily, not read whole into
    # memory; the file went with the step's resources.
    scanned = re.search(r"Ipc SCAN \[([^,\]]+)\]", PLANS[-1])
    assert scanned, PLANS[-1]
    spooled = Path(scanned.group(1))
    assert spooled.parent.name.startswith("ml-platform-spool-") and not spooled.parent.exists()
    meta = _materialization(instance, ["features", "window_sums"], "2026-01-05")
    inputs = meta.asset_materialization.metadata[INPUTS_METADATA_KEY].value
    reads = {r["partition"]: r for r in inputs[0]["partitions"]}
    assert inputs[0]["asset"] == "clean/days" and sorted(reads) == [
        "2026-01-03",
        "2026-01-04",
        "2026-01-05",
    ]
    assert reads["2026-01-03"]["run_id"] == first.run_id
    assert reads["2026-01-04"]["run_id"] == again.run_id
    assert reads["2026-01-04"]["uri"].endswith("/clean.days#partition=2026-01-04")
    # Resolved to the writing run's Dagster event. (On the SQLite instance that id is the
    # run shard's, not the index shard's fetch_materializations returns; see reads.py.)
    assert reads["2026-01-04"]["storage_id"] is not None


def test_read_provenance_names_the_materialization_event_on_a_postgres_instance(
    pg_env, pg_instance
):
    """With Dagster's storage on Postgres, the recorded storage id is the event's own id."""
    _run_range(pg_instance, [days_asset], "2026-01-01", "2026-01-03")
    result = dg.materialize(
        [days_asset, window_asset],
        selection=[window_asset],
        partition_key="2026-01-03",
        instance=pg_instance,
        resources={"warehouse_io_manager": PostgresIOManager()},
    )
    assert result.success
    meta = _materialization(pg_instance, ["features", "window_sums"], "2026-01-03")
    reads = meta.asset_materialization.metadata[INPUTS_METADATA_KEY].value[0]["partitions"]
    for read in reads:
        written = _materialization(pg_instance, ["clean", "days"], read["partition"])
        assert read["storage_id"] == written.storage_id


def test_reading_a_partition_never_written_fails_clearly(pg_env, instance):
    _run_range(instance, [days_asset], "2026-01-01", "2026-01-02")
    with pytest.raises(MissingPartitionError, match=r"clean\.days partition\(s\) \['2026-01-03'\]"):
        dg.materialize(
            [days_asset, window_asset],
            selection=[window_asset],
            partition_key="2026-01-03",
            instance=instance,
            resources={"warehouse_io_manager": PostgresIOManager()},
        )


def test_a_stored_partition_loads_outside_a_run(pg_env, instance):
    """Definitions.load_asset_value (notebooks, analysts) reads without recording provenance."""
    _run_range(instance, [days_asset], "2026-01-01", "2026-01-02")
    defs = dg.Definitions(
        assets=[days_asset], resources={"warehouse_io_manager": PostgresIOManager()}
    )
    loaded = defs.load_asset_value(days_asset.key, partition_key="2026-01-02", instance=instance)
    assert loaded.height == 11
    assert loaded["partition_date"].unique().to_list() == [date(2026, 1, 2)]


# -- the platform's own asset graph with the analyst tables on Postgres ---------------------
LANES = [("Hamburg", "DE", "Rotterdam", "NL", 470.0), ("Lyon", "FR", "Milan", "IT", 440.0)]


def _write_drop(landing_root, day: date, rows: int) -> None:
    folder = landing_root / "shipments" / day.isoformat()
    folder.mkdir(parents=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(REQUIRED_COLUMNS)
    for i in range(rows):
        o_city, o_cc, d_city, d_cc, km = LANES[i % len(LANES)]
        booked = datetime(day.year, day.month, day.day, 8) + timedelta(minutes=i)
        writer.writerow(
            [
                f"{day:%Y%m%d}-{i}",
                booked.isoformat() + "Z",
                o_city,
                o_cc,
                d_city,
                d_cc,
                km,
                1000 + i,
                10,
                "road",
                "acme",
                500 + i,
            ]
        )
    (folder / "part-0.csv").write_text(buf.getvalue())
    (folder / "_SUCCESS").write_text("")


@pytest.mark.slow
def test_the_asset_graph_runs_with_the_analyst_tables_on_postgres(
    pg_env, platform_home, instance, monkeypatch
):
    monkeypatch.setenv("ML_PLATFORM_START_DATE", "2026-01-01")
    start = date(2026, 1, 1)
    for i in range(4):
        _write_drop(platform_home.landing, start + timedelta(days=i), rows=20)
    from ml_platform.definitions import build_definitions

    base = build_definitions()
    # The local deployment's landing zone and lake, with the analyst tables on Postgres.
    resources = {**base.resources, "warehouse_io_manager": PostgresIOManager()}
    defs = dg.Definitions(
        assets=base.assets, jobs=base.jobs, resources=resources, executor=base.executor
    )
    job = defs.resolve_job_def("data_pipeline")
    result = job.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-04",
        },
    )
    assert result.success
    clean = store(pg_env).read("clean", "shipments", ["2026-01-01", "2026-01-04"])[0]
    assert clean.height == 40 and clean.schema["booked_at"] == pl.Datetime("us", "UTC")
    assert sql(pg_env, "SELECT count(*) FROM clean.shipments") == [(80,)]
    assert sql(pg_env, "SELECT count(*) FROM clean.shipments_rejected") == [(0,)]
    # features live in the lake (Parquet) and were computed from the Postgres window.
    feat = _materialization(instance, ["features", "shipment_features"], "2026-01-04")
    inputs = feat.asset_materialization.metadata[INPUTS_METADATA_KEY].value
    assert {r["partition"] for r in inputs[0]["partitions"]} == {
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
    }
    assert all(r["uri"].startswith("postgresql://") for r in inputs[0]["partitions"])
    assert all(r["run_id"] == result.run_id for r in inputs[0]["partitions"])


def test_the_prod_deployment_puts_the_warehouse_on_postgres(platform_home, monkeypatch):
    from ml_platform.definitions import build_definitions
    from ml_platform.landing.gcs_zone import GCSLandingZone
    from ml_platform.storage.gcs_io_manager import GCSParquetIOManager

    monkeypatch.setenv("ML_PLATFORM_DEPLOYMENT", "prod")
    monkeypatch.setenv("ML_PLATFORM_GCS_BUCKET", "lake")
    monkeypatch.setenv("ML_PLATFORM_LANDING_BUCKET", "landing")
    resources = build_definitions().resources
    assert isinstance(resources["warehouse_io_manager"], PostgresIOManager)
    assert isinstance(resources["lake_io_manager"], GCSParquetIOManager)
    assert isinstance(resources["landing"], GCSLandingZone)
