"""clean/shipments and clean/shipments_rejected: typed, validated, deduplicated rows."""

from datetime import date

import dagster as dg
import polars as pl

from ml_platform import schemas
from ml_platform.assets.raw import RAW_SHIPMENTS
from ml_platform.automation import follows_upstream
from ml_platform.checks import CheckOutcome, contract_failures, gated
from ml_platform.execution import WAREHOUSE_POOL
from ml_platform.partitions import daily_backfill_policy, daily_partitions
from ml_platform.storage.frames import content_hash
from ml_platform.transforms.shipments import clean_shipments as clean_rows

CLEAN_SHIPMENTS_KEY = dg.AssetKey(["clean", "shipments"])
REJECTED_KEY = dg.AssetKey(["clean", "shipments_rejected"])
# A drop with more rejects than this is suspect even when some rows survive.
MAX_REJECTED_SHARE = 0.2

# Partitioned checks: Dagster (and automation's blocking-check gate) keeps a check state per
# day; without partitions_def the latest evaluation of any day would stand for every day.
CONTRACT_CHECK = dg.AssetCheckSpec(
    "schema_contract",
    asset=CLEAN_SHIPMENTS_KEY,
    blocking=True,
    partitions_def=daily_partitions,
)
ROWS_CHECK = dg.AssetCheckSpec(
    "row_count_sanity",
    asset=CLEAN_SHIPMENTS_KEY,
    blocking=True,
    partitions_def=daily_partitions,
)

_SHARED = dict(
    group_name="clean",
    kinds={"polars", "parquet"},
    code_version="1",
    io_manager_key="warehouse_io_manager",
    metadata={"partition_expr": "partition_date"},
    automation_condition=follows_upstream(),
)


@dg.multi_asset(
    outs={
        "clean": dg.AssetOut(
            key=CLEAN_SHIPMENTS_KEY,
            description=(
                "Shipments typed, normalized, validated against the pandera contract and "
                "deduplicated by shipment id; rows keep their source file and row number."
            ),
            **_SHARED,
        ),
        "rejected": dg.AssetOut(
            key=REJECTED_KEY,
            description="Raw rows that failed cleaning, with the reason for each row.",
            **_SHARED,
        ),
    },
    ins={"raw": dg.AssetIn(key=RAW_SHIPMENTS)},
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    check_specs=[CONTRACT_CHECK, ROWS_CHECK],
    pool=WAREHOUSE_POOL,
)
def clean_shipments(context: dg.AssetExecutionContext, raw: pl.LazyFrame):
    clean, rejected, summary = _clean_by_day(raw, context.partition_keys)
    # The checks judge the computed frames before anything is stored (see checks.gated).
    outcomes = [
        CheckOutcome(
            CONTRACT_CHECK, contract_failures(schemas.CLEAN_SHIPMENTS, clean, "partition_date")
        ),
        _row_count_outcome(summary, rejected),
    ]
    empty = summary.filter(pl.col("rows_out") == 0)
    headline = (
        f"no clean rows for partition(s) {empty['partition'].to_list()}; "
        f"reject reasons: {_top_reasons(_of_days(rejected, empty['partition']))}"
        if empty.height
        else None
    )
    # Numbers per partition, which the UI plots over partitions: counts as ints, the reject
    # share as a float (0 for a day with no rows).
    for row in summary.iter_rows(named=True):
        meta = {k: dg.MetadataValue.int(v) for k, v in row.items() if k != "partition"}
        meta["rejected_share"] = dg.MetadataValue.float(
            round(row["rows_rejected"] / max(row["rows_in"], 1), 5)
        )
        context.add_asset_metadata(
            meta, asset_key=CLEAN_SHIPMENTS_KEY, partition_key=row["partition"]
        )
    outputs = [
        dg.Output(
            clean,
            output_name="clean",
            data_version=dg.DataVersion(content_hash(clean)),
            metadata={
                "dagster/column_schema": _table_schema(clean),
                "dagster/column_lineage": _column_lineage(),
            },
        ),
        dg.Output(
            rejected, output_name="rejected", data_version=dg.DataVersion(content_hash(rejected))
        ),
    ]
    yield from gated(context, outcomes, outputs, headline=headline)


def _clean_by_day(
    raw: pl.LazyFrame, partitions: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Each day cleaned on its own: (clean, rejected, rows in / out / rejected per day).

    Per day, not per range: a shipment id is deduplicated within its day's drop, so a day
    cleans to the same rows alone, in a range, or in any backfill chunk; and only one day's
    raw rows and their intermediates are in memory at a time, whatever the range's length.
    The counts are taken per day here: an eager group-by over the concatenated range copied
    every column of it into one chunk first (200 MB at the peak of a 5-day chunk).
    """
    cleaned, rejects, counts = [], [], []
    for partition in partitions:
        day = raw.filter(pl.col("partition_date") == date.fromisoformat(partition)).collect()
        clean, rejected = clean_rows(day)
        cleaned.append(clean)
        rejects.append(rejected)
        counts.append((partition, day.height, clean.height, rejected.height))
    summary = pl.DataFrame(
        counts,
        schema={
            "partition": pl.Utf8,
            "rows_in": pl.Int64,
            "rows_out": pl.Int64,
            "rows_rejected": pl.Int64,
        },
        orient="row",
    )
    return (
        pl.concat(cleaned, rechunk=False),
        pl.concat(rejects, how="diagonal_relaxed", rechunk=False),
        summary,
    )


def _of_days(rejected: pl.DataFrame, days: pl.Series) -> pl.DataFrame:
    """The rejects of these days only (a range run's headline names its empty days)."""
    return rejected.filter(pl.col("partition_date").is_in(days.str.to_date().implode()))


def _top_reasons(rejected: pl.DataFrame, n: int = 5) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    top = rejected.group_by("reason").len().sort("len", descending=True).head(n)
    return dict(zip(top["reason"].to_list(), top["len"].to_list(), strict=True))


def _row_count_outcome(summary: pl.DataFrame, rejected: pl.DataFrame) -> CheckOutcome:
    share = summary.with_columns(
        rejected_share=pl.col("rows_rejected") / pl.col("rows_in").clip(lower_bound=1)
    )
    failures = {}
    for row in share.iter_rows(named=True):
        if row["rows_out"] == 0:
            reasons = _top_reasons(
                rejected.filter(pl.col("partition_date").cast(pl.Utf8) == row["partition"])
            )
            failures[row["partition"]] = {"problem": f"no clean rows; reject reasons: {reasons}"}
        elif row["rejected_share"] > MAX_REJECTED_SHARE:
            failures[row["partition"]] = {
                "problem": (
                    f"{row['rows_rejected']} of {row['rows_in']} rows rejected "
                    f"({row['rejected_share']:.1%}, limit {MAX_REJECTED_SHARE:.0%})"
                )
            }
    figures = {
        row["partition"]: {
            "rows_out": row["rows_out"],
            "rejected_share": round(float(row["rejected_share"]), 5),
        }
        for row in share.iter_rows(named=True)
    }
    return CheckOutcome(ROWS_CHECK, failures, figures)


def _table_schema(df: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()]
    )


def _column_lineage() -> dg.TableColumnLineage:
    """Each clean column comes from the raw column of the same name (lane from the cities)."""
    raw_col = lambda c: dg.TableColumnDep(asset_key=RAW_SHIPMENTS, column_name=c)  # noqa: E731
    deps = {c: [raw_col(c)] for c in schemas.CLEAN_SHIPMENTS.columns if c != "lane"}
    deps["lane"] = [raw_col("origin_city"), raw_col("destination_city")]
    return dg.TableColumnLineage(deps_by_column=deps)
