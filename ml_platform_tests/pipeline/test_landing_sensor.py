"""The landing sensor requests exactly one run per completed drop, and one per changed re-drop."""

from __future__ import annotations

import os
import shutil
from datetime import date

from ml_platform.demo.generator import GeneratorConfig, generate_drops, write_drop
from ml_platform.landing.zone import MARKER, LocalLandingZone
from ml_platform_tests.pipeline.helpers import SensorDriver

START = date(2026, 1, 1)
SMALL = GeneratorConfig(rows_per_day=200, files_per_drop=2)


def test_one_run_per_completed_drop_and_never_again(defs, instance, platform_home):
    generate_drops(platform_home.landing, START, 5, SMALL)
    sensor = SensorDriver(defs, instance)

    first = sensor.tick()
    assert sorted(r.partition_key for r in first) == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
        "2026-01-04",
        "2026-01-05",
    ]
    assert len({r.run_key for r in first}) == 5
    for request in first:
        assert sensor.run(request).success
    assert sensor.tick() == []
    assert sensor.tick() == []


def test_redrop_with_changed_content_triggers_exactly_one_run(defs, instance, platform_home):
    generate_drops(platform_home.landing, START, 2, SMALL)
    sensor = SensorDriver(defs, instance)
    for request in sensor.tick():
        assert sensor.run(request).success

    write_drop(platform_home.landing, START, GeneratorConfig(rows_per_day=300, seed=99))
    again = sensor.tick()
    assert [r.partition_key for r in again] == ["2026-01-01"]
    assert sensor.tick() == []


def test_redrop_with_same_content_triggers_nothing(defs, instance, platform_home):
    generate_drops(platform_home.landing, START, 2, SMALL)
    sensor = SensorDriver(defs, instance)
    for request in sensor.tick():
        assert sensor.run(request).success

    # The producer rewrites identical files and a fresh marker: new mtimes, same bytes.
    write_drop(platform_home.landing, START, SMALL)
    assert sensor.tick() == []


def test_incomplete_drop_triggers_nothing_until_its_marker_lands(defs, instance, platform_home):
    generate_drops(platform_home.landing, START, 1, SMALL)
    marker = platform_home.landing / "shipments" / "2026-01-01" / MARKER
    saved = marker.read_bytes()
    marker.unlink()
    sensor = SensorDriver(defs, instance)
    assert sensor.tick() == []

    marker.write_bytes(saved)
    assert [r.partition_key for r in sensor.tick()] == ["2026-01-01"]


def test_drop_already_ingested_by_a_backfill_is_not_processed_again(defs, instance, platform_home):
    generate_drops(platform_home.landing, START, 1, SMALL)
    result = defs.resolve_job_def("ingest_shipments").execute_in_process(
        instance=instance, partition_key="2026-01-01"
    )
    assert result.success
    # A fresh cursor (new sensor, or a reset) still finds the drop's fingerprint on the instance.
    assert SensorDriver(defs, instance).tick() == []


def test_folders_that_are_not_partitions_are_ignored(defs, instance, platform_home):
    generate_drops(platform_home.landing, START, 1, SMALL)
    shutil.copytree(
        platform_home.landing / "shipments" / "2026-01-01",
        platform_home.landing / "shipments" / "not-a-date",
    )
    sensor = SensorDriver(defs, instance)
    assert [r.partition_key for r in sensor.tick()] == ["2026-01-01"]
    assert sensor.tick() == []


class CountingZone(LocalLandingZone):
    """The real local zone, remembering which files' bytes it read."""

    def read(self, file):
        READS.append(f"{file.partition}/{file.name}")
        return super().read(file)


READS: list[str] = []


def test_ticks_stay_proportional_to_new_drops_with_10000_files(defs, instance, platform_home):
    config = GeneratorConfig(rows_per_day=100, files_per_drop=2)
    generate_drops(platform_home.landing, START, 100, config)
    # Pad every drop to 100 files (10,000 landed files), keeping each marker's timestamp.
    for day in sorted((platform_home.landing / "shipments").iterdir()):
        stamp = (day / MARKER).stat().st_mtime_ns
        source = next(day.glob("part-*.csv"))
        for i in range(2, 100):
            shutil.copyfile(source, day / f"part-{i:03d}.csv")
        os.utime(day / MARKER, ns=(stamp, stamp))
    assert sum(1 for _ in platform_home.landing.rglob("part-*")) == 10_000

    zone = defs.resources["landing"]
    sensor = SensorDriver(
        defs, instance, CountingZone(root=zone.root, quarantine_root=zone.quarantine_root)
    )
    READS.clear()
    assert len(sensor.tick()) == 100  # MAX_DROPS_PER_TICK allows all 100 in one tick
    assert len(READS) == 10_000

    READS.clear()
    assert sensor.tick() == []
    assert READS == []  # an idle tick reads no file content at all

    write_drop(platform_home.landing, date(2026, 4, 11), SMALL)
    assert [r.partition_key for r in sensor.tick()] == ["2026-04-11"]
    assert sorted(READS) == ["2026-04-11/part-000.parquet", "2026-04-11/part-001.csv"]
