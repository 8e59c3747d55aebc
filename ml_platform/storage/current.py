"""Which stored version of a partition is current: the one its latest materialization names.

Why the event log and not a pointer file beside the objects: Dagster records a step's
materializations only after the IO manager has handled the whole output, so a pointer
written by the IO manager could name data that no event describes (a run killed half-way
through a range, two runs racing on one partition). Resolving "current" from the events
makes Dagster's record the single source of truth: an object without an event is invisible
to every reader (retention removes it later), and two runs writing one partition can never
leave the store disagreeing with the latest materialization. It is also the cheaper path at
scale: two indexed queries per input, whatever its number of partitions, instead of one
pointer GET per partition on read and one PUT per partition on write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

OBJECT_KEY = "ml_platform/object_key"
# Events are fetched by storage id in batches of this size (SQL parameter lists stay small).
_BATCH = 500


class MissingPartitionError(Exception):
    """The partition has no materialization to read."""


class UnresolvedVersionError(Exception):
    """The latest materialization names no stored version that can be read."""


@dataclass(frozen=True)
class CurrentVersion:
    """One partition's latest materialization and the stored object it names."""

    asset_key: dg.AssetKey
    partition: str | None
    storage_id: int
    run_id: str
    data_version: str | None
    metadata: dict[str, Any]

    @property
    def where(self) -> str:
        part = f" partition {self.partition}" if self.partition is not None else ""
        return (
            f"{self.asset_key.to_user_string()}{part} (run {self.run_id}, "
            f"storage id {self.storage_id})"
        )

    @property
    def object_key(self) -> str:
        key = self.metadata.get(OBJECT_KEY)
        if not key:
            raise UnresolvedVersionError(
                f"{self.where}: the latest materialization names no stored object "
                "(it was not written by this platform's IO manager); re-materialize it"
            )
        return key


def latest_storage_ids(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: set[str] | None = None
) -> dict[str, int]:
    """Partition -> storage id of its latest materialization (every partition when None)."""
    if partitions is not None and not partitions:
        return {}
    return dict(
        instance.get_latest_storage_id_by_partition(
            asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions
        )
    )


def records_by_storage_id(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, storage_ids: list[int]
) -> list[dg.EventLogRecord]:
    """The materialization records with these storage ids, batched."""
    ids = sorted(set(storage_ids))
    records = []
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        records.extend(
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=chunk), limit=len(chunk)
            ).records
        )
    return records


def current_versions(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partitions: list[str | None],
    when_missing: str = "materialize it first",
) -> list[CurrentVersion]:
    """The latest materialization of each partition, in order; a missing one is an error."""
    if partitions == [None]:
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key), limit=1
        ).records
        by_partition = {None: latest[0]} if latest else {}
    else:
        ids = latest_storage_ids(instance, asset_key, set(partitions))
        records = records_by_storage_id(instance, asset_key, list(ids.values()))
        by_partition = {r.asset_materialization.partition: r for r in records}
    missing = [p for p in partitions if p not in by_partition]
    if missing:
        name = asset_key.to_user_string()
        what = f"{name} has never been materialized"
        if missing != [None]:
            what = f"{name} has no materialization of partition(s) {_ranges(missing)}"
        raise MissingPartitionError(f"{what}: {when_missing}")
    return [version_of(asset_key, by_partition[p]) for p in partitions]


def version_of(asset_key: dg.AssetKey, record: dg.EventLogRecord) -> CurrentVersion:
    """One materialization record as a stored version (current or not)."""
    mat = record.asset_materialization
    return CurrentVersion(
        asset_key=asset_key,
        partition=mat.partition,
        storage_id=record.storage_id,
        run_id=record.run_id,
        data_version=(mat.tags or {}).get("dagster/data_version"),
        metadata={k: v.value for k, v in mat.metadata.items()},
    )


def _ranges(partitions: list[str | None]) -> str:
    shown = [str(p) for p in partitions[:5]]
    more = f" and {len(partitions) - 5} more" if len(partitions) > 5 else ""
    return ", ".join(shown) + more
