"""features/shipment_features: per-shipment features with trailing 28-day lane aggregates."""

from datetime import date

import dagster as dg
import polars as pl

from ml_platform import schemas
from ml_platform.assets.clean import CLEAN_SHIPMENTS_KEY
from ml_platform.automation import follows_upstream
from ml_platform.checks import CheckOutcome, contract_failures, gated
from ml_platform.partitions import (
    TRAILING_WINDOW_DAYS,
    daily_backfill_policy,
    daily_partitions,
    trailing_window,
)
from ml_platform.storage.frames import content_hash
from ml_platform.transforms.shipments import shipment_features as build_features

FEATURES_KEY = dg.AssetKey(["features", "shipment_features"])
# Partitioned checks: a check state per day (see clean.py).
CONTRACT_CHECK = dg.AssetCheckSpec(
    "schema_contract", asset=FEATURES_KEY, blocking=True, partitions_def=daily_partitions
)
ROWS_CHECK = dg.AssetCheckSpec(
    "row_count_sanity", asset=FEATURES_KEY, blocking=True, partitions_def=daily_partitions
)


@dg.asset(
    key=FEATURES_KEY,
    description=(
        "One row per clean shipment of the day: shipment attributes, calendar features and "
        f"lane aggregates over the {TRAILING_WINDOW_DAYS} days before the shipment's day "
        "(never including the day itself), plus the price paid as the label."
    ),
    group_name="features",
    kinds={"polars", "parquet"},
    code_version="1",
    partitions_def=daily_partitions,
    ins={"clean": dg.AssetIn(key=CLEAN_SHIPMENTS_KEY, partition_mapping=trailing_window)},
    backfill_policy=daily_backfill_policy,
    io_manager_key="lake_io_manager",
    metadata={"partition_expr": "partition_date"},
    automation_condition=follows_upstream(),
    check_specs=[CONTRACT_CHECK, ROWS_CHECK],
)
def shipment_features(context: dg.AssetExecutionContext, clean: pl.LazyFrame):
    days = [date.fromisoformat(k) for k in context.partition_keys]
    features = build_features(clean, days, TRAILING_WINDOW_DAYS)
    # The checks judge the computed frame before anything is stored (see checks.gated).
    outcomes = [
        CheckOutcome(
            CONTRACT_CHECK, contract_failures(schemas.SHIPMENT_FEATURES, features, "partition_date")
        ),
        _row_count_outcome(clean, features, days),
    ]
    output = dg.Output(features, data_version=dg.DataVersion(content_hash(features)))
    yield from gated(context, outcomes, [output])


def _row_count_outcome(clean: pl.LazyFrame, features: pl.DataFrame, days: list[date]):
    """Every clean shipment of each day has exactly one feature row, and no day is empty."""
    expected = (
        clean.filter(pl.col("partition_date").is_in(days))
        .group_by("partition_date")
        .len()
        .collect()
    )
    per_day = (
        pl.DataFrame({"partition_date": days})
        .join(expected.rename({"len": "clean_rows"}), on="partition_date", how="left")
        .join(
            # Counted on the one column: an eager group-by copies every column of a
            # multi-chunk frame into one chunk first.
            features.select("partition_date").group_by("partition_date").len("feature_rows"),
            on="partition_date",
            how="left",
        )
        .fill_null(0)
        .with_columns(partition=pl.col("partition_date").cast(pl.Utf8))
    )
    failures = {
        row["partition"]: {
            "problem": (
                f"{row['feature_rows']} feature rows for {row['clean_rows']} clean shipments "
                "(want one per shipment, and at least one)"
            )
        }
        for row in per_day.iter_rows(named=True)
        if row["feature_rows"] == 0 or row["feature_rows"] != row["clean_rows"]
    }
    figures = {
        row["partition"]: {"clean_rows": row["clean_rows"], "feature_rows": row["feature_rows"]}
        for row in per_day.iter_rows(named=True)
    }
    return CheckOutcome(ROWS_CHECK, failures, figures)
