"""monitoring/prediction_quality compares each quote with the price paid for the same booking.

A shipment id may come again in a later day's drop (the clean contract makes ids unique per
day, not across days), so a range run must pair a day's quotes with that day's prices only:
one run over several days gives each day the figures a run of that day alone gives.
"""

from datetime import date

import dagster as dg
import polars as pl
import pytest

from ml_platform.assets.clean import CLEAN_SHIPMENTS_KEY
from ml_platform.assets.predictions import PREDICTIONS_KEY, QUALITY_KEY, prediction_quality
from ml_platform.partitions import daily_partitions
from ml_platform_tests.pipeline.helpers import current_frame, run_failure_message

DAY_1, DAY_2 = date(2026, 1, 5), date(2026, 1, 6)
# SHP-1 is booked on both days at different prices; each day's quote is exact for its day.
ACTUALS = pl.DataFrame(
    {
        "shipment_id": ["SHP-1", "SHP-2", "SHP-1", "SHP-3"],
        "price_eur": [100.0, 200.0, 400.0, 300.0],
        "partition_date": [DAY_1, DAY_1, DAY_2, DAY_2],
    }
)
QUOTES = ACTUALS.select(
    "shipment_id",
    "partition_date",
    lane=pl.lit("A->B"),
    transport_mode=pl.lit("road"),
    predicted_price_eur=pl.col("price_eur"),
    model_week=pl.lit("2025-12-29"),
    in_sample=pl.lit(False),
)


def _stored(key: dg.AssetKey, frame: pl.DataFrame) -> dg.AssetsDefinition:
    """An asset standing in for ``key``: the frame's rows of the run's days, stored as usual."""

    @dg.asset(
        key=key,
        partitions_def=daily_partitions,
        io_manager_key="warehouse_io_manager",
        metadata={"partition_expr": "partition_date"},
    )
    def _asset(context: dg.AssetExecutionContext) -> pl.DataFrame:
        first, last = (date.fromisoformat(k) for k in context.partition_key_range)
        return frame.filter(pl.col("partition_date").is_between(first, last))

    return _asset


@pytest.fixture
def quality_defs(defs: dg.Definitions) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            _stored(CLEAN_SHIPMENTS_KEY, ACTUALS),
            _stored(PREDICTIONS_KEY, QUOTES),
            prediction_quality,
        ],
        resources=defs.resources,
    )


def _run(defs, instance, keys, first: date, last: date) -> None:
    result = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=list(keys),
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
        raise_on_error=False,
    )
    assert result.success, run_failure_message(result)


def test_a_range_run_pairs_each_quote_with_its_own_days_price(
    quality_defs, instance, platform_home
):
    _run(quality_defs, instance, {CLEAN_SHIPMENTS_KEY, PREDICTIONS_KEY}, DAY_1, DAY_2)
    _run(quality_defs, instance, {QUALITY_KEY}, DAY_1, DAY_2)
    for day in (DAY_1, DAY_2):
        quality = current_frame(
            platform_home.storage, instance, QUALITY_KEY.to_user_string(), day.isoformat()
        )
        overall = quality.filter(pl.col("scope") == "overall").row(0, named=True)
        assert overall["rows"] == 2, f"{day}: {overall}"  # two bookings that day, not three
        assert overall["mae"] == 0.0 and overall["share_over_20pct"] == 0.0, f"{day}: {overall}"
