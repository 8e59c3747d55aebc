"""A producer starts sending a new column: the day is accepted, and ranges across it still load."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from ml_platform.assets.clean import CLEAN_SHIPMENTS_KEY, REJECTED_KEY
from ml_platform.demo.generator import GeneratorConfig, generate_day, write_drop
from ml_platform.landing.zone import MARKER
from ml_platform_tests.pipeline.helpers import (
    SensorDriver,
    current_frame,
    latest_materialization,
    run_failure_message,
)

SMALL = GeneratorConfig(rows_per_day=300, files_per_drop=1)
DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(3)]
DRIFT = DAYS[1]


def _land_drift_day(landing) -> None:
    """DRIFT's drop carries an extra nullable column the others do not have."""
    folder = landing / "shipments" / DRIFT.isoformat()
    folder.mkdir(parents=True)
    frame = generate_day(DRIFT, SMALL).with_columns(customer_tier=pl.lit("gold"))
    frame.write_csv(folder / "part-000.csv")
    (folder / MARKER).write_text("{}")


def test_a_range_across_a_drift_day_loads_with_nulls_before_the_new_column(
    defs, instance, platform_home
):
    for day in (DAYS[0], DAYS[2]):
        write_drop(platform_home.landing, day, SMALL)
    _land_drift_day(platform_home.landing)
    sensor = SensorDriver(defs, instance)
    requests = sensor.tick()
    assert len(requests) == 3
    for request in requests:
        assert sensor.run(request).success, request.partition_key

    # One run of clean over the three days reads the three raw versions, as the sensor's runs
    # stored them (two without the column, one with it), in one scan.
    result = defs.resolve_job_def("data_pipeline").execute_in_process(
        instance=instance,
        asset_selection=[CLEAN_SHIPMENTS_KEY, REJECTED_KEY],
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
        raise_on_error=False,
    )
    assert result.success, run_failure_message(result)
    for day in DAYS:
        mat = latest_materialization(instance, "clean/shipments", day.isoformat())
        assert mat.metadata["dagster/row_count"].value > 0
    raw = pl.concat(
        [
            current_frame(platform_home.storage, instance, "raw/shipments", d.isoformat())
            for d in DAYS
        ],
        how="diagonal",
    )
    tiers = raw.group_by("partition_date").agg(pl.col("customer_tier").drop_nulls().len())
    assert dict(tiers.iter_rows()) == {DAYS[0]: 0, DRIFT: 300, DAYS[2]: 0}
