"""Backward provenance: from one materialization down to the raw files, exactly.

Each materialization written by our IO managers names, under ``ml_platform/inputs``, the
storage id of every upstream partition version it read. The tree follows those ids level by
level, fetching each level's records with one batched query per asset, never one per node.
Dagster's own lineage cannot do this: its input pointer names an upstream's latest
materialization, not the partitions actually read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.provenance.summary import SOURCE_FILES_KEY
from ml_platform.storage.current import records_by_storage_id

DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"


class LineageError(LookupError):
    pass


@dataclass
class Node:
    """One stored version of one asset partition, and what it was made from."""

    asset: str
    partition: str | None
    storage_id: int | None
    run_id: str
    timestamp: float | None = None
    code_version: str | None = None
    data_version: str | None = None
    uri: str | None = None
    sha256: str | None = None
    rows: int | None = None
    object_key: str | None = None
    content_hash: str | None = None
    # "verified", "changed", "missing", "replaced", "unverified" or "unresolved".
    status: str = "unverified"
    status_detail: str = ""
    checks: list[dict] = field(default_factory=list)
    source_files: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    # Upstream asset -> storage ids (or unresolved reads) this version was made from.
    inputs: list[dict] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.asset}" + (f" {self.partition}" if self.partition else "")


@dataclass
class Lineage:
    """The backward graph of one materialization; nodes shared by several parents appear once."""

    root: int
    nodes: dict[int, Node]

    def node(self, storage_id: int) -> Node:
        return self.nodes[storage_id]

    def runs(self) -> set[str]:
        return {n.run_id for n in self.nodes.values() if n.run_id}

    def by_asset(self, asset: str) -> list[Node]:
        return sorted(
            (n for n in self.nodes.values() if n.asset == asset),
            key=lambda n: (n.partition or "", n.storage_id or 0),
        )

    def as_tree(self) -> dict:
        """Nested JSON; a node already expanded elsewhere appears as a reference."""
        seen: set[int] = set()

        def expand(storage_id: int) -> dict:
            node = self.nodes[storage_id]
            if storage_id in seen:
                return {"ref": storage_id, "asset": node.asset, "partition": node.partition}
            seen.add(storage_id)
            body = {k: v for k, v in asdict(node).items() if k != "inputs"}
            body["inputs"] = [
                {
                    "asset": entry["asset"],
                    "partitions": [expand(i) for i in entry["storage_ids"]]
                    + entry.get("unresolved", []),
                }
                for entry in node.inputs
            ]
            return body

        return expand(self.root)


def root_record(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition: str | None = None,
    storage_id: int | None = None,
):
    """The materialization to start from: a given storage id, else the partition's latest."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=asset_key,
        asset_partitions=[partition] if partition else None,
        storage_ids=[storage_id] if storage_id is not None else None,
    )
    records = instance.fetch_materializations(records_filter, limit=1).records
    if not records:
        what = asset_key.to_user_string() + (f" partition {partition}" if partition else "")
        what += f" storage id {storage_id}" if storage_id is not None else ""
        raise LineageError(f"{what} has no materialization on this instance")
    return records[0]


def backward(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition: str | None = None,
    storage_id: int | None = None,
    *,
    with_checks: bool = True,
    verifier=None,
) -> Lineage:
    """The exact backward graph of a materialization, down to raw source files."""
    record = root_record(instance, asset_key, partition, storage_id)
    nodes: dict[int, Node] = {record.storage_id: node_from_record(record)}
    frontier = _wanted(nodes[record.storage_id], nodes)
    while frontier:
        next_frontier: dict[str, set[int]] = defaultdict(set)
        for asset, ids in frontier.items():
            for rec in fetch_by_storage_ids(instance, dg.AssetKey.from_user_string(asset), ids):
                node = node_from_record(rec)
                nodes[rec.storage_id] = node
                for up, up_ids in _wanted(node, nodes).items():
                    next_frontier[up] |= up_ids
        frontier = {a: ids for a, ids in next_frontier.items() if ids}
        # A storage id named twice on one level is fetched once.
        for asset in frontier:
            frontier[asset] -= nodes.keys()
        frontier = {a: ids for a, ids in frontier.items() if ids}
    lineage = Lineage(record.storage_id, nodes)
    if with_checks:
        attach_checks(instance, list(nodes.values()))
    if verifier is not None:
        verifier.verify(list(nodes.values()))
    return lineage


def _wanted(node: Node, known: dict[int, Node]) -> dict[str, set[int]]:
    wanted: dict[str, set[int]] = defaultdict(set)
    for entry in node.inputs:
        wanted[entry["asset"]].update(i for i in entry["storage_ids"] if i not in known)
    return wanted


def fetch_by_storage_ids(instance: dg.DagsterInstance, asset_key: dg.AssetKey, ids) -> list:
    return records_by_storage_id(instance, asset_key, list(ids))


def node_from_record(record) -> Node:
    mat = record.asset_materialization
    meta, tags = mat.metadata, mat.tags or {}
    node = Node(
        asset=mat.asset_key.to_user_string(),
        partition=mat.partition,
        storage_id=record.storage_id,
        run_id=record.run_id,
        timestamp=record.timestamp,
        code_version=tags.get(CODE_VERSION_TAG),
        data_version=tags.get(DATA_VERSION_TAG),
        uri=_value(meta, "dagster/uri"),
        sha256=_value(meta, "ml_platform/sha256"),
        rows=_value(meta, "dagster/row_count"),
        object_key=_value(meta, "ml_platform/object_key"),
        content_hash=_value(meta, "ml_platform/content_hash"),
        source_files=_value(meta, SOURCE_FILES_KEY) or [],
    )
    promotion = _value(meta, "ml_platform/promotion")
    if promotion:
        node.extra["promotion"] = promotion
    window = _value(meta, "training_window")
    if window:
        node.extra["training_window"] = window
    node.inputs = inputs_of(mat)
    return node


def inputs_of(mat: dg.AssetMaterialization) -> list[dict]:
    """The ``ml_platform/inputs`` record as asset -> storage ids (+ reads never resolved)."""
    entries = _value(mat.metadata, INPUTS_METADATA_KEY) or []
    result = []
    for entry in entries:
        ids = [r["storage_id"] for r in entry["partitions"] if r.get("storage_id") is not None]
        unresolved = [
            {**r, "status": "unresolved"}
            for r in entry["partitions"]
            if r.get("storage_id") is None
        ]
        result.append({"asset": entry["asset"], "storage_ids": ids, "unresolved": unresolved})
    return result


def _value(meta: dict, key: str) -> Any:
    entry = meta.get(key)
    return entry.value if entry is not None else None


def attach_checks(instance: dg.DagsterInstance, nodes: list[Node]) -> None:
    """Each node's asset-check results from the run that wrote it (one query per run)."""
    by_run: dict[str, list[Node]] = defaultdict(list)
    for node in nodes:
        if node.run_id:
            by_run[node.run_id].append(node)
    for run_id, run_nodes in by_run.items():
        wanted = {(n.asset, n.partition): n for n in run_nodes}
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=10_000
        ).records
        for rec in records:
            evaluation = rec.event_log_entry.dagster_event.event_specific_data
            node = wanted.get((evaluation.asset_key.to_user_string(), evaluation.partition))
            if node is not None:
                node.checks.append(
                    {
                        "check": evaluation.check_name,
                        "passed": evaluation.passed,
                        "severity": evaluation.severity.value,
                    }
                )
