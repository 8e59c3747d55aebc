"""models/champion: the promotion log; its latest materialization is the live model."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ml_platform.automation import TRAINING_WINDOW
from ml_platform.execution import WAREHOUSE_POOL
from ml_platform.models.artifacts import ArtifactError
from ml_platform.provenance.champion import (
    CHAMPION_KEY,
    PRICE_MODEL_KEY,
    PROMOTION_METADATA,
    champion_history,
    checks_passed,
    describe_model,
    latest_passing_model,
    load_champion_model,
    model_materialization,
    promotion_from_record,
    promotion_lock,
    rollback_target,
)
from ml_platform.provenance.reads import PartitionRead, record_step_reads


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
        record = _chosen_model(instance, config, history, context.log.warning)
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
            rollback=config.rollback,
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


def _chosen_model(instance: dg.DagsterInstance, config: PromotionConfig, history: list[dict], warn):
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
        record, refused = latest_passing_model(instance, config.week)
        if record is None and not refused:
            _refuse(
                f"week {config.week} has no materialized price_model; train it first "
                f"(ml-platform train --week {config.week})"
            )
        if record is None:
            newest, why = refused[0]
            _refuse(
                f"week {config.week}'s model (run {newest.run_id}, materialization "
                f"{newest.storage_id}) cannot go live: {why}"
                + (f"; nor can its {len(refused) - 1} older model(s)" if len(refused) > 1 else "")
            )
        for newer, why in refused:
            warn(
                f"week {config.week}'s newer model (materialization {newer.storage_id}) failed "
                f"its checks ({why}); promoting materialization {record.storage_id}, the "
                "newest that passed"
            )
        return record
    else:
        for week in sorted(instance.get_materialized_partitions(PRICE_MODEL_KEY), reverse=True):
            record, _ = latest_passing_model(instance, week)
            if record is not None:
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
