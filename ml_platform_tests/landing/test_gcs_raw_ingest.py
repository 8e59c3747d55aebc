"""raw/shipments reading drops from a GCS landing zone: quarantine and recorded sources."""

import json

import dagster as dg
import polars as pl
from dagster_gcp import GCSResource

from ml_platform.assets.raw import RAW_SHIPMENTS, raw_shipments
from ml_platform.landing.zone import MARKER
from ml_platform.sensors import FINGERPRINT_TAG
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform_tests.landing.drops import shipments_csv
from ml_platform_tests.landing.test_gcs_landing_sensor import _key, _tick, _upload, _zone


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
        lake.store().get(lake.current_version(instance, RAW_SHIPMENTS, partition)["key"])
    )
    assert stored.height == 20
    assert _tick(instance, zone, None)[0] == []


def test_only_server_errors_and_throttling_count_as_passing():
    from google.api_core import exceptions

    from ml_platform.landing.gcs_zone import _transient

    assert _transient(exceptions.ServiceUnavailable("busy"))
    assert _transient(exceptions.TooManyRequests("slow down"))
    assert _transient(exceptions.from_http_status(408, "request timeout"))
    assert not _transient(exceptions.Forbidden("no access"))
    assert not _transient(exceptions.NotFound("gone"))
