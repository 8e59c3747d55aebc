"""The unchanged landing-zone sensor over a GCS bucket prefix, with real sensor evaluations."""

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import dagster as dg
import pytest
from dagster_gcp import GCSResource
from google.cloud import storage

from ml_platform.landing.gcs_zone import GCSLandingZone
from ml_platform.landing.zone import MARKER
from ml_platform.sensors import FINGERPRINT_TAG, landing_zone_sensor
from ml_platform_tests.fixtures.gcs import emulator_environment, start_emulator

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


@pytest.fixture(scope="module")
def landed(tmp_path_factory, gcs_emulator) -> Iterator[tuple[storage.Client, str]]:
    """1,502 data objects: one drop of 1,100 files, 20 drops of 20, 2 drops without markers.

    Uploaded once for the module, to an emulator of its own: the emulator's cost per write
    grows with the objects it holds, which would slow every other test down. (It depends on
    the session emulator only so that the environment variable is restored in order.)
    """
    log = tmp_path_factory.mktemp("gcs-landing") / "emulator.log"
    server = start_emulator(log)
    try:
        with emulator_environment(server.url):
            client = server.client()
            bucket = "landing-sensor"
            client.create_bucket(bucket)
            _upload(client, bucket, _landing_objects())
            _upload(client, bucket, {_key(p, MARKER): b"" for p in [BIG_DROP, *SMALL_DROPS]})
            yield client, bucket
    finally:
        server.stop()


def _landing_objects() -> dict[str, bytes]:
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
    assert sum(1 for k in objects if k.startswith(PREFIX)) == 1_502
    return objects


@pytest.mark.slow
def test_one_run_per_completed_drop_over_1500_objects(instance, landed):
    _, bucket = landed
    zone = _zone(bucket)
    assert len(zone.list_files(BIG_DROP)) == BIG_DROP_FILES  # past one 1,000-object page

    requests, cursor = _tick(instance, zone, None)
    requested = {r.partition_key for r in requests}
    assert requested == set(zone.completed_drops())
    assert {BIG_DROP, *SMALL_DROPS} <= requested
    assert INCOMPLETE[1] not in requested  # never completed by any test
    assert len(requests) == len(requested)
    assert len({r.run_key for r in requests}) == len(requests)
    assert all(r.tags[FINGERPRINT_TAG] for r in requests)

    again, cursor = _tick(instance, zone, cursor)
    assert again == []


@pytest.mark.slow
def test_a_drop_completing_later_triggers_then(instance, landed):
    client, bucket = landed
    zone = _zone(bucket)
    _, cursor = _tick(instance, zone, None)
    _upload(client, bucket, {_key(INCOMPLETE[0], MARKER): b""})
    requests, cursor = _tick(instance, zone, cursor)
    assert [r.partition_key for r in requests] == [INCOMPLETE[0]]
    assert _tick(instance, zone, cursor)[0] == []


@pytest.mark.slow
def test_redrop_with_new_content_triggers_once_and_same_content_never(instance, landed):
    gcs_client, landed = landed
    zone = _zone(landed)
    partition = SMALL_DROPS[3]
    first, cursor = _tick(instance, zone, None)
    original_key = next(r.run_key for r in first if r.partition_key == partition)

    # The producer rewrites the same bytes and the marker: new generations, same content.
    same = {_key(partition, f"part-{n:03d}.csv"): f"{partition},{n}\n".encode() for n in range(3)}
    _upload(gcs_client, landed, same)
    _upload(gcs_client, landed, {_key(partition, MARKER): b""})
    before = json.loads(cursor)["days"][partition]
    requests, cursor = _tick(instance, zone, cursor)
    assert requests == []
    after = json.loads(cursor)["days"][partition]
    assert after[0] != before[0]  # the change token moved...
    assert after[1] == before[1]  # ...but the content fingerprint did not

    # Now with a changed file: exactly one new run, with a new run key.
    _upload(gcs_client, landed, {_key(partition, "part-001.csv"): b"changed\n"})
    _upload(gcs_client, landed, {_key(partition, MARKER): b""})
    requests, cursor = _tick(instance, zone, cursor)
    assert [r.partition_key for r in requests] == [partition]
    assert requests[0].run_key != original_key
    assert _tick(instance, zone, cursor)[0] == []


@pytest.mark.slow
def test_change_token_is_the_marker_generation(landed):
    gcs_client, landed = landed
    zone = _zone(landed)
    before = zone.completed_drops()
    assert {BIG_DROP, *SMALL_DROPS} <= set(before)
    assert not set(before) & {INCOMPLETE[1], "elsewhere"}
    _upload(gcs_client, landed, {_key(SMALL_DROPS[0], MARKER): b""})
    after = zone.completed_drops()
    assert after[SMALL_DROPS[0]] != before[SMALL_DROPS[0]]
    assert {p: t for p, t in after.items() if p != SMALL_DROPS[0]} == {
        p: t for p, t in before.items() if p != SMALL_DROPS[0]
    }
