"""What the instance says about models and the champion: history, checks, live artifact.

One source of truth for "live": the champion's latest materialization event. Its
``ml_platform/promotion`` metadata names the exact model version that went live (price_model
materialization storage id, run, artifact sha256). `ml-platform champion`, predictions (they
read the promotion of the champion materialization they loaded), rollback and retention all
read it from there; the stored history table is a copy for SQL readers.

Promotions are serialized (:func:`promotion_lock`): each one reads the history and writes
the next entry while holding the instance-wide promotion lock, so two promotions at once can
neither lose an entry nor record the wrong previous model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg

from ml_platform.models.artifacts import ArtifactError, TrainedModel, load_model

PRICE_MODEL_KEY = dg.AssetKey(["models", "price_model"])
CHAMPION_KEY = dg.AssetKey(["models", "champion"])
PROMOTION_METADATA = "ml_platform/promotion"
MODEL_CHECKS = ("beats_naive_baseline", "not_worse_than_champion")
FEATURE_COLUMNS_KEY = "ml_platform/feature_columns"

# The promotion lock: a Dagster concurrency key with one slot, claimed by the champion step
# itself (not a step pool), so it holds whatever the instance's pool defaults are.
PROMOTION_LOCK = "ml_platform/promotions"
_LOCK_STEP = "models__champion/promotion"
_process_lock = threading.Lock()  # instances without concurrency tables (in-memory)


# Champion materializations fetched per query while reading the whole history.
HISTORY_PAGE = 1_000


def champion_history(instance: dg.DagsterInstance) -> list[dict]:
    """Every promotion, oldest first, each with the storage id of its champion materialization."""
    history = []
    for record in _all_champion_records(instance):
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


def _all_champion_records(instance: dg.DagsterInstance):
    """Every champion materialization, oldest first, page by page (a fixed limit would cut
    the newest off, and with them the live model)."""
    cursor = None
    while True:
        page = instance.fetch_materializations(
            CHAMPION_KEY, limit=HISTORY_PAGE, ascending=True, cursor=cursor
        )
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def current_champion(instance: dg.DagsterInstance) -> dict | None:
    """The live promotion: what the champion's latest materialization names."""
    records = instance.fetch_materializations(CHAMPION_KEY, limit=1).records
    return _promotion(records[0]) if records else None


def promotion_at(instance: dg.DagsterInstance, champion_storage_id: int) -> dict:
    """The promotion one champion materialization names (the one a step loaded)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CHAMPION_KEY, storage_ids=[champion_storage_id]), limit=1
    ).records
    if not records:
        raise LookupError(f"no champion materialization with storage id {champion_storage_id}")
    return _promotion(records[0])


def _promotion(record) -> dict:
    promotion = record.asset_materialization.metadata[PROMOTION_METADATA].value
    return {**promotion, "champion_storage_id": record.storage_id, "champion_run_id": record.run_id}


def latest_model_materialization(instance: dg.DagsterInstance, week: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PRICE_MODEL_KEY, asset_partitions=[week]), limit=1
    ).records
    return records[0] if records else None


def latest_passing_model(instance: dg.DagsterInstance, week: str, page: int = 20):
    """The week's newest model that passed both blocking checks, and the newer ones that
    did not (newest first, with why). A model failing its checks is stored like any
    materialization; it must not hide the good model it was trained after."""
    refused = []
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=PRICE_MODEL_KEY, asset_partitions=[week]),
            limit=page,
            cursor=cursor,
        )
        for record in result.records:
            passed, why = checks_passed(instance, record)
            if passed:
                return record, refused
            refused.append((record, why))
        if not result.has_more:
            return None, refused
        cursor = result.cursor


def model_materialization(instance: dg.DagsterInstance, storage_id: int):
    """The price_model materialization with this storage id (None: there is none)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PRICE_MODEL_KEY, storage_ids=[storage_id]), limit=1
    ).records
    return records[0] if records else None


def describe_model(entry: dict) -> str:
    """A promotion's model, by exact version."""
    return (
        f"week {entry['model_week']} (run {entry['model_run_id']}, materialization "
        f"{entry['model_storage_id']}, sha256 {str(entry['model_sha256'])[:12]})"
    )


def checks_passed(instance: dg.DagsterInstance, record) -> tuple[bool, str]:
    """Whether both blocking checks passed on exactly this model materialization; else why not.

    Reads the evaluations of the run that wrote it (one run, one week: a handful of events),
    keeping those of its partition that target this materialization; no other week's or
    run's check history can hide or stand in for them.
    """
    week = record.partition_key
    found: dict[str, object] = {}
    events = instance.get_records_for_run(
        record.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    for event in events:
        evaluation = event.event_log_entry.dagster_event.event_specific_data
        target = evaluation.target_materialization_data
        if (
            evaluation.asset_key == PRICE_MODEL_KEY
            and evaluation.partition == week
            and (target is None or target.storage_id == record.storage_id)
        ):
            found[evaluation.check_name] = evaluation  # ascending: the last one counts
    for name in MODEL_CHECKS:
        evaluation = found.get(name)
        if evaluation is None:
            return False, f"check {name} never ran on it"
        if not evaluation.passed:
            problem = evaluation.metadata.get("problem")
            return False, f"check {name} failed" + (f": {problem.value}" if problem else "")
    return True, "all checks passed"


def promotion_from_record(record, week: str | None = None) -> dict:
    """The promotion fields that name a model materialization exactly."""
    meta = record.asset_materialization.metadata
    window = meta.get("training_window")
    return {
        "model_week": week or record.partition_key,
        "model_run_id": record.run_id,
        "model_storage_id": record.storage_id,
        "model_uri": meta["dagster/uri"].value,
        "model_key": meta["ml_platform/object_key"].value,
        "model_sha256": meta["ml_platform/sha256"].value,
        "model_holdout_mape": meta["holdout_mape"].value if "holdout_mape" in meta else None,
        "model_feature_columns": (
            meta[FEATURE_COLUMNS_KEY].value if FEATURE_COLUMNS_KEY in meta else None
        ),
        "model_training_window": window.value if window is not None else None,
    }


def training_window(promotion: dict) -> tuple[date, date]:
    """First and last feature day the promoted model saw (older promotions: its week's 4 weeks)."""
    window = promotion.get("model_training_window")
    if window:
        return date.fromisoformat(window["first_day"]), date.fromisoformat(window["last_day"])
    week = date.fromisoformat(promotion["model_week"])
    return week - timedelta(weeks=3), week + timedelta(days=6)


def load_champion_model(promotion: dict, store) -> TrainedModel:
    """The model a promotion names, verified against its recorded sha256, with its columns."""
    data = store.get(promotion["model_key"])
    if data is None:
        raise ArtifactError(f"{promotion['model_uri']}: the artifact no longer exists")
    pipeline = load_model(data, promotion["model_sha256"], promotion["model_uri"])
    columns = promotion.get("model_feature_columns") or [
        str(c) for c in getattr(pipeline, "feature_names_in_", [])
    ]
    return TrainedModel(pipeline, columns, source=dict(promotion))


def rollback_target(history: list[dict]) -> tuple[dict | None, str]:
    """The model live before the live one (the promotion to restore), and what to tell.

    Rollbacks undo promotions, as a stack: a second rollback goes back one model further,
    never to the model the first one rolled back from. Promotions that re-promoted the live
    model changed nothing. With no earlier model left there is nothing to roll back to, and
    the message says why.
    """
    if not history:
        return None, "nothing to roll back to: no model has been promoted yet"
    live = history[-1]
    stack = live_models(history)
    if len(stack) < 2:
        return None, (
            f"nothing to roll back to: the live model, {describe_model(live)}, is the first "
            f"of the {len(history)} promotion(s) not undone by a rollback; the champion is "
            "unchanged (`ml-platform promote --model STORAGE_ID` makes any model live)"
        )
    entry = stack[-2]
    return entry, (
        f"rolling back from week {live['model_week']} to week {entry['model_week']}: "
        f"live is {describe_model(live)}, restoring {describe_model(entry)}, "
        f"which was live from {entry['promoted_at']}"
    )


def live_models(history: list[dict]) -> list[dict]:
    """The promotions still standing, oldest first: each promotion of another model pushes
    it, each rollback pops the model it rolled back from."""
    stack: list[dict] = []
    for entry in history:
        if is_rollback(entry) and stack:
            stack.pop()
        if stack and stack[-1]["model_storage_id"] == entry["model_storage_id"]:
            continue  # the live model again: nothing changed
        stack.append(entry)
    return stack


def is_rollback(entry: dict) -> bool:
    """Promotions record it since it mattered to the next rollback; older ones say it in
    their reason, as `ml-platform rollback` writes it."""
    if "rollback" in entry:
        return bool(entry["rollback"])
    return str(entry.get("reason") or "").startswith("rollback:")


@contextmanager
def promotion_lock(
    instance: dg.DagsterInstance,
    run_id: str,
    log=None,
    timeout: float = 600.0,
    poll: float = 0.2,
) -> Iterator[None]:
    """Hold the instance-wide promotion lock (one Dagster concurrency slot) while promoting.

    Works the same on SQLite and Postgres instances and across processes and pods. A lock
    left by a run that is no longer running (a killed pod) is freed; waiting longer than
    ``timeout`` fails clearly, naming the run that holds it.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        with _process_lock:
            yield
        return
    if storage.get_concurrency_info(PROMOTION_LOCK).slot_count != 1:
        storage.set_concurrency_slots(PROMOTION_LOCK, 1)
    deadline = time.monotonic() + timeout
    announced = False
    while not storage.claim_concurrency_slot(PROMOTION_LOCK, run_id, _LOCK_STEP).is_claimed:
        holders = _free_abandoned_locks(instance)
        if time.monotonic() > deadline:
            storage.free_concurrency_slot_for_step(run_id, _LOCK_STEP)
            raise dg.Failure(
                description=(
                    f"waited {timeout:.0f}s for the promotion lock, held by run(s) "
                    f"{', '.join(holders) or '?'}; try again when that promotion has finished"
                ),
                allow_retries=False,
            )
        if log is not None and not announced:
            log.info(f"waiting for the promotion in run(s) {', '.join(holders)} to finish")
            announced = True
        time.sleep(poll)
    try:
        yield
    finally:
        storage.free_concurrency_slot_for_step(run_id, _LOCK_STEP)


def _free_abandoned_locks(instance: dg.DagsterInstance) -> list[str]:
    """Free the lock of runs that ended without releasing it; the runs still holding it."""
    storage = instance.event_log_storage
    holders = []
    for slot in storage.get_concurrency_info(PROMOTION_LOCK).claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if run is None or run.is_finished:
            storage.free_concurrency_slot_for_step(slot.run_id, slot.step_key)
        else:
            holders.append(slot.run_id)
    return holders
