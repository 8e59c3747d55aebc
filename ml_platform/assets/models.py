"""models/price_model (weekly) and models/champion (the promotion log)."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl

from ml_platform.assets.features import FEATURES_KEY
from ml_platform.automation import TRAINING_WINDOW
from ml_platform.checks import evaluations
from ml_platform.execution import TRAINING_POD_TAGS, WAREHOUSE_POOL
from ml_platform.models.artifacts import ArtifactError, TrainedModel
from ml_platform.models.training import (
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
    describe_model,
    latest_model_materialization,
    load_champion_model,
    model_materialization,
    promotion_from_record,
    promotion_lock,
    rollback_target,
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
    frames = [features.filter(pl.col("partition_date").cast(pl.Utf8).is_in(wanted)).collect()]
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


class PromotionConfig(dg.Config):
    """Which model to make live, and why.

    By exact version (``model_storage_id``, the price_model materialization), by week (that
    week's latest model), as a rollback (the model live before the live one), or with none
    of these: the newest model that passed its checks.
    """

    week: str | None = None
    # The exact price_model materialization; with rollback: the target the caller expects.
    model_storage_id: int | None = None
    rollback: bool = False
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
        "price_model materialization (storage id, run, artifact sha256) that went live, the "
        "one live before it, who promoted it and why; the latest one is what is live. The "
        "stored table is the whole promotion history. Promotions are serialized. Roll back "
        "with `ml-platform rollback` (or launchpad config rollback: true): the exact model "
        "that was live before."
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
    # Reading the history and writing its next entry happen under one lock: a concurrent
    # promotion waits, so none is lost and each names the model that was live before it.
    with promotion_lock(instance, context.run.run_id, context.log):
        history = champion_history(instance)
        current = history[-1] if history else None
        record = _chosen_model(instance, config, history)
        if record is None:
            context.log.info(
                "no materialized model has passed its checks; the champion is unchanged"
            )
            return
        promotion = promotion_from_record(record)
        automatic = config.week is None and config.model_storage_id is None and not config.rollback
        if automatic and current is not None and current["model_storage_id"] == record.storage_id:
            context.log.info(f"{describe_model(promotion)} is already live; nothing to promote")
            return
        try:  # never make live an artifact that cannot be loaded
            load_champion_model(promotion, context.resources.lake_io_manager.store())
        except ArtifactError as e:
            raise dg.Failure(
                description=f"refusing to promote {describe_model(promotion)}: {e}",
                allow_retries=False,
            ) from None
        _record_model_read(context, record, promotion["model_week"], promotion)
        promotion.update(
            promoted_at=datetime.now(UTC).isoformat(),
            promoted_by=config.promoted_by,
            reason=config.reason,
            previous_week=current["model_week"] if current else None,
            previous_run_id=current["model_run_id"] if current else None,
            previous_model_storage_id=current["model_storage_id"] if current else None,
            previous_model_sha256=current["model_sha256"] if current else None,
        )
        if current is not None and current["model_storage_id"] == record.storage_id:
            context.log.info(f"re-promoting the live model {describe_model(promotion)}")
        week = promotion["model_week"]
        window = record.asset_materialization.metadata.get("training_window")
        yield dg.Output(
            _history_frame([*history, promotion]),
            # The live model decides every quote: re-promoting the same artifact changes
            # nothing downstream, promoting another one makes every quote it did not make stale.
            data_version=dg.DataVersion(promotion["model_sha256"][:24]),
            metadata={
                PROMOTION_METADATA: dg.MetadataValue.json(promotion),
                "model_week": dg.MetadataValue.text(week),
                # An identifier: text, not a number for the UI to plot.
                "model_storage_id": dg.MetadataValue.text(str(record.storage_id)),
                "promoted_by": dg.MetadataValue.text(config.promoted_by),
                "reason": dg.MetadataValue.text(config.reason),
                "summary": dg.MetadataValue.md(_promotion_markdown(promotion)),
                # Automation adds new quote days only after the live model's training window.
                **({TRAINING_WINDOW: window} if window is not None else {}),
            },
        )


def _refuse(description: str):
    raise dg.Failure(description=description, allow_retries=False)


def _chosen_model(instance: dg.DagsterInstance, config: PromotionConfig, history: list[dict]):
    """The price_model materialization to promote; fails clearly for a bad explicit choice."""
    if config.rollback:
        target, message = rollback_target(history)
        if target is None:
            _refuse(message)
        expected = config.model_storage_id
        if expected is not None and target["model_storage_id"] != expected:
            _refuse(
                f"the champion changed since this rollback was asked for: the model live "
                f"before the live one is now {describe_model(target)}, not materialization "
                f"{expected}; nothing was changed, run the rollback again"
            )
        record = model_materialization(instance, target["model_storage_id"])
        if record is None:
            _refuse(f"cannot roll back to {describe_model(target)}: its event no longer exists")
    elif config.model_storage_id is not None:
        record = model_materialization(instance, config.model_storage_id)
        if record is None:
            _refuse(f"no price_model materialization has storage id {config.model_storage_id}")
        if config.week is not None and record.partition_key != config.week:
            _refuse(
                f"price_model materialization {config.model_storage_id} is of week "
                f"{record.partition_key}, not {config.week}"
            )
    elif config.week is not None:
        record = latest_model_materialization(instance, config.week)
        if record is None:
            _refuse(
                f"week {config.week} has no materialized price_model; train it first "
                f"(ml-platform train --week {config.week})"
            )
    else:
        for week in sorted(instance.get_materialized_partitions(PRICE_MODEL_KEY), reverse=True):
            record = latest_model_materialization(instance, week)
            if record is not None and checks_passed(instance, record)[0]:
                return record
        return None
    passed, why = checks_passed(instance, record)
    if not passed:
        _refuse(
            f"week {record.partition_key}'s model (run {record.run_id}, materialization "
            f"{record.storage_id}) cannot go live: {why}"
        )
    return record


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
    "previous_model_storage_id": pl.Int64,
    "previous_model_sha256": pl.Utf8,
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
        f"week {p['previous_week']} (run `{p['previous_run_id']}`, materialization "
        f"{p.get('previous_model_storage_id')})"
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
