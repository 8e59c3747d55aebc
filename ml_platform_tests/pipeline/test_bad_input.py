"""Unreadable drops fail the run with a message naming the file, are quarantined, and lose nothing."""

from __future__ import annotations

import io
import json
from datetime import date

import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_day, write_drop
from ml_platform.landing.zone import MARKER
from ml_platform_tests.pipeline.helpers import (
    SensorDriver,
    current_version,
    run_failure_message,
    run_range,
)

DAY = date(2026, 1, 2)
SMALL = GeneratorConfig(rows_per_day=300, files_per_drop=2)


def _csv_bytes() -> bytes:
    buf = io.BytesIO()
    generate_day(DAY, SMALL).head(20).write_csv(buf)
    return buf.getvalue()


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    generate_day(DAY, SMALL).head(200).write_parquet(buf)
    return buf.getvalue()


BAD_FILES = {
    "bad_encoding": (
        "part-009.csv",
        lambda: _csv_bytes().replace(b"SHP-", b"SH\xd6-", 1),  # Latin-1, not UTF-8
        "not valid UTF-8",
    ),
    "wrong_delimiter": (
        "part-009.csv",
        lambda: _csv_bytes().replace(b",", b";"),
        "another delimiter",
    ),
    "missing_columns": (
        "part-009.csv",
        lambda: b"shipment_id,booked_at\nSHP-1,2026-01-02T10:00:00Z\n",
        "missing required columns",
    ),
    "empty_file": ("part-009.csv", lambda: b"", "empty file"),
    "header_only": ("part-009.csv", lambda: _csv_bytes().split(b"\n")[0] + b"\n", "no data rows"),
    "truncated_parquet": (
        "part-009.parquet",
        lambda: _parquet_bytes()[:-300],
        "unreadable Parquet",
    ),
}


def _land_good_days(defs, instance, landing) -> SensorDriver:
    for day in (date(2026, 1, 1), DAY):
        write_drop(landing, day, SMALL)
    sensor = SensorDriver(defs, instance)
    for request in sensor.tick():
        assert sensor.run(request).success
    return sensor


def _redrop_with(landing, name: str, data: bytes) -> None:
    """Re-drop DAY as a producer would: marker removed, files written, marker written last."""
    folder = landing / "shipments" / DAY.isoformat()
    marker = (folder / MARKER).read_bytes()
    (folder / MARKER).unlink()
    (folder / name).write_bytes(data)
    (folder / MARKER).write_bytes(marker)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_fails_clearly_is_quarantined_and_keeps_previous_state(
    kind, defs, instance, platform_home
):
    sensor = _land_good_days(defs, instance, platform_home.landing)
    before = {
        day: current_version(instance, "raw/shipments", day)
        for day in ("2026-01-01", DAY.isoformat())
    }
    name, make, expected = BAD_FILES[kind]
    data = make()
    _redrop_with(platform_home.landing, name, data)

    requests = sensor.tick()
    assert [r.partition_key for r in requests] == [DAY.isoformat()]
    result = sensor.run(requests[0])
    assert not result.success
    message = run_failure_message(result)
    assert f"{DAY.isoformat()}/{name}" in message
    assert expected in message

    quarantined = platform_home.quarantine / "shipments" / DAY.isoformat() / name
    assert quarantined.read_bytes() == data
    reason = json.loads(quarantined.with_name(name + ".reason.json").read_text())
    assert expected in reason["reason"]
    assert reason["source_uri"].endswith(f"{DAY.isoformat()}/{name}")

    for day, pointer in before.items():
        assert current_version(instance, "raw/shipments", day) == pointer
    # The failed drop is not retried on every tick; a corrected re-drop is.
    assert sensor.tick() == []
    (platform_home.landing / "shipments" / DAY.isoformat() / name).unlink()
    (platform_home.landing / "shipments" / DAY.isoformat() / MARKER).touch()
    assert [r.partition_key for r in sensor.tick()] == []  # same content as the last good drop


def test_drop_whose_marker_has_no_data_files_fails_clearly(defs, instance, platform_home):
    folder = platform_home.landing / "shipments" / DAY.isoformat()
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("{}")
    sensor = SensorDriver(defs, instance)
    requests = sensor.tick()
    result = sensor.run(requests[0])
    assert not result.success
    assert "marked complete but holds no data files" in run_failure_message(result)


def test_drop_with_no_clean_rows_fails_loudly_and_keeps_previous_clean_partition(
    defs, instance, platform_home
):
    _land_good_days(defs, instance, platform_home.landing)
    assert run_range(defs, instance, "data_pipeline", "2026-01-01", DAY.isoformat()).success
    before = current_version(instance, "clean/shipments", DAY.isoformat())

    # Every row of the re-drop breaks a rule: all weights negative.
    bad = generate_day(DAY, SMALL).with_columns(pl.col("weight_kg") * -1)
    folder = platform_home.landing / "shipments" / DAY.isoformat()
    (folder / MARKER).unlink()
    for f in folder.glob("part-*"):
        f.unlink()
    bad.write_csv(folder / "part-000.csv")
    (folder / MARKER).write_text("{}")

    result = defs.resolve_job_def("data_pipeline").execute_in_process(
        instance=instance, partition_key=DAY.isoformat(), raise_on_error=False
    )
    assert not result.success
    message = run_failure_message(result)
    assert f"no clean rows for partition(s) ['{DAY.isoformat()}']" in message
    assert "weight_kg: greater_than(0)" in message
    assert current_version(instance, "clean/shipments", DAY.isoformat()) == before

    # In a range run, the headline gives the empty day's reject reasons, not the range's: the
    # day before gains a file landed twice, whose duplicate rows are rejected there.
    first = platform_home.landing / "shipments" / "2026-01-01"
    (first / MARKER).unlink()
    part = sorted(first.glob("part-*"))[0]
    (first / f"copy-{part.name}").write_bytes(part.read_bytes())
    (first / MARKER).write_text("{}")
    result = run_range(defs, instance, "data_pipeline", "2026-01-01", DAY.isoformat())
    assert not result.success
    (headline,) = [
        line
        for line in run_failure_message(result).splitlines()
        if "no clean rows for partition(s)" in line
    ][:1]
    assert f"partition(s) ['{DAY.isoformat()}']" in headline
    assert "weight_kg: greater_than(0)" in headline and "duplicate" not in headline, headline
