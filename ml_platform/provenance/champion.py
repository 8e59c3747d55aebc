"""What the instance says about models and the champion: history, checks, live artifact."""

from __future__ import annotations

import dagster as dg

from ml_platform.models.artifacts import ArtifactError, load_model

PRICE_MODEL_KEY = dg.AssetKey(["models", "price_model"])
CHAMPION_KEY = dg.AssetKey(["models", "champion"])
PROMOTION_METADATA = "ml_platform/promotion"
MODEL_CHECKS = ("beats_naive_baseline", "not_worse_than_champion")


def champion_history(instance: dg.DagsterInstance) -> list[dict]:
    """Every promotion, oldest first, each with the storage id of its champion materialization."""
    records = instance.fetch_materializations(CHAMPION_KEY, limit=10_000, ascending=True).records
    history = []
    for record in records:
        entry = record.asset_materialization.metadata.get(PROMOTION_METADATA)
        if entry is not None:
            history.append(
                {
                    **entry.value,
                    "champion_storage_id": record.storage_id,
                    "champion_run_id": record.run_id,
                }
            )
    return history


def current_champion(instance: dg.DagsterInstance) -> dict | None:
    records = instance.fetch_materializations(CHAMPION_KEY, limit=1).records
    if not records:
        return None
    record = records[0]
    promotion = record.asset_materialization.metadata[PROMOTION_METADATA].value
    return {**promotion, "champion_storage_id": record.storage_id, "champion_run_id": record.run_id}


def latest_model_materialization(instance: dg.DagsterInstance, week: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PRICE_MODEL_KEY, asset_partitions=[week]), limit=1
    ).records
    return records[0] if records else None


def checks_passed(instance: dg.DagsterInstance, week: str, run_id: str) -> tuple[bool, str]:
    """Whether both blocking model checks passed for the model a run wrote; else why not."""
    for name in MODEL_CHECKS:
        key = dg.AssetCheckKey(PRICE_MODEL_KEY, name)
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
        execution = next((h for h in history if h.run_id == run_id and h.partition == week), None)
        if execution is None:
            return False, f"check {name} never ran on it"
        if execution.status.value != "SUCCEEDED":
            problem = ""
            if execution.event and execution.event.dagster_event:
                evaluation = execution.event.dagster_event.event_specific_data
                problem = getattr(evaluation, "metadata", {}).get("problem")
                problem = f": {problem.value}" if problem is not None else ""
            return False, f"check {name} {execution.status.value.lower()}{problem}"
    return True, "all checks passed"


def promotion_from_record(record, week: str) -> dict:
    """The promotion fields that name a model materialization exactly."""
    meta = record.asset_materialization.metadata
    return {
        "model_week": week,
        "model_run_id": record.run_id,
        "model_storage_id": record.storage_id,
        "model_uri": meta["dagster/uri"].value,
        "model_key": meta["ml_platform/object_key"].value,
        "model_sha256": meta["ml_platform/sha256"].value,
        "model_holdout_mape": meta["holdout_mape"].value if "holdout_mape" in meta else None,
    }


def load_champion_model(promotion: dict, store):
    """The fitted pipeline a promotion names, verified against its recorded sha256."""
    data = store.get(promotion["model_key"])
    if data is None:
        raise ArtifactError(f"{promotion['model_uri']}: the artifact no longer exists")
    return load_model(data, promotion["model_sha256"], promotion["model_uri"])
