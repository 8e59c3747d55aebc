"""predictions/price_quotes and monitoring/prediction_quality (daily)."""

import dagster as dg
import numpy as np
import polars as pl

from ml_platform.assets.clean import CLEAN_SHIPMENTS_KEY
from ml_platform.assets.features import FEATURES_KEY
from ml_platform.automation import (
    AfterChampionTrainingWindow,
    content_updated,
    deps_blocking_checks_passed,
    follows_upstream,
)
from ml_platform.checks import evaluations
from ml_platform.execution import WAREHOUSE_POOL
from ml_platform.models.artifacts import ArtifactError
from ml_platform.models.training import MissingFeaturesError, predict
from ml_platform.partitions import daily_backfill_policy, daily_partitions
from ml_platform.provenance.champion import (
    CHAMPION_KEY,
    describe_model,
    load_champion_model,
    promotion_at,
    training_window,
)
from ml_platform.provenance.reads import read_of

PREDICTIONS_KEY = dg.AssetKey(["predictions", "price_quotes"])
QUALITY_KEY = dg.AssetKey(["monitoring", "prediction_quality"])
QUALITY_CHECK = dg.AssetCheckSpec("error_within_bounds", asset=QUALITY_KEY, blocking=False)
# A day warns when more than this share of quotes is more than 20 % off the price paid...
MAX_SHARE_OVER_20PCT = 0.10
# ...or when its mean absolute percentage error exceeds this.
MAX_MAPE = 0.15


def predict_condition() -> dg.AutomationCondition:
    """Quotes follow changed features: existing quote days are refreshed, new days are added
    only after the live champion's training window; a new champion rescores nothing (old
    quotes show as stale).

    No ``newly_missing()``: a day gets its first quotes when its features arrive (new content)
    after the training window. Days inside the window, or quoted by nobody, are never created
    by automation; the CLI or a backfill can still quote them.
    """
    features_changed = dg.AutomationCondition.any_deps_match(
        content_updated() | dg.AutomationCondition.will_be_requested()
    ).allow(dg.AssetSelection.assets(FEATURES_KEY))
    quotable = (~dg.AutomationCondition.missing() | AfterChampionTrainingWindow()).with_label(
        "quoted_or_after_training_window"
    )
    return (
        (features_changed & quotable).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & deps_blocking_checks_passed()
    ).with_label("after_changed_features")


@dg.asset(
    key=PREDICTIONS_KEY,
    description=(
        "The champion's price quote for every shipment of the day; each row names the model "
        "week, run, materialization and artifact sha256 and the champion materialization that "
        "produced it, and whether the day is inside the model's training window (in_sample)."
    ),
    group_name="predictions",
    kinds={"scikit-learn", "polars"},
    code_version="1",
    partitions_def=daily_partitions,
    ins={"features": dg.AssetIn(key=FEATURES_KEY), "champion": dg.AssetIn(key=CHAMPION_KEY)},
    io_manager_key="warehouse_io_manager",
    required_resource_keys={"lake_io_manager"},
    metadata={"partition_expr": "partition_date"},
    backfill_policy=daily_backfill_policy,
    automation_condition=predict_condition(),
    pool=WAREHOUSE_POOL,
)
def price_quotes(context: dg.AssetExecutionContext, features: pl.DataFrame, champion: pl.DataFrame):
    # One source of truth for "live": the promotion the loaded champion materialization
    # names (the champion's latest event), not a row of its history table.
    champion_read = read_of(context, CHAMPION_KEY)
    live = promotion_at(context.instance, champion_read.storage_id)
    try:
        model = load_champion_model(live, context.resources.lake_io_manager.store())
        predicted = predict(model, features)
    except (ArtifactError, MissingFeaturesError) as e:
        raise dg.Failure(
            description=f"cannot score with the champion {describe_model(live)}: {e}",
            allow_retries=False,
        ) from None
    first, last = training_window(live)
    quotes = features.select(
        "shipment_id", "partition_date", "lane", "transport_mode"
    ).with_columns(
        predicted_price_eur=pl.Series(predicted, dtype=pl.Float64),
        model_week=pl.lit(live["model_week"]),
        model_run_id=pl.lit(live["model_run_id"]),
        model_storage_id=pl.lit(live["model_storage_id"], dtype=pl.Int64),
        model_sha256=pl.lit(live["model_sha256"]),
        champion_run_id=pl.lit(champion_read.run_id),
        champion_storage_id=pl.lit(champion_read.storage_id, dtype=pl.Int64),
        # Days the model saw while training (its window, holdout included) are not live
        # performance: marked here, left out of prediction_quality.
        in_sample=pl.col("partition_date").is_between(first, last),
    )
    window = {"first_day": first.isoformat(), "last_day": last.isoformat()}
    # Figures per day: a range run's output metadata would give every day the range's.
    for (day,), day_quotes in quotes.group_by("partition_date"):
        inside = first <= day <= last
        if inside:
            context.log.warning(
                f"{day}: inside the training window {first}..{last} of the live model "
                f"{describe_model(live)}; its quotes are marked in_sample"
            )
        context.add_asset_metadata(
            _distribution(day_quotes, live) | _sample_metadata(inside, window),
            partition_key=day.isoformat(),
        )
    return dg.Output(quotes)


def _sample_metadata(inside: bool, window: dict) -> dict:
    return {
        "in_sample": dg.MetadataValue.bool(inside),
        "model_training_window": dg.MetadataValue.json(window),
    }


def _distribution(quotes: pl.DataFrame, live: dict) -> dict:
    """A day's quote figures; the numbers as separate float/int entries the UI plots over
    days, identifiers as text."""
    prices = quotes["predicted_price_eur"]
    figures = {
        "mean": float(prices.mean() or 0),
        "p10": float(prices.quantile(0.1) or 0),
        "p50": float(prices.median() or 0),
        "p90": float(prices.quantile(0.9) or 0),
    }
    return {
        "rows": dg.MetadataValue.int(quotes.height),
        "model_week": dg.MetadataValue.text(live["model_week"]),
        "model_run_id": dg.MetadataValue.text(live["model_run_id"]),
        # The whole distribution in one entry (read by code), and each figure as a plot.
        "predicted_price_eur": dg.MetadataValue.json(figures),
        **{
            f"predicted_price_{name}": dg.MetadataValue.float(figures[name])
            for name in ("p10", "p50", "p90")
        },
    }


@dg.asset(
    key=QUALITY_KEY,
    description=(
        "How far the day's quotes were from the prices actually paid: MAE, MAPE, bias and the "
        "share of quotes more than 20 % off, overall (scope='overall') and per lane. Only "
        "quotes for days the model never saw count (in_sample_rows: those left out)."
    ),
    group_name="monitoring",
    kinds={"polars"},
    code_version="1",
    partitions_def=daily_partitions,
    ins={
        "predictions": dg.AssetIn(key=PREDICTIONS_KEY),
        "actuals": dg.AssetIn(key=CLEAN_SHIPMENTS_KEY),
    },
    io_manager_key="warehouse_io_manager",
    metadata={"partition_expr": "partition_date"},
    backfill_policy=daily_backfill_policy,
    automation_condition=follows_upstream(),
    check_specs=[QUALITY_CHECK],
    pool=WAREHOUSE_POOL,
)
def prediction_quality(
    context: dg.AssetExecutionContext, predictions: pl.DataFrame, actuals: pl.DataFrame
):
    if "in_sample" not in predictions.columns:  # quotes made before in-sample marking
        predictions = predictions.with_columns(in_sample=pl.lit(False))
    # By day and id: an id may be booked again on a later day (ids are unique per day), and a
    # range run must compare each quote with the price paid for its own day's booking.
    joined = predictions.join(
        actuals.select(
            "partition_date", "shipment_id", pl.col("price_eur").alias("actual_price_eur")
        ),
        on=["partition_date", "shipment_id"],
        how="inner",
    )
    # Only quotes for days the model never saw count as live performance.
    unseen = joined.filter(~pl.col("in_sample"))
    days = joined.group_by("partition_date").agg(
        in_sample_rows=pl.col("in_sample").sum().cast(pl.Int64),
        model_week=pl.col("model_week").first(),
    )
    overall = days.join(
        _error_stats(unseen, ["partition_date"]).drop("model_week"), on="partition_date", how="left"
    ).with_columns(
        pl.col("rows").fill_null(0),
        scope=pl.lit("overall"),
        lane=pl.lit(None, dtype=pl.Utf8),
    )
    per_lane = _error_stats(unseen, ["partition_date", "lane"]).with_columns(
        scope=pl.lit("lane"), in_sample_rows=pl.lit(0, dtype=pl.Int64)
    )
    quality = pl.concat([overall, per_lane], how="diagonal").select(
        "partition_date",
        "scope",
        "lane",
        "rows",
        "mae",
        "mape",
        "bias",
        "share_over_20pct",
        "model_week",
        "in_sample_rows",
    )
    # Per day, so a range run plots each day at its own value.
    for row in overall.iter_rows(named=True):
        day = row["partition_date"]
        context.add_asset_metadata(
            _quality_metadata(row, per_lane.filter(pl.col("partition_date") == day)),
            partition_key=day.isoformat(),
        )
    yield dg.Output(quality.sort("partition_date", "scope", "lane", nulls_last=False))
    yield from _quality_evaluations(context, overall)


QUALITY_FIGURES = ("mae", "mape", "bias", "share_over_20pct")
# How many lanes the worst-lanes table of a day shows, and the fewest quotes a lane needs
# to be ranked (a lane with two quotes is noise, not a problem).
WORST_LANES = 10
WORST_LANE_MIN_ROWS = 5
WORST_LANES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("lane", "string", description="origin-destination-mode lane"),
        dg.TableColumn("rows", "int", description="quotes compared with the price paid"),
        dg.TableColumn("mape", "float", description="mean absolute percentage error"),
        dg.TableColumn("mae", "float", description="mean absolute error, EUR"),
        dg.TableColumn("bias", "float", description="mean of quote minus price paid, EUR"),
        dg.TableColumn("share_over_20pct", "float", description="share of quotes > 20 % off"),
    ]
)


def _quality_metadata(overall: dict, lanes: pl.DataFrame) -> dict:
    """A day's quality as numbers the UI plots over days, and its worst lanes as a table.

    A day with only in-sample quotes has no figures (nothing to plot), only its counts.
    """
    meta = {
        "rows": dg.MetadataValue.int(overall["rows"]),
        "in_sample_rows": dg.MetadataValue.int(overall["in_sample_rows"]),
        "model_week": dg.MetadataValue.text(overall["model_week"] or ""),
    }
    if overall["rows"] == 0:
        return meta
    meta.update({k: dg.MetadataValue.float(float(overall[k])) for k in QUALITY_FIGURES})
    worst = (
        lanes.filter(pl.col("rows") >= WORST_LANE_MIN_ROWS)
        .sort(["mape", "lane"], descending=[True, False])
        .head(WORST_LANES)
    )
    meta["worst_lanes"] = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "lane": str(r["lane"]),
                    "rows": int(r["rows"]),
                    **{k: round(float(r[k]), 5) for k in QUALITY_FIGURES},
                }
            )
            for r in worst.iter_rows(named=True)
        ],
        schema=WORST_LANES_SCHEMA,
    )
    return meta


def _error_stats(joined: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    error = pl.col("predicted_price_eur") - pl.col("actual_price_eur")
    relative = error.abs() / pl.col("actual_price_eur")
    return joined.group_by(by).agg(
        rows=pl.len().cast(pl.Int64),
        mae=error.abs().mean(),
        mape=relative.mean(),
        bias=error.mean(),
        share_over_20pct=(relative > 0.2).mean(),
        model_week=pl.col("model_week").first(),
    )


def _quality_evaluations(context, overall: pl.DataFrame):
    failures, figures = {}, {}
    for row in overall.iter_rows(named=True):
        day = row["partition_date"].isoformat()
        if row["rows"] == 0:
            figures[day] = {
                "evaluated": False,
                "in_sample_rows": row["in_sample_rows"],
                "note": (
                    f"not evaluated: all {row['in_sample_rows']} quotes are for a day the "
                    f"model (week {row['model_week']}) trained on or held out while training"
                ),
            }
            continue
        figures[day] = {
            "evaluated": True,
            **{k: _round(row[k]) for k in ("rows", "mape", "bias", "share_over_20pct")},
            "in_sample_rows": row["in_sample_rows"],
        }
        if row["share_over_20pct"] > MAX_SHARE_OVER_20PCT or row["mape"] > MAX_MAPE:
            failures[day] = {
                "problem": (
                    f"{row['share_over_20pct']:.1%} of quotes more than 20% off (limit "
                    f"{MAX_SHARE_OVER_20PCT:.0%}), MAPE {row['mape']:.1%} (limit {MAX_MAPE:.0%})"
                )
            }
    return evaluations(
        context, QUALITY_CHECK, failures, figures, severity=dg.AssetCheckSeverity.WARN
    )


def _round(value):
    return round(float(value), 5) if isinstance(value, float | np.floating) else value
