"""features/shipment_features: per-shipment features with trailing 28-day lane aggregates."""

from datetime import date

import dagster as dg
import pandera.polars as pa
import polars as pl

from ml_platform.assets.clean import CLEAN_SHIPMENTS_KEY
from ml_platform.automation import follows_upstream
from ml_platform.partitions import TRAILING_WINDOW_DAYS, daily_partitions, trailing_window
from ml_platform.schemas import SHIPMENT_FEATURES
from ml_platform.storage.frames import content_hash
from ml_platform.transforms.shipments import shipment_features as build_features

FEATURES_KEY = dg.AssetKey(["features", "shipment_features"])
CONTRACT_CHECK = dg.AssetCheckSpec("schema_contract", asset=FEATURES_KEY, blocking=True)
ROWS_CHECK = dg.AssetCheckSpec("row_count_sanity", asset=FEATURES_KEY, blocking=True)


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
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="lake_io_manager",
    metadata={"partition_expr": "partition_date"},
    automation_condition=follows_upstream(),
    check_specs=[CONTRACT_CHECK, ROWS_CHECK],
)
def shipment_features(context: dg.AssetExecutionContext, clean: pl.LazyFrame):
    days = [date.fromisoformat(k) for k in context.partition_keys]
    features = build_features(clean, days, TRAILING_WINDOW_DAYS)
    yield dg.Output(features, data_version=dg.DataVersion(content_hash(features)))
    yield _contract_result(features)
    yield _row_count_result(clean, features, days)


def _contract_result(features: pl.DataFrame) -> dg.AssetCheckResult:
    try:
        SHIPMENT_FEATURES.validate(features, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases.head(20).select("column", "check", "failure_case")
        return dg.AssetCheckResult(
            check_name=CONTRACT_CHECK.name,
            passed=False,
            metadata={"failures": dg.MetadataValue.json(cases.to_dicts())},
        )
    return dg.AssetCheckResult(check_name=CONTRACT_CHECK.name, passed=True)


def _row_count_result(
    clean: pl.LazyFrame, features: pl.DataFrame, days: list[date]
) -> dg.AssetCheckResult:
    """Every clean shipment of each day has exactly one feature row, and no day is empty."""
    expected = (
        clean.filter(pl.col("partition_date").is_in(days))
        .group_by("partition_date")
        .len()
        .collect()
    )
    actual = features.group_by("partition_date").len()
    per_day = (
        pl.DataFrame({"partition_date": days})
        .join(expected.rename({"len": "clean_rows"}), on="partition_date", how="left")
        .join(actual.rename({"len": "feature_rows"}), on="partition_date", how="left")
        .fill_null(0)
    )
    bad = per_day.filter(
        (pl.col("feature_rows") == 0) | (pl.col("feature_rows") != pl.col("clean_rows"))
    )
    return dg.AssetCheckResult(
        check_name=ROWS_CHECK.name,
        passed=bad.height == 0,
        metadata={
            "days_failing": dg.MetadataValue.json(
                [str(d) for d in bad["partition_date"].to_list()]
            ),
            "feature_rows": dg.MetadataValue.int(features.height),
        },
    )
