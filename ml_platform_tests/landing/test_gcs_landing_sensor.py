"""The unchanged landing-zone sensor over a GCS bucket prefix, with real sensor evaluations."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import dagster as dg
import polars as pl
import pytest
from dagster_gcp import GCSResource

from ml_platform.assets.raw import RAW_SHIPMENTS, raw_shipments
from ml_platform.landing.gcs_zone import GCSLandingZone
from ml_platform.landing.zone import MARKER
from ml_platform.sensors import FINGERPRINT_TAG, landing_zone_sensor
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform_tests.landing.drops import shipments_csv

PREFIX = "incoming/landing"
BIG_DROP = "2026-02-01"
BIG_DROP_FILES = 1_100
SMALL_DROPS = [(date(2026, 2, 2) + timedelta(days=i)).isoformat() for i in range(20)]
SMALL_DROP_FILES = 20
INCOMPLETE = ["2026-03-01", "2026-03-02"]


def _zone(bucket: str) -> GCSLandingZone:
    return GCSLandingZone(
        gcs=GCSResource(), bucket=bucket, prefix=PREFIX, quarantine_prefix="quarantine"
    )


def _key(partition: str, name: str) -> str:
    return f"{PREFIX}/shipments/{partition}/{name}"


def _upload(client, bucket: str, objects: dict[str, bytes]) -> None:
    b = client.bucket(bucket)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: b.blob(kv[0]).upload_from_string(kv[1]), objects.items()))


def _tick(instance, zone, cursor):
    # Nested resources (GCSResource) are initialized as generators: open the context.
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"landing": zone}
    ) as context:
        result = landing_zone_sensor(context)
    return result.run_requests or [], result.cursor


@pytest.fixture
def landed(gcs_client, gcs_bucket):
    """1,500 data objects: one drop of 1,100 files, 20 drops of 20, 2 drops without markers."""
    objects = {}
    for n in range(BIG_DROP_FILES):
        objects[_key(BIG_DROP, f"part-{n:05d}.csv")] = f"id,{n}\n".encode()
    for partition in SMALL_DROPS:
        for n in range(SMALL_DROP_FILES):
            objects[_key(partition, f"part-{n:03d}.csv")] = f"{partition},{n}\n".encode()
    for partition in INCOMPLETE:
        objects[_key(partition, "part-000.csv")] = b"not yet\n"
    # Outside the dataset prefix: must never be seen.
    objects["elsewhere/shipments/2026-02-01/_SUCCESS"] = b""
    _upload(gcs_client, gcs_bucket, objects)
    data_objects = sum(1 for k in objects if k.startswith(PREFIX))
    assert data_objects == 1_502
    _upload(gcs_client, gcs_bucket, {_key(p, MARKER): b"" for p in [BIG_DROP, *SMALL_DROPS]})
    return gcs_bucket


def test_one_run_per_completed_drop_over_1500_objects(instance, landed):
    zone = _zone(landed)
    assert len(zone.list_files(BIG_DROP)) == BIG_DROP_FILES  # past one 1,000-object page

    requests, cursor = _tick(instance, zone, None)
    assert sorted(r.partition_key for r in requests) == sorted([BIG_DROP, *SMALL_DROPS])
    assert len({r.run_key for r in requests}) == len(requests)
    assert all(r.tags[FINGERPRINT_TAG] for r in requests)

    again, cursor = _tick(instance, zone, cursor)
    assert again == []


def test_a_drop_completing_later_triggers_then(instance, landed, gcs_client):
    zone = _zone(landed)
    _, cursor = _tick(instance, zone, None)
    _upload(gcs_client, landed, {_key(INCOMPLETE[0], MARKER): b""})
    requests, cursor = _tick(instance, zone, cursor)
    assert [r.partition_key for r in requests] == [INCOMPLETE[0]]
    assert _tick(instance, zone, cursor)[0] == []


def test_redrop_with_new_content_triggers_once_and_same_content_never(instance, landed, gcs_client):
    zone = _zone(landed)
    partition = SMALL_DROPS[3]
    first, cursor = _tick(instance, zone, None)
    original_key = next(r.run_key for r in first if r.partition_key == partition)

    # The producer rewrites the same bytes and the marker: new generations, same content.
    same = {_key(partition, f"part-{n:03d}.csv"): f"{partition},{n}\n".encode() for n in range(3)}
    _upload(gcs_client, landed, same)
    _upload(gcs_client, landed, {_key(partition, MARKER): b""})
    before = json.loads(cursor)[partition]
    requests, cursor = _tick(instance, zone, cursor)
    assert requests == []
    after = json.loads(cursor)[partition]
    assert after[0] != before[0]  # the change token moved...
    assert after[1] == before[1]  # ...but the content fingerprint did not

    # Now with a changed file: exactly one new run, with a new run key.
    _upload(gcs_client, landed, {_key(partition, "part-001.csv"): b"changed\n"})
    _upload(gcs_client, landed, {_key(partition, MARKER): b""})
    requests, cursor = _tick(instance, zone, cursor)
    assert [r.partition_key for r in requests] == [partition]
    assert requests[0].run_key != original_key
    assert _tick(instance, zone, cursor)[0] == []


def test_change_token_is_the_marker_generation(landed, gcs_client):
    zone = _zone(landed)
    before = zone.completed_drops()
    assert set(before) == {BIG_DROP, *SMALL_DROPS}
    _upload(gcs_client, landed, {_key(SMALL_DROPS[0], MARKER): b""})
    after = zone.completed_drops()
    assert after[SMALL_DROPS[0]] != before[SMALL_DROPS[0]]
    assert {p: t for p, t in after.items() if p != SMALL_DROPS[0]} == {
        p: t for p, t in before.items() if p != SMALL_DROPS[0]
    }


def test_unreadable_objects_are_quarantined_with_the_reason(instance, gcs_client, gcs_bucket):
    partition = "2026-03-05"
    good = shipments_csv(partition, rows=10)
    _upload(
        gcs_client,
        gcs_bucket,
        {
            _key(partition, "good.csv"): good,
            _key(partition, "bad.csv"): b"\xff\xfe not utf-8",
        },
    )
    _upload(gcs_client, gcs_bucket, {_key(partition, MARKER): b""})
    zone = _zone(gcs_bucket)
    lake = GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=gcs_bucket, gcs_prefix="lake")
    result = dg.materialize(
        [raw_shipments],
        partition_key=partition,
        resources={"landing": zone, "lake_io_manager": lake},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    bucket = gcs_client.bucket(gcs_bucket)
    copied = bucket.get_blob(f"quarantine/shipments/{partition}/bad.csv")
    assert copied is not None and copied.download_as_bytes() == b"\xff\xfe not utf-8"
    reason = json.loads(
        bucket.blob(f"quarantine/shipments/{partition}/bad.csv.reason.json").download_as_bytes()
    )
    assert "not valid UTF-8" in reason["reason"]
    assert reason["source_uri"] == f"gs://{gcs_bucket}/{_key(partition, 'bad.csv')}"
    assert bucket.get_blob(f"quarantine/shipments/{partition}/good.csv") is None
    # The original stays where the producer put it.
    assert bucket.get_blob(_key(partition, "bad.csv")) is not None


def test_raw_reads_a_gcs_drop_and_records_its_objects(instance, gcs_client, gcs_bucket):
    partition = "2026-03-06"
    files = {
        _key(partition, "a.csv"): shipments_csv(partition, rows=15, seed=1),
        _key(partition, "b.csv"): shipments_csv(partition, rows=5, seed=2),
    }
    _upload(gcs_client, gcs_bucket, files)
    _upload(gcs_client, gcs_bucket, {_key(partition, MARKER): b""})
    zone = _zone(gcs_bucket)
    requests, _ = _tick(instance, zone, None)
    assert [r.partition_key for r in requests] == [partition]

    lake = GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=gcs_bucket, gcs_prefix="lake")
    dg.materialize(
        [raw_shipments],
        partition_key=partition,
        resources={"landing": zone, "lake_io_manager": lake},
        instance=instance,
        tags=requests[0].tags,
    )
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_SHIPMENTS, asset_partitions=[partition]), limit=1
    ).records[0]
    meta = record.asset_materialization.metadata
    # The sensor's fingerprint (from listing checksums) equals the one raw recorded (from bytes
    # it read): the next tick after a cursor reset does not ingest the drop again.
    assert meta["ml_platform/drop_fingerprint"].value == requests[0].tags[FINGERPRINT_TAG]
    sources = meta["ml_platform/source_files"].value
    assert [s["uri"] for s in sources] == [f"gs://{gcs_bucket}/{k}" for k in sorted(files)]
    stored = pl.read_parquet(
        lake.store().get(lake.current_version(RAW_SHIPMENTS, partition)["key"])
    )
    assert stored.height == 20
    assert _tick(instance, zone, None)[0] == []
