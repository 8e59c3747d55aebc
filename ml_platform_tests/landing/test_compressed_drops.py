"""Compressed drops (.csv.gz, .csv.zst) through the real sensor and a real run, on both zones.

Same fingerprinting, quarantine and provenance as plain files: the recorded source sha256
is of the bytes as landed (compressed), and a corrupt archive is quarantined with a reason.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from ml_platform.assets.raw import RAW_SHIPMENTS
from ml_platform.sensors import FINGERPRINT_TAG
from ml_platform_tests.landing.drops import shipments_csv
from ml_platform_tests.landing.test_sensor_drops import Sensor, landing  # noqa: F401 (fixture)


def _zst(data: bytes) -> bytes:
    return pa.compress(data, "zstd", asbytes=True)


def _raw_record(instance, partition: str):
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_SHIPMENTS, asset_partitions=[partition]), limit=1
    ).records[0]


def test_gz_and_zst_drops_are_ingested_with_the_landed_bytes_as_provenance(
    instance,
    landing,  # noqa: F811
):
    day = "2026-01-08"
    files = {
        "a.csv.gz": gzip.compress(shipments_csv(day, rows=7, seed=1)),
        "b.csv.zst": _zst(shipments_csv(day, rows=5, seed=2)),
        "c.csv": shipments_csv(day, rows=3, seed=3),
    }
    landing.drop(day, files)
    sensor = Sensor(instance, landing)
    [request] = sensor.tick()
    result = sensor.launch(request)
    assert result is not None and result.success
    assert sensor.tick() == []  # ingested once per content

    meta = _raw_record(instance, day).asset_materialization.metadata
    assert meta["ml_platform/rows"].value == 15
    # The sensor's fingerprint (from listing) is the one raw recorded (from the bytes read).
    assert meta["ml_platform/drop_fingerprint"].value == request.tags[FINGERPRINT_TAG]
    sources = {Path(s["uri"]).name: s for s in meta["ml_platform/source_files"].value}
    assert {n: s["rows"] for n, s in sources.items()} == {
        "a.csv.gz": 7,
        "b.csv.zst": 5,
        "c.csv": 3,
    }
    for name, data in files.items():
        assert sources[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert sources[name]["size"] == len(data)

    # The same content recompressed differently is other bytes: a new drop, ingested again.
    landing.drop(day, {**files, "a.csv.gz": gzip.compress(shipments_csv(day, 7, 1), mtime=1)})
    [again] = sensor.tick()
    assert again.tags[FINGERPRINT_TAG] != request.tags[FINGERPRINT_TAG]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("bad.csv.gz", b"\x1f\x8b\x08\x00not really gzip at all", "corrupt gzip data"),
        ("cut.csv.gz", gzip.compress(shipments_csv("2026-01-09", rows=50))[:60], "corrupt gzip"),
        ("bad.csv.zst", b"(\xb5/\xfdgarbage", "corrupt zstd data"),
        ("latin1.csv.gz", gzip.compress(b"\xff\xfe not utf-8\n"), "not valid UTF-8"),
    ],
)
def test_a_corrupt_archive_is_quarantined_with_a_clear_reason(
    instance,
    landing,  # noqa: F811
    name,
    data,
    reason,
):
    day = "2026-01-09"
    landing.drop(day, {"good.csv.gz": gzip.compress(shipments_csv(day, rows=5)), name: data})
    sensor = Sensor(instance, landing)
    [request] = sensor.tick()
    result = sensor.launch(request)
    assert not result.success
    assert sensor.tick() == []
    assert f"waiting on a fix: {day}" in sensor.skip and reason in sensor.skip
    if landing.kind == "local":
        target = Path(landing.zone.quarantine_root) / "shipments" / day / name
        stored, why = target.read_bytes(), json.loads(Path(f"{target}.reason.json").read_text())
    else:
        bucket = landing.zone._gcs().bucket(landing.zone.bucket)
        key = f"quarantine/shipments/{day}/{name}"
        stored = bucket.blob(key).download_as_bytes()
        why = json.loads(bucket.blob(f"{key}.reason.json").download_as_bytes())
    assert stored == data  # quarantined as landed, not decompressed
    assert reason in why["reason"] and why["sha256"] == hashlib.sha256(data).hexdigest()
