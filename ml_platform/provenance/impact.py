"""Forward provenance (impact): every materialization that used a stored version or raw file.

Walks the asset graph downstream from the starting materializations. For each child asset
its materializations are scanned once and indexed by the upstream storage ids their
``ml_platform/inputs`` name; a child materialization is impacted when it read any impacted
version. Superseded = no longer the latest materialization of its partition (or, for an
unpartitioned asset such as the champion, of the asset).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import dagster as dg

from ml_platform.provenance.lineage import SOURCE_FILES_KEY, inputs_of
from ml_platform.storage.current import latest_storage_ids

RAW_KEY = dg.AssetKey(["raw", "shipments"])
_PAGE = 1_000


@dataclass
class Impacted:
    asset: str
    partition: str | None
    storage_id: int
    run_id: str
    timestamp: float
    superseded: bool = False
    # Upstream (asset, storage id) pairs through which it was reached; empty for a start.
    via: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "asset": self.asset,
            "partition": self.partition,
            "storage_id": self.storage_id,
            "run_id": self.run_id,
            "timestamp": self.timestamp,
            "superseded": self.superseded,
            "via": [{"asset": a, "storage_id": i} for a, i in self.via],
        }


def all_materializations(instance: dg.DagsterInstance, records_filter) -> list:
    """Every materialization record an asset key or filter selects, oldest first (paged)."""
    records, cursor = [], None
    while True:
        result = instance.fetch_materializations(
            records_filter, limit=_PAGE, cursor=cursor, ascending=True
        )
        records.extend(result.records)
        if not result.has_more:
            return records
        cursor = result.cursor


def starts_for_partition(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None
) -> list:
    """Every stored version ever materialized of one partition (a bad drop may be re-landed)."""
    partitions = [partition] if partition else None
    return all_materializations(
        instance, dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions)
    )


def starts_for_file(instance: dg.DagsterInstance, uri: str, raw_key: dg.AssetKey = RAW_KEY) -> list:
    """Raw materializations whose landed source files include this URI (any generation)."""
    found = []
    for record in all_materializations(instance, raw_key):
        files = record.asset_materialization.metadata.get(SOURCE_FILES_KEY)
        if files is not None and any(f["uri"] == uri for f in files.value):
            found.append(record)
    return found


def impact(instance: dg.DagsterInstance, asset_graph, starts: list) -> list[Impacted]:
    """The start materializations and everything downstream that read them, graph order."""
    impacted: dict[int, Impacted] = {}
    by_asset: dict[dg.AssetKey, set[int]] = defaultdict(set)
    for record in starts:
        impacted[record.storage_id] = _impacted(record)
        by_asset[record.asset_key].add(record.storage_id)
    for key in _topological_downstream(asset_graph, set(by_asset)):
        parents = [p for p in asset_graph.get(key).parent_keys if by_asset.get(p)]
        if not parents:
            continue
        wanted = {(p.to_user_string(), i) for p in parents for i in by_asset[p]}
        for record in all_materializations(instance, key):
            via = [
                (entry["asset"], sid)
                for entry in inputs_of(record.asset_materialization)
                for sid in entry["storage_ids"]
                if (entry["asset"], sid) in wanted
            ]
            if via:
                item = impacted.setdefault(record.storage_id, _impacted(record))
                item.via.extend(via)
                by_asset[key].add(record.storage_id)
    _mark_superseded(instance, list(impacted.values()))
    return list(impacted.values())


def _impacted(record) -> Impacted:
    return Impacted(
        asset=record.asset_key.to_user_string(),
        partition=record.partition_key,
        storage_id=record.storage_id,
        run_id=record.run_id,
        timestamp=record.timestamp,
    )


def _topological_downstream(asset_graph, roots: set[dg.AssetKey]) -> list[dg.AssetKey]:
    """Strict descendants of the roots, each after all of its parents."""
    descendants: set[dg.AssetKey] = set()
    stack = list(roots)
    while stack:
        for child in asset_graph.get(stack.pop()).child_keys:
            if child not in descendants:
                descendants.add(child)
                stack.append(child)
    ordered, done = [], set(roots)
    while len(ordered) < len(descendants):
        for key in sorted(descendants - set(ordered)):
            if all(p in done or p not in descendants for p in asset_graph.get(key).parent_keys):
                ordered.append(key)
                done.add(key)
    return ordered


def _mark_superseded(instance: dg.DagsterInstance, items: list[Impacted]) -> None:
    by_asset: dict[str, list[Impacted]] = defaultdict(list)
    for item in items:
        by_asset[item.asset].append(item)
    for asset, group in by_asset.items():
        key = dg.AssetKey.from_user_string(asset)
        partitions = {i.partition for i in group if i.partition is not None}
        latest = latest_storage_ids(instance, key, partitions)
        newest = instance.fetch_materializations(key, limit=1).records
        for item in group:
            if item.partition is None:
                item.superseded = bool(newest) and newest[0].storage_id != item.storage_id
            else:
                item.superseded = latest.get(item.partition) != item.storage_id
