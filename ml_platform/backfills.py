"""Filing asset backfills of exactly the partitions asked for, as the UI's backfill dialog does.

Dagster's anchor-based constructor (``PartitionBackfill.from_asset_partitions``) also pulls
in every downstream partition whose window touches the range, partitions whose inputs may
not exist yet; an explicit asset-graph subset targets exactly what was asked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import dagster as dg


def file_backfill(
    instance: dg.DagsterInstance,
    graph,
    partitions: dict[dg.AssetKey, Iterable[str]],
    *,
    unpartitioned: Iterable[dg.AssetKey] = (),
    title: str,
    description: str | None = None,
) -> str:
    """Add a backfill of these asset partitions for the daemon to run; returns its id."""
    from ml_platform.dagster_internals import (
        AssetGraphSubset,
        PartitionBackfill,
        make_new_backfill_id,
    )

    subsets = {
        key: graph.get(key).partitions_def.subset_with_partition_keys(sorted(keys))
        for key, keys in partitions.items()
    }
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=make_new_backfill_id(),
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        asset_graph_subset=AssetGraphSubset(
            partitions_subsets_by_asset_key=subsets,
            non_partitioned_asset_keys=set(unpartitioned),
        ),
        title=title,
        description=description,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id
