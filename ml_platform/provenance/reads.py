"""The exact inputs a step read, recorded by IO managers and attached to its outputs.

Dagster's own input pointer names an upstream asset's latest materialization, not the
partitions a step actually read. IO managers here know exactly which stored version of
which partition they loaded (each stored version is named by the run that wrote it), so
they record it in this step-scoped registry, and the output's IO manager writes it into
the materialization metadata under ``ml_platform/inputs``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

import dagster as dg

from ml_platform.provenance.summary import (
    PROVENANCE_MD_KEY,
    SOURCES_KEY,
    inputs_markdown,
    merge_sources,
)
from ml_platform.storage.current import UnresolvedVersionError

INPUTS_METADATA_KEY = "ml_platform/inputs"


@dataclass
class PartitionRead:
    """One stored version of one upstream partition, as read by a step."""

    partition: str | None
    run_id: str
    uri: str
    sha256: str
    size: int
    generation: str
    rows: int | None
    content_hash: str | None
    storage_id: int | None = None
    data_version: str | None = None
    # What the version was made from (raw drops, models); summarized, not part of the record.
    sources: dict = field(default_factory=dict, repr=False)

    def as_record(self) -> dict:
        record = asdict(self)
        del record["sources"]
        return record


_lock = threading.Lock()
# (run id, step key) -> upstream asset key -> partition -> read
_reads: dict[tuple[str, str], dict[str, dict[str | None, PartitionRead]]] = {}
# A process may execute many steps (in-process executor, dagster dev): keep only recent ones.
_MAX_STEPS = 256


def record_reads(context: dg.InputContext, reads: list[PartitionRead]) -> None:
    """Remember what this step read of the input's upstream asset.

    Every read must name the materialization event of the version it got: an unresolved
    read would make provenance, impact and staleness blind to it, so it is an error here.
    A load outside any step (``Definitions.load_asset_value``, a notebook) has no output to
    attach provenance to: nothing is recorded.
    """
    unresolved = [r for r in reads if r.storage_id is None]
    if unresolved:
        first = unresolved[0]
        raise UnresolvedVersionError(
            f"{context.asset_key.to_user_string()} partition {first.partition}: the stored "
            f"version of run {first.run_id} ({first.uri}) has no materialization event"
        )
    step_context = _step_context_or_none(context)
    if step_context is None:
        return
    record_step_reads(step_context, context.asset_key, reads)


def _step_context_or_none(context: dg.InputContext):
    # InputContext has no public "has a step" test; its step_context raises when it has none.
    try:
        return context.step_context
    except dg.DagsterInvariantViolationError:
        return None


def record_step_reads(step_context, asset_key: dg.AssetKey, reads: list[PartitionRead]) -> None:
    """Remember reads a step made itself, outside an IO manager (already resolved to events)."""
    step = (step_context.run_id, step_context.step.key)
    with _lock:
        if step not in _reads and len(_reads) >= _MAX_STEPS:
            del _reads[next(iter(_reads))]
        by_partition = _reads.setdefault(step, {}).setdefault(asset_key.to_user_string(), {})
        for read in reads:
            by_partition[read.partition] = read


def read_of(context: dg.AssetExecutionContext, asset_key: dg.AssetKey) -> PartitionRead:
    """The single stored version of an unpartitioned input this step read."""
    step_context = context.get_step_execution_context()
    with _lock:
        by_partition = _reads.get((step_context.run_id, step_context.step.key), {})
        return by_partition[asset_key.to_user_string()][None]


def reads_for_output(context: dg.OutputContext) -> dict[str, dict[str | None, PartitionRead]]:
    """Everything the output's step read (kept for the step's other outputs)."""
    step = (context.step_context.run_id, context.step_context.step.key)
    with _lock:
        return dict(_reads.get(step, {}))


def _mapped_reads(
    context: dg.OutputContext, partition_key: str | None
) -> list[tuple[str, list[PartitionRead]]]:
    reads = reads_for_output(context)
    asset_graph = context.step_context.job_def.asset_layer.asset_graph
    mapped = []
    for upstream, by_partition in sorted(reads.items()):
        upstream_key = dg.AssetKey.from_user_string(upstream)
        wanted = _mapped_upstream_keys(asset_graph, context.asset_key, upstream_key, partition_key)
        rows = [
            read
            for key, read in sorted(by_partition.items(), key=lambda kv: str(kv[0]))
            if wanted is None or key in wanted
        ]
        mapped.append((upstream, rows))
    return mapped


def provenance_metadata(context: dg.OutputContext, partition_key: str | None) -> dict:
    """The inputs record (for machines), its sources and the Markdown summary (for the UI)."""
    mapped = _mapped_reads(context, partition_key)
    record = [
        {"asset": asset, "partitions": [r.as_record() for r in reads]} for asset, reads in mapped
    ]
    sources = merge_sources([r.sources for _, reads in mapped for r in reads])
    return {
        INPUTS_METADATA_KEY: dg.MetadataValue.json(record),
        SOURCES_KEY: dg.MetadataValue.json(sources),
        PROVENANCE_MD_KEY: dg.MetadataValue.md(inputs_markdown(record, sources)),
    }


def _mapped_upstream_keys(asset_graph, child, parent, partition_key) -> set[str] | None:
    """Upstream partition keys a child partition depends on; None when not partition-mapped."""
    if partition_key is None or not asset_graph.has(parent):
        return None
    if not asset_graph.get(parent).is_partitioned:
        return None
    result = asset_graph.get_parent_partition_keys_for_child(partition_key, parent, child)
    return set(result.partitions_subset.get_partition_keys())
