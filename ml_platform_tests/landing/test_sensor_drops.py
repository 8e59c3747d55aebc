"""The landing sensor over both zones: every completed drop is ingested once per content.

Real ticks of the real sensor on a real instance; the requests are launched the way the
daemon launches them (a request whose run key already has a run is dropped).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster_gcp import GCSResource

from ml_platform.assets.raw import RAW_SHIPMENTS, raw_shipments
from ml_platform.landing.gcs_zone import GCSLandingZone
from ml_platform.landing.zone import MARKER, LandingZone, LocalLandingZone
from ml_platform.sensors import FINGERPRINT_METADATA, FINGERPRINT_TAG, landing_zone_sensor
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform_tests.landing.drops import shipments_csv

RUN_KEY_TAG = "dagster/run_key"
BAD = b"\xff\xfe not utf-8\n"


@dataclass
class Landing:
    """One landing zone under test and how a producer writes into it."""

    kind: str
    zone: LandingZone
    lake: dg.ConfigurableIOManager
    put: Callable[[str, str, bytes], None] | None
    defs: dg.Definitions

    def drop(self, partition: str, files: dict[str, bytes]) -> None:
        """A complete drop: the data files, then the marker last."""
        for name, data in files.items():
            self.put(partition, name, data)
        self.put(partition, MARKER, b"")


class Sensor:
    """Ticks the sensor like the daemon (carrying the cursor) and launches what it requests."""

    def __init__(self, instance: dg.DagsterInstance, landing: Landing) -> None:
        self.instance, self.landing = instance, landing
        self.cursor: str | None = None
        self.skip: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"landing": self.landing.zone},
            definitions=self.landing.defs,
        ) as context:
            data = landing_zone_sensor.evaluate_tick(context)
        self.cursor, self.skip = data.cursor, data.skip_message
        return list(data.run_requests or [])

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult | None:
        """Run the request, unless its run key already has a run (the daemon drops it)."""
        if self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key})):
            return None
        return dg.materialize(
            [raw_shipments],
            partition_key=request.partition_key,
            resources={"landing": self.landing.zone, "lake_io_manager": self.landing.lake},
            instance=self.instance,
            tags={**request.tags, RUN_KEY_TAG: request.run_key},
            raise_on_error=False,
        )


@pytest.fixture(params=["local", "gcs"])
def landing(request, defs) -> Landing:
    if request.param == "local":
        zone = defs.resources["landing"]

        def put(partition: str, name: str, data: bytes) -> None:
            path = Path(zone.root) / zone.dataset / partition / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return Landing("local", zone, defs.resources["lake_io_manager"], put, defs)
    client = request.getfixturevalue("gcs_client")
    bucket = request.getfixturevalue("gcs_bucket")
    zone = GCSLandingZone(gcs=GCSResource(), bucket=bucket, prefix="landing")

    def put(partition: str, name: str, data: bytes) -> None:
        client.bucket(bucket).blob(f"landing/shipments/{partition}/{name}").upload_from_string(data)

    lake = GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=bucket, gcs_prefix="lake")
    return Landing("gcs", zone, lake, put, defs)


def _ingested_fingerprint(instance: dg.DagsterInstance, partition: str) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_SHIPMENTS, asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.metadata[FINGERPRINT_METADATA].value


def test_drop_dated_ahead_of_the_last_partition_is_ingested_once_its_day_exists(instance, landing):
    for day in ("2026-01-02", "2026-01-03", "2026-01-05"):
        landing.drop(day, {"a.csv": shipments_csv(day, rows=5)})
    sensor = Sensor(instance, landing)
    # The partitions' "now": 2026-01-03 is the last daily partition, 2026-01-05 is ahead.
    with dg.partition_loading_context(effective_dt=datetime(2026, 1, 3, 12, tzinfo=UTC)):
        assert sorted(r.partition_key for r in sensor.tick()) == ["2026-01-02", "2026-01-03"]
        assert sensor.tick() == []
        assert "2026-01-05" in sensor.skip
    with dg.partition_loading_context(effective_dt=datetime(2026, 1, 5, 0, 30, tzinfo=UTC)):
        requests = sensor.tick()
        assert [r.partition_key for r in requests] == ["2026-01-05"]
        assert sensor.launch(requests[0]).success
        assert sensor.tick() == []
    assert _ingested_fingerprint(instance, "2026-01-05") == requests[0].tags[FINGERPRINT_TAG]


def test_a_redrop_back_to_earlier_content_is_ingested_again(instance, landing):
    day = "2026-01-04"
    a = {"a.csv": shipments_csv(day, rows=10, seed=1)}
    b = {"a.csv": shipments_csv(day, rows=12, seed=2)}
    sensor = Sensor(instance, landing)
    launched = []
    for content in (a, b, a):
        landing.drop(day, content)
        before = sensor.cursor
        requests = sensor.tick()
        assert [r.partition_key for r in requests] == [day]
        # The same tick evaluated again (its cursor not yet stored) asks for the same run.
        replay = Sensor(instance, landing)
        replay.cursor = before
        assert [r.run_key for r in replay.tick()] == [requests[0].run_key]
        result = sensor.launch(requests[0])
        assert result is not None, f"run key {requests[0].run_key} repeats an earlier run's"
        assert result.success
        launched.append(requests[0].tags[FINGERPRINT_TAG])
        assert sensor.tick() == []
    assert launched[0] == launched[2] != launched[1]
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": day}))
    assert len(runs) == 3
    assert _ingested_fingerprint(instance, day) == launched[0]


def test_a_failed_drop_waits_for_a_fixed_redrop(instance, landing):
    day = "2026-01-06"
    landing.drop(day, {"good.csv": shipments_csv(day, rows=5), "bad.csv": BAD})
    sensor = Sensor(instance, landing)
    [request] = sensor.tick()
    failed = sensor.launch(request)
    assert not failed.success

    assert sensor.tick() == []
    assert f"waiting on a fix: {day} (run {failed.run_id[:8]} failed" in sensor.skip
    assert "not valid UTF-8" in sensor.skip
    # The producer re-drops the same broken content: still waiting, nothing requested.
    landing.drop(day, {"good.csv": shipments_csv(day, rows=5), "bad.csv": BAD})
    assert sensor.tick() == []
    assert f"waiting on a fix: {day}" in sensor.skip
    # A sensor that lost its cursor learns the same from the run records.
    fresh = Sensor(instance, landing)
    assert fresh.tick() == []
    assert f"waiting on a fix: {day}" in fresh.skip

    landing.drop(day, {"good.csv": shipments_csv(day, rows=5), "bad.csv": shipments_csv(day)})
    [retry] = sensor.tick()
    assert retry.run_key != request.run_key
    assert sensor.launch(retry).success
    assert sensor.tick() == []
    assert "waiting on a fix" not in sensor.skip


def test_a_cursor_from_before_the_fix_no_longer_hides_a_drop_dated_ahead(instance, landing):
    day = "2026-01-07"
    landing.drop(day, {"a.csv": shipments_csv(day, rows=5)})
    sensor = Sensor(instance, landing)
    # The old sensor stored [token, None] for a drop whose partition did not exist yet.
    sensor.cursor = json.dumps({day: [landing.zone.completed_drops()[day], None]})
    assert [r.partition_key for r in sensor.tick()] == [day]


class VanishingZone(LocalLandingZone):
    """The real local zone; a producer deletes one file right after it was listed."""

    victim: str = ""

    def list_files(self, partition):
        files = super().list_files(partition)
        doomed = Path(self.root) / self.dataset / partition / self.victim
        if doomed.exists():
            doomed.unlink()
        return files


def _unreadable_entry(folder: Path, how: str) -> str:
    """Make folder/bad.csv unreadable the way `how` says; returns the expected problem."""
    bad = folder / "bad.csv"
    if how == "permission":
        if os.geteuid() == 0:
            # Root reads any mode-000 file; a write-only sysctl denies reads even to root.
            bad.symlink_to("/proc/sys/vm/compact_memory")
        else:
            bad.write_bytes(b"x")
            bad.chmod(0)
        with pytest.raises(PermissionError):
            bad.read_bytes()
        return "Permission denied"
    if how == "fifo":
        os.mkfifo(bad)
        return "not a regular file"
    if how == "dangling":
        bad.symlink_to(folder / "gone.csv")
        return "No such file or directory"
    bad.write_bytes(shipments_csv(folder.name))  # "vanished": deleted after listing
    return "No such file or directory"


@pytest.mark.parametrize("how", ["permission", "fifo", "dangling", "vanished"])
def test_an_unreadable_local_file_holds_back_only_its_drop(defs, instance, capfd, how):
    zone = defs.resources["landing"]
    if how == "vanished":
        zone = VanishingZone(root=zone.root, quarantine_root=zone.quarantine_root, victim="bad.csv")
    landing = Landing("local", zone, defs.resources["lake_io_manager"], None, defs)
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        folder = Path(zone.root) / "shipments" / day
        folder.mkdir(parents=True)
        (folder / "good.csv").write_bytes(shipments_csv(day, rows=5))
        if day == "2026-01-02":
            problem = _unreadable_entry(folder, how)
        (folder / MARKER).write_bytes(b"")
    sensor = Sensor(instance, landing)
    assert sorted(r.partition_key for r in sensor.tick()) == ["2026-01-01", "2026-01-03"]
    logged = capfd.readouterr().err  # with requests to return, the tick logs its problems
    assert any("2026-01-02" in line and problem in line for line in logged.splitlines())

    if how != "vanished":
        assert sensor.tick() == []  # retried every tick, still unreadable
        assert "2026-01-02" in sensor.skip and problem in sensor.skip, sensor.skip
        (Path(zone.root) / "shipments" / "2026-01-02" / "bad.csv").unlink()
    [request] = sensor.tick()  # readable now: ingested
    assert request.partition_key == "2026-01-02"
    assert sensor.launch(request).success


class GoneDuringReadZone(GCSLandingZone):
    """The real GCS zone; a producer deletes one object right after it was listed.

    Content ids are dropped from the listing to model composite objects, which real GCS
    lists without an md5 (so the sensor must read them); the emulator computes one anyway.
    """

    victim: str = ""

    def list_files(self, partition):
        files = [replace(f, content_id=None) for f in super().list_files(partition)]
        blob = self._gcs().bucket(self.bucket).blob(self._drop_prefix(partition) + self.victim)
        if blob.exists():
            blob.delete()
        return files


def test_a_gcs_object_gone_during_the_read_holds_back_only_its_drop(
    defs, instance, gcs_bucket, gcs_client, capfd
):
    zone = GoneDuringReadZone(
        gcs=GCSResource(), bucket=gcs_bucket, prefix="landing", victim="late.csv"
    )
    lake = GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=gcs_bucket, gcs_prefix="lake")
    landing = Landing("gcs", zone, lake, None, defs)
    bucket = gcs_client.bucket(gcs_bucket)
    for day in ("2026-01-01", "2026-01-02"):
        files = {"good.csv": shipments_csv(day, rows=5), MARKER: b""}
        if day == "2026-01-02":
            files = {"late.csv": shipments_csv(day, rows=3, seed=3), **files}
        for name, data in files.items():
            bucket.blob(f"landing/shipments/{day}/{name}").upload_from_string(data)
    sensor = Sensor(instance, landing)
    assert [r.partition_key for r in sensor.tick()] == ["2026-01-01"]
    logged = capfd.readouterr().err  # with requests to return, the tick logs its problems
    assert any("2026-01-02" in line and "late.csv" in line for line in logged.splitlines())
    [request] = sensor.tick()  # the drop as it now stands
    assert request.partition_key == "2026-01-02"
    assert sensor.launch(request).success


def test_settled_days_of_past_months_fold_into_their_months_row(instance, landing, monkeypatch):
    """Dagster stores the cursor with every tick: it must not grow by an entry per day."""
    days = [f"2026-01-{d:02d}" for d in range(1, 32)] + ["2026-02-01", "2026-02-02"]
    for day in days:
        landing.drop(day, {"a.csv": shipments_csv(day, rows=3)})
    # Ingested by a backfill (one range run), as the sensor then finds them.
    backfill = dg.materialize(
        [raw_shipments],
        resources={"landing": landing.zone, "lake_io_manager": landing.lake},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": days[0],
            "dagster/asset_partition_range_end": days[-1],
        },
    )
    assert backfill.success
    hashed = []
    fingerprint = type(landing.zone).fingerprint
    monkeypatch.setattr(
        type(landing.zone),
        "fingerprint",
        lambda zone, partition: hashed.append(partition) or fingerprint(zone, partition),
    )
    sensor = Sensor(instance, landing)
    assert sensor.tick() == []
    cursor = json.loads(sensor.cursor)
    assert cursor["days"] == {} and sorted(cursor["months"]) == ["2026-01", "2026-02"]
    assert len(sensor.cursor) < 900  # 33 day entries took about 4 KB
    hashed.clear()
    assert sensor.tick() == [] and hashed == []  # nothing hashed while nothing moved

    # A producer re-drops a day: marker off first, files, marker back last.
    day = "2026-01-15"
    marker = (
        Path(landing.zone.root) / "shipments" / day / MARKER if landing.kind == "local" else None
    )
    if marker is not None:
        marker.unlink()
        assert sensor.tick() == [] and hashed == []  # a drop gone is no work
    landing.drop(day, {"a.csv": shipments_csv(day, rows=4, seed=3)})
    [request] = sensor.tick()
    assert request.partition_key == day
    assert hashed == [day]  # the one day that moved, not its month
    assert sensor.launch(request).success
    assert sensor.tick() == []
    assert json.loads(sensor.cursor)["days"] == {}  # settled again, folded again


def test_a_cursor_of_one_entry_per_day_still_reads(instance, landing):
    day = "2026-01-05"
    landing.drop(day, {"a.csv": shipments_csv(day, rows=3)})
    sensor = Sensor(instance, landing)
    [request] = sensor.tick()
    sensor.cursor = json.dumps(json.loads(sensor.cursor)["days"])  # the earlier, flat format
    assert sensor.tick() == []  # its request still stands: nothing asked twice


def test_a_folded_day_redropped_to_content_that_failed_before_runs_again(instance, landing):
    """As for a day never folded: content that differs from what raw holds gets a run."""
    day = "2026-01-10"
    good = {"a.csv": shipments_csv(day, rows=5, seed=1), "b.csv": shipments_csv(day, rows=2)}
    broken = {"a.csv": shipments_csv(day, rows=5, seed=1), "b.csv": BAD}
    sensor = Sensor(instance, landing)
    landing.drop(day, good)
    [request] = sensor.tick()
    assert sensor.launch(request).success
    landing.drop(day, broken)
    [request] = sensor.tick()
    assert not sensor.launch(request).success
    landing.drop(day, good)  # back to what raw holds: no run; the day settles and folds
    assert sensor.tick() == []
    assert json.loads(sensor.cursor)["days"] == {}

    landing.drop(day, broken)  # a new drop of the content whose run failed
    [again] = sensor.tick()
    assert again.partition_key == day and again.run_key != request.run_key


def test_an_empty_listing_keeps_the_folded_days(instance, landing, monkeypatch):
    day = "2026-01-12"
    landing.drop(day, {"a.csv": shipments_csv(day, rows=3)})
    sensor = Sensor(instance, landing)
    [request] = sensor.tick()
    assert sensor.launch(request).success
    assert sensor.tick() == [] and json.loads(sensor.cursor)["days"] == {}
    folded = json.loads(sensor.cursor)["months"]
    monkeypatch.setattr(type(landing.zone), "completed_drops", lambda zone: {})
    assert sensor.tick() == []  # the zone briefly lists nothing
    assert json.loads(sensor.cursor)["months"] == folded
