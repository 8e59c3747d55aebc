"""models/price_model (weekly) and models/champion (the promotion log)."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ml_platform.assets.features import FEATURES_KEY
from ml_platform.automation import TRAINING_WINDOW
from ml_platform.checks import evaluations
from ml_platform.execution import TRAINING_POD_TAGS, WAREHOUSE_POOL
from ml_platform.models.artifacts import ArtifactError, TrainedModel
from ml_platform.models.training import (
    FEATURES,
    Hyperparameters,
    TrainingDataError,
    predict,
    regression_metrics,
    train_and_evaluate,
)
from ml_platform.partitions import training_window, weekly_partitions
from ml_platform.provenance.champion import (
    CHAMPION_KEY,
    PRICE_MODEL_KEY,
    PROMOTION_METADATA,
    champion_history,
    checks_passed,
    current_champion,
    latest_model_materialization,
    load_champion_model,
    promotion_from_record,
)
from ml_platform.provenance.reads import PartitionRead, record_step_reads

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
def price_model(context: dg.AssetExecutionContext, config: TrainingConfig, features: pl.DataFrame):
    try:
        result = train_and_evaluate(features, config)
    except TrainingDataError as e:
        raise dg.Failure(
            description=f"cannot train week {context.partition_key}: {e}", allow_retries=False
        ) from None
    champion = _champion_on_holdout(context, result.holdout)
    yield dg.Output(
        TrainedModel(pipeline=result.pipeline, feature_columns=FEATURES),
        metadata=_model_metadata(context, config, result, champion),
    )
    yield from _check_results(context, config, result, champion)


def _champion_on_holdout(context: dg.AssetExecutionContext, holdout: pl.DataFrame) -> dict | None:
    """The live champion's metrics on this model's holdout rows, so both face the same data."""
    record = current_champion(context.instance)
    if record is None:
        return None
    model = load_champion_model(record, context.resources.lake_io_manager.store())
    metrics = regression_metrics(holdout["price_eur"].to_numpy(), predict(model, holdout))
    return {"week": record["model_week"], "run_id": record["model_run_id"], **metrics}


def _model_metadata(context, config: TrainingConfig, result, champion: dict | None) -> dict:
    import sklearn

    features_partitions = context.asset_partition_keys_for_input("features")
    return {
        "training_window": dg.MetadataValue.json(
            {"first_day": features_partitions[0], "last_day": features_partitions[-1]}
        ),
        "rows_train": dg.MetadataValue.int(result.rows_train),
        "rows_holdout": dg.MetadataValue.int(result.rows_holdout),
        "features": dg.MetadataValue.json(FEATURES),
        "hyperparameters": dg.MetadataValue.json(config.model_dump()),
        "holdout_mae": dg.MetadataValue.float(result.metrics["mae"]),
        "holdout_mape": dg.MetadataValue.float(result.metrics["mape"]),
        "holdout_r2": dg.MetadataValue.float(result.metrics["r2"]),
        "baseline_mae": dg.MetadataValue.float(result.baseline_metrics["mae"]),
        "baseline_mape": dg.MetadataValue.float(result.baseline_metrics["mape"]),
        "baseline_r2": dg.MetadataValue.float(result.baseline_metrics["r2"]),
        "champion_on_holdout": dg.MetadataValue.json(champion),
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
    figures = {"mape": mape, "champion": champion or "none yet"}
    if champion is not None:
        limit = champion["mape"] * (1 + config.champion_tolerance)
        figures["limit"] = limit
        if mape > limit:
            failures[week] = {
                "problem": (
                    f"holdout MAPE {mape:.4f} is worse than champion week {champion['week']}'s "
                    f"{champion['mape']:.4f} by more than {config.champion_tolerance:.0%}"
                )
            }
    yield from evaluations(context, NOT_WORSE, failures, {week: figures})


class PromotionConfig(dg.Config):
    """Which model to make live, and why. With no week: the newest model that passed its checks."""

    week: str | None = None
    reason: str = "automatic: the newest model that passed its checks"
    promoted_by: str = "automation"


def promote_condition() -> dg.AutomationCondition:
    """After a new model is materialized (its blocking checks decide whether it goes live)."""
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after_new_model")


@dg.asset(
    key=CHAMPION_KEY,
    description=(
        "The live price model. Each materialization is a promotion event naming the exact "
        "price_model partition and materialization that went live, who promoted it and why; "
        "the stored table is the whole promotion history. Roll back by materializing it with "
        "an earlier week (launchpad config or `ml-platform rollback`)."
    ),
    group_name="models",
    kinds={"polars"},
    code_version="1",
    deps=[PRICE_MODEL_KEY],
    io_manager_key="warehouse_io_manager",
    required_resource_keys={"lake_io_manager"},
    output_required=False,
    pool=WAREHOUSE_POOL,
    automation_condition=promote_condition(),
    metadata={
        "ml_platform/when_missing": "no model has been promoted yet: run `ml-platform promote --week W`"
    },
)
def champion(context: dg.AssetExecutionContext, config: PromotionConfig):
    instance = context.instance
    current = current_champion(instance)
    chosen = _chosen_model(instance, config)
    if chosen is None:
        context.log.info("no materialized model has passed its checks; the champion is unchanged")
        return
    week, record = chosen
    promotion = promotion_from_record(record, week)
    if (
        config.week is None
        and current is not None
        and current["model_run_id"] == promotion["model_run_id"]
        and current["model_week"] == week
    ):
        context.log.info(f"week {week} (run {record.run_id}) is already live; nothing to promote")
        return
    try:  # never make live an artifact that cannot be loaded
        load_champion_model(promotion, context.resources.lake_io_manager.store())
    except ArtifactError as e:
        raise dg.Failure(
            description=f"refusing to promote week {week}: {e}", allow_retries=False
        ) from None
    _record_model_read(context, record, week, promotion)
    promotion.update(
        promoted_at=datetime.now(UTC).isoformat(),
        promoted_by=config.promoted_by,
        reason=config.reason,
        previous_week=current["model_week"] if current else None,
        previous_run_id=current["model_run_id"] if current else None,
    )
    history = [*champion_history(instance), promotion]
    window = record.asset_materialization.metadata.get("training_window")
    yield dg.Output(
        _history_frame(history),
        # The live model decides every quote: re-promoting the same artifact changes nothing
        # downstream, promoting another one makes every quote it did not make stale.
        data_version=dg.DataVersion(promotion["model_sha256"][:24]),
        metadata={
            PROMOTION_METADATA: dg.MetadataValue.json(promotion),
            "model_week": dg.MetadataValue.text(week),
            "promoted_by": dg.MetadataValue.text(config.promoted_by),
            "reason": dg.MetadataValue.text(config.reason),
            "summary": dg.MetadataValue.md(_promotion_markdown(promotion)),
            # Automation adds new quote days only after the live model's training window.
            **({TRAINING_WINDOW: window} if window is not None else {}),
        },
    )


def _chosen_model(instance: dg.DagsterInstance, config: PromotionConfig):
    """(week, materialization record) to promote; fails clearly for a bad explicit week."""
    if config.week is not None:
        record = latest_model_materialization(instance, config.week)
        if record is None:
            raise dg.Failure(
                description=(
                    f"week {config.week} has no materialized price_model; train it first "
                    f"(ml-platform train --week {config.week})"
                ),
                allow_retries=False,
            )
        passed, why = checks_passed(instance, config.week, record.run_id)
        if not passed:
            raise dg.Failure(
                description=f"week {config.week}'s model (run {record.run_id}) cannot go live: {why}",
                allow_retries=False,
            )
        return config.week, record
    for week in sorted(instance.get_materialized_partitions(PRICE_MODEL_KEY), reverse=True):
        record = latest_model_materialization(instance, week)
        if record is not None and checks_passed(instance, week, record.run_id)[0]:
            return week, record
    return None


def _record_model_read(context, record, week: str, promotion: dict) -> None:
    """The champion's provenance names the exact model materialization it made live."""
    meta = record.asset_materialization.metadata
    record_step_reads(
        context.get_step_execution_context(),
        PRICE_MODEL_KEY,
        [
            PartitionRead(
                partition=week,
                run_id=record.run_id,
                uri=promotion["model_uri"],
                sha256=promotion["model_sha256"],
                size=meta["ml_platform/size_bytes"].value,
                generation=meta["ml_platform/generation"].value,
                rows=None,
                content_hash=None,
                storage_id=record.storage_id,
                data_version=(record.asset_materialization.tags or {}).get("dagster/data_version"),
            )
        ],
    )


HISTORY_COLUMNS = {
    "promoted_at": pl.Utf8,
    "model_week": pl.Utf8,
    "model_run_id": pl.Utf8,
    "model_storage_id": pl.Int64,
    "model_uri": pl.Utf8,
    "model_key": pl.Utf8,
    "model_sha256": pl.Utf8,
    "model_holdout_mape": pl.Float64,
    "promoted_by": pl.Utf8,
    "reason": pl.Utf8,
    "previous_week": pl.Utf8,
    "previous_run_id": pl.Utf8,
}


def _history_frame(history: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame(
        [{k: h.get(k) for k in HISTORY_COLUMNS} for h in history], schema=HISTORY_COLUMNS
    )
    return frame.with_columns(
        pl.col("promoted_at").str.to_datetime(time_zone="UTC", time_unit="us")
    )


def _promotion_markdown(p: dict) -> str:
    previous = (
        f"week {p['previous_week']} (run `{p['previous_run_id']}`)"
        if p["previous_week"]
        else "none"
    )
    return (
        f"**Live: price_model week {p['model_week']}** (run `{p['model_run_id']}`, "
        f"materialization {p['model_storage_id']})\n\n"
        f"- promoted by: {p['promoted_by']}\n- reason: {p['reason']}\n"
        f"- artifact: `{p['model_uri']}` (sha256 `{p['model_sha256'][:16]}…`)\n"
        f"- previous champion: {previous}\n"
    )
