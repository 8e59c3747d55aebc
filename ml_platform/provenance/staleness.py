"""Stale partitions and why, from the exact inputs each current materialization read.

A partition's current (latest) materialization is stale when
- ``new_upstream_data``: an input partition it read has since been materialized again with a
  different data version (Dagster's own staleness compares a partitioned input's latest
  version only through its partition mapping and timestamps; this compares what was read);
- ``new_code_version``: it was written by another code version than the asset's current one;
- ``new_champion``: quotes scored by a champion other than the live one;
- ``upstream_stale``: an input version it read is current but itself stale, so rebuilding
  that input will make this one stale too (a backfill must include both).

The champion itself is never reported: which model is live is a promotion decision. Its
reasons are still computed (from the exact model materialization it made live), so quotes
made by a live model that is itself stale, because the features it trained on changed,
report ``upstream_stale`` through the champion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import dagster as dg

from ml_platform.automation import CONTENT_HASH
from ml_platform.provenance.champion import CHAMPION_KEY, PRICE_MODEL_KEY
from ml_platform.provenance.impact import _topological_downstream
from ml_platform.provenance.lineage import CODE_VERSION_TAG, DATA_VERSION_TAG, fetch_by_storage_ids
from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.storage.current import latest_storage_ids


@dataclass
class StalePartition:
    asset: str
    partition: str | None
    storage_id: int
    run_id: str
    reasons: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def latest_records(
    instance: dg.DagsterInstance, node, partitions: set[str] | None = None
) -> dict[str | None, object]:
    """Partition (None: unpartitioned) -> its latest materialization record, for
    ``partitions`` (None: every partition)."""
    key = node.key
    if not node.is_partitioned:
        records = instance.fetch_materializations(key, limit=1).records
        return {None: records[0]} if records else {}
    ids = latest_storage_ids(instance, key, partitions)
    return {r.partition_key: r for r in fetch_by_storage_ids(instance, key, ids.values())}


def stale_partitions(
    instance: dg.DagsterInstance, asset_graph, exclude: tuple[dg.AssetKey, ...] = (CHAMPION_KEY,)
) -> list[StalePartition]:
    """Every stale current partition of every materializable asset, in graph order."""
    roots = {n.key for n in asset_graph.asset_nodes if n.is_materializable and not n.parent_keys}
    order = sorted(roots) + _topological_downstream(asset_graph, roots)
    latest: dict[str, dict] = {}
    stale: dict[tuple[str, str | None], StalePartition] = {}
    hidden: set[tuple[str, str | None]] = set()  # stale but not reported (the champion)
    for key in order:
        node = asset_graph.get(key)
        if not node.is_materializable:
            continue
        asset = key.to_user_string()
        latest[asset] = latest_records(instance, node)
        for partition, record in sorted(latest[asset].items(), key=lambda kv: str(kv[0])):
            if key == CHAMPION_KEY:
                reasons = _champion_reasons(instance, asset_graph, record, latest, stale)
            else:
                reasons = _reasons(record, node, latest, stale)
            if reasons:
                stale[(asset, partition)] = StalePartition(
                    asset, partition, record.storage_id, record.run_id, reasons
                )
                if key in exclude:
                    hidden.add((asset, partition))
    return [s for k, s in stale.items() if k not in hidden]


def partition_reasons(
    instance: dg.DagsterInstance, asset_graph, key: dg.AssetKey, partitions: list[str]
) -> dict[str, list[dict] | None]:
    """Per partition of ``key``: why its current materialization is stale (empty: it is not),
    or None when it has none. Reads only these partitions and the input partitions they read;
    whether those inputs are stale themselves is not followed (``stale_partitions`` does)."""
    node = asset_graph.get(key)
    current = latest_records(instance, node, set(partitions))
    reads: dict[str, set[str]] = {}
    for record in current.values():
        entry = record.asset_materialization.metadata.get(INPUTS_METADATA_KEY)
        for upstream in entry.value if entry is not None else []:
            wanted = reads.setdefault(upstream["asset"], set())
            wanted.update(read["partition"] for read in upstream["partitions"])
    latest = {
        asset: latest_records(
            instance, asset_graph.get(dg.AssetKey.from_user_string(asset)), wanted
        )
        for asset, wanted in reads.items()
    }
    return {
        partition: _reasons(current[partition], node, latest, {}) if partition in current else None
        for partition in partitions
    }


def _champion_reasons(instance, asset_graph, record, latest: dict, stale: dict) -> list[dict]:
    """The live champion is stale when the exact model it made live is stale.

    Only that: a newer model of the same week is a candidate for promotion, not a reason.
    The model's reasons are those of the exact materialization the promotion names, which
    need not be its week's latest (a rollback, a retrain that failed its checks).
    """
    from ml_platform.provenance.champion import describe_model, promotion_from_record

    entry = record.asset_materialization.metadata.get(INPUTS_METADATA_KEY)
    model_asset = PRICE_MODEL_KEY.to_user_string()
    reasons = []
    for upstream in entry.value if entry is not None else []:
        if upstream["asset"] != model_asset:
            continue
        for read in upstream["partitions"]:
            now = latest.get(model_asset, {}).get(read["partition"])
            if now is not None and now.storage_id == read.get("storage_id"):
                model_stale = stale.get((model_asset, read["partition"]))
                model_reasons = model_stale.reasons if model_stale else []
                model_record = now
            elif read.get("storage_id") is not None:
                found = fetch_by_storage_ids(instance, PRICE_MODEL_KEY, [read["storage_id"]])
                if not found:
                    continue
                model_record = found[0]
                node = asset_graph.get(PRICE_MODEL_KEY)
                model_reasons = _reasons(model_record, node, latest, stale)
            else:
                continue
            if not model_reasons:
                continue
            shown = "; ".join(r["detail"] for r in model_reasons[:3])
            more = len(model_reasons) - 3
            model = describe_model(promotion_from_record(model_record))
            reasons.append(
                {
                    "kind": "upstream_stale",
                    "upstream": model_asset,
                    "partition": read["partition"],
                    "read_storage_id": read.get("storage_id"),
                    "detail": (
                        f"the live model {model} is stale: {shown}"
                        + (f"; and {more} more" if more > 0 else "")
                    ),
                }
            )
    return reasons


def _reasons(record, node, latest: dict[str, dict], stale: dict) -> list[dict]:
    mat = record.asset_materialization
    reasons = []
    written_by = (mat.tags or {}).get(CODE_VERSION_TAG)
    if node.code_version is not None and written_by != node.code_version:
        reasons.append(
            {
                "kind": "new_code_version",
                "detail": f"written by code version {written_by}, current is {node.code_version}",
            }
        )
    entry = mat.metadata.get(INPUTS_METADATA_KEY)
    for upstream in entry.value if entry is not None else []:
        asset = upstream["asset"]
        for read in upstream["partitions"]:
            now = latest.get(asset, {}).get(read["partition"])
            reason = _input_reason(asset, read, now, stale)
            if reason:
                reasons.append(reason)
    return reasons


def _input_reason(asset: str, read: dict, now, stale: dict) -> dict | None:
    where = asset + (f" {read['partition']}" if read["partition"] else "")
    if now is None:
        return None
    if now.storage_id != read.get("storage_id"):
        if _same_content(read, now):  # re-materialized with identical content: nothing to redo
            return None
        if asset == CHAMPION_KEY.to_user_string():
            promotion = now.asset_materialization.metadata["ml_platform/promotion"].value
            return {
                "kind": "new_champion",
                "upstream": asset,
                "read_storage_id": read.get("storage_id"),
                "current_storage_id": now.storage_id,
                "detail": (
                    f"scored by champion materialization {read.get('storage_id')}; live is "
                    f"{now.storage_id} (model week {promotion['model_week']}, "
                    f"run {promotion['model_run_id']})"
                ),
            }
        return {
            "kind": "new_upstream_data",
            "upstream": asset,
            "partition": read["partition"],
            "read_storage_id": read.get("storage_id"),
            "current_storage_id": now.storage_id,
            "detail": (
                f"{where}: read materialization {read.get('storage_id')} (run {read['run_id']}), "
                f"now {now.storage_id} (run {now.run_id})"
            ),
        }
    if (asset, read["partition"]) in stale:
        detail = f"{where} is itself stale"
        if asset == CHAMPION_KEY.to_user_string():  # never reported itself: say why here
            why = "; ".join(r["detail"] for r in stale[(asset, read["partition"])].reasons)
            detail = f"{detail}: {why}"
        return {
            "kind": "upstream_stale",
            "upstream": asset,
            "partition": read["partition"],
            "detail": detail,
        }
    return None


def _same_content(read: dict, now) -> bool:
    """Whether the current version holds the content that was read.

    The same data version says so (for the champion, the same model made live again). Else
    the per-partition content hash the IO managers record decides, as automation decides
    (``ml_platform.automation.ContentChanged``): a range run gives every partition of an
    output one data version, the whole range's, so the same day built alone or in another
    range has another data version with the same rows.
    """
    now_version = (now.asset_materialization.tags or {}).get(DATA_VERSION_TAG)
    if now_version is not None and now_version == read.get("data_version"):
        return True
    current = now.asset_materialization.metadata.get(CONTENT_HASH)
    return (
        bool(read.get("content_hash"))
        and current is not None
        and (current.value == read["content_hash"])
    )
