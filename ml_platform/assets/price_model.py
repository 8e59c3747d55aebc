"""models/price_model: the weekly model, its training data reads and its blocking checks."""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from ml_platform.assets.features import FEATURES_KEY
from ml_platform.checks import evaluations
from ml_platform.execution import TRAINING_POD_TAGS
from ml_platform.models.artifacts import TrainedModel
from ml_platform.models.training import (
    Hyperparameters,
    TrainingDataError,
    predict,
    regression_metrics,
    train_and_evaluate,
)
from ml_platform.partitions import training_window, weekly_partitions
from ml_platform.provenance.champion import (
    PRICE_MODEL_KEY,
    current_champion,
    describe_model,
    load_champion_model,
    model_materialization,
)

BEATS_BASELINE = dg.AssetCheckSpec("beats_naive_baseline", asset=PRICE_MODEL_KEY, blocking=True)
NOT_WORSE = dg.AssetCheckSpec("not_worse_than_champion", asset=PRICE_MODEL_KEY, blocking=True)
CHECK_NAMES = (BEATS_BASELINE.name, NOT_WORSE.name)


class TrainingConfig(dg.Config, Hyperparameters):
    """Hyperparameters (editable in the launchpad, recorded on every model) and the champion gate."""

    # A challenger may be at most this much worse (relative MAPE) than the live champion.
    champion_tolerance: float = 0.05


def retrain_condition() -> dg.AutomationCondition:
    """Weekly on Monday morning, and whenever the features' code version changes."""
    features_changed = dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.code_version_changed()
    ).since_last_handled()
    return (
        dg.AutomationCondition.on_cron("0 4 * * 1")
        | (dg.AutomationCondition.in_latest_time_window() & features_changed)
    ).with_label("weekly_or_new_feature_code")


@dg.asset(
    key=PRICE_MODEL_KEY,
    description=(
        "Weekly price model: a scikit-learn pipeline (ordinal-encoded categoricals, gradient-"
        "boosted trees on log price) trained on the trailing weeks of features with a time-based "
        "holdout. Stored as a skops artifact, never pickle."
    ),
    group_name="models",
    kinds={"scikit-learn", "skops"},
    code_version="1",
    partitions_def=weekly_partitions,
    ins={"features": dg.AssetIn(key=FEATURES_KEY, partition_mapping=training_window)},
    io_manager_key="lake_io_manager",
    required_resource_keys={"lake_io_manager"},
    check_specs=[BEATS_BASELINE, NOT_WORSE],
    automation_condition=retrain_condition(),
    op_tags=TRAINING_POD_TAGS,
)
def price_model(context: dg.AssetExecutionContext, config: TrainingConfig, features: pl.LazyFrame):
    # Lazy: training reads only the columns it uses from the window's stored partitions.
    try:
        result = train_and_evaluate(features, config)
    except TrainingDataError as e:
        raise dg.Failure(
            description=f"cannot train week {context.partition_key}: {e}", allow_retries=False
        ) from None
    trained = TrainedModel(pipeline=result.pipeline, feature_columns=result.feature_columns)
    champion = _champion_comparison(context, trained, result, features)
    yield dg.Output(trained, metadata=_model_metadata(context, config, result, champion))
    yield from _check_results(context, config, result, champion)


def _champion_comparison(context, challenger: TrainedModel, result, features) -> dict | None:
    """Challenger and live champion scored on the same rows, ones neither model trained on.

    Candidates are both models' holdout days; a day either model was fitted on is dropped
    (retraining an older week must not face a champion that saw its holdout). Days outside
    this model's own window are read at their current version.
    """
    live = current_champion(context.instance)
    if live is None:
        return None
    record = model_materialization(context.instance, live["model_storage_id"])
    champion_trained, champion_holdout = _day_ranges(record)
    days = sorted(
        d
        for d in _days(result.holdout_days) | _days(champion_holdout)
        if not _inside(d, result.trained_days) and not _inside(d, champion_trained)
    )
    rows, reads = _feature_rows(context, features, days)
    identity = {
        k: live[k] for k in ("model_week", "model_run_id", "model_storage_id", "model_sha256")
    }
    identity["champion_storage_id"] = live["champion_storage_id"]
    compared = {
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "days": len(days),
        "rows": rows.height,
        "rule": "holdout days of either model that neither model was fitted on",
        "challenger_trained_days": result.trained_days,
        "champion_trained_days": champion_trained,
        "feature_versions": reads,
    }
    if rows.height == 0:
        return {"champion": identity, "compared_on": compared, "challenger": None, "live": None}
    model = load_champion_model(live, context.resources.lake_io_manager.store())
    actual = rows["price_eur"].to_numpy()
    return {
        "champion": identity,
        "compared_on": compared,
        "challenger": regression_metrics(actual, predict(challenger, rows)),
        "live": regression_metrics(actual, predict(model, rows)),
    }


def _day_ranges(record) -> tuple[dict, dict]:
    """(trained days, holdout days) of a model materialization, also for older ones."""
    meta = record.asset_materialization.metadata
    if "trained_days" in meta and "holdout_days" in meta:
        return meta["trained_days"].value, meta["holdout_days"].value
    window = meta["training_window"].value
    holdout = meta["hyperparameters"].value.get("holdout_days", 3)
    last = date.fromisoformat(window["last_day"])
    return (
        {
            "first_day": window["first_day"],
            "last_day": (last - timedelta(days=holdout)).isoformat(),
        },
        {
            "first_day": (last - timedelta(days=holdout - 1)).isoformat(),
            "last_day": window["last_day"],
        },
    )


def _days(span: dict) -> set[str]:
    first, last = date.fromisoformat(span["first_day"]), date.fromisoformat(span["last_day"])
    return {(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}


def _inside(day: str, span: dict) -> bool:
    return span["first_day"] <= day <= span["last_day"]


def _feature_rows(context, features: pl.LazyFrame, days: list[str]):
    """The feature rows of ``days``, every column (a champion may use others than ours):
    from this step's input, else their current version."""
    from ml_platform.assets.features import FEATURES_KEY
    from ml_platform.storage.current import current_versions, latest_storage_ids

    have = set(context.asset_partition_keys_for_input("features"))
    wanted = [d for d in days if d in have]
    columns = features.collect_schema().names()
    # Compared as dates, not as text: the filter then reaches the Parquet scan's statistics.
    wanted_dates = [date.fromisoformat(d) for d in wanted]
    frames = [features.filter(pl.col("partition_date").is_in(wanted_dates)).collect()]
    other = sorted(set(latest_storage_ids(context.instance, FEATURES_KEY, set(days) - have)))
    reads = {}
    if other:
        versions = current_versions(context.instance, FEATURES_KEY, other)
        store = context.resources.lake_io_manager.store()
        frames.append(
            store.scan_parquet([v.object_key for v in versions]).collect().select(columns)
        )
        reads = {v.partition: v.storage_id for v in versions}
    return pl.concat(frames), reads


def _model_metadata(context, config: TrainingConfig, result, champion: dict | None) -> dict:
    import sklearn

    features_partitions = context.asset_partition_keys_for_input("features")
    return {
        "training_window": dg.MetadataValue.json(
            {"first_day": features_partitions[0], "last_day": features_partitions[-1]}
        ),
        "rows_train": dg.MetadataValue.int(result.rows_train),
        "rows_holdout": dg.MetadataValue.int(result.rows_holdout),
        "trained_days": dg.MetadataValue.json(result.trained_days),
        "holdout_days": dg.MetadataValue.json(result.holdout_days),
        "features": dg.MetadataValue.json(result.feature_columns),
        "hyperparameters": dg.MetadataValue.json(config.model_dump()),
        "holdout_mae": dg.MetadataValue.float(result.metrics["mae"]),
        "holdout_mape": dg.MetadataValue.float(result.metrics["mape"]),
        "holdout_r2": dg.MetadataValue.float(result.metrics["r2"]),
        "baseline_mae": dg.MetadataValue.float(result.baseline_metrics["mae"]),
        "baseline_mape": dg.MetadataValue.float(result.baseline_metrics["mape"]),
        "baseline_r2": dg.MetadataValue.float(result.baseline_metrics["r2"]),
        "champion_comparison": dg.MetadataValue.json(champion),
        "training_seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "library_versions": dg.MetadataValue.json(_library_versions(sklearn)),
    }


def _library_versions(sklearn) -> dict[str, str]:
    import numpy
    import skops

    return {
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
        "numpy": numpy.__version__,
        "polars": pl.__version__,
    }


def _check_results(context, config: TrainingConfig, result, champion: dict | None):
    """Blocking checks: beat the naive baseline; be no worse than the champion beyond tolerance."""
    week = context.partition_key
    mape, baseline = result.metrics["mape"], result.baseline_metrics["mape"]
    failures = {}
    if not mape < baseline:
        failures[week] = {
            "problem": f"holdout MAPE {mape:.4f} does not beat the baseline {baseline:.4f}"
        }
    yield from evaluations(
        context, BEATS_BASELINE, failures, {week: {"mape": mape, "baseline_mape": baseline}}
    )
    failures = {}
    figures = {"mape": mape, "champion": "none yet"}
    if champion is not None:
        compared = {k: v for k, v in champion["compared_on"].items() if k != "feature_versions"}
        figures = {"champion": champion["champion"], "compared_on": compared}
        if champion["live"] is None:
            failures[week] = {
                "problem": (
                    "no feature rows that neither this model nor the champion "
                    f"{describe_model(champion['champion'])} was trained on: cannot compare"
                )
            }
        else:
            ours, theirs = champion["challenger"]["mape"], champion["live"]["mape"]
            limit = theirs * (1 + config.champion_tolerance)
            figures.update(challenger_mape=ours, champion_mape=theirs, limit=limit)
            if ours > limit:
                failures[week] = {
                    "problem": (
                        f"MAPE {ours:.4f} on {compared['rows']} rows of {compared['first_day']}"
                        f"..{compared['last_day']} is worse than the champion's {theirs:.4f} "
                        f"({describe_model(champion['champion'])}) by more than "
                        f"{config.champion_tolerance:.0%}"
                    )
                }
    yield from evaluations(context, NOT_WORSE, failures, {week: figures})
