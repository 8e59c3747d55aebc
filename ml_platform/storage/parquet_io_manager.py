"""Polars DataFrames as versioned zstd Parquet, one object per partition and materialization.

Layout under the store: ``<asset/key>/<partition>/<run id>.parquet`` plus a pointer
``<asset/key>/<partition>/_CURRENT.json`` naming the current version. The data object is
written first and the pointer last, both atomically, so a crash leaves the previous version
current; old versions stay loadable for provenance until a retention job removes them.

Why our own IO manager: dagster-polars' UPath IO managers overwrite one file per partition
(no version survives for provenance) and refuse single-run backfills over a range.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from ml_platform.provenance.reads import (
    INPUTS_METADATA_KEY,
    PartitionRead,
    inputs_record,
    record_reads,
)
from ml_platform.storage.frames import content_hash, split_by_partition, to_parquet_bytes
from ml_platform.storage.object_store import LocalObjectStore, ObjectStore

UNPARTITIONED = "__all__"
POINTER = "_CURRENT.json"


class MissingPartitionError(Exception):
    pass


class VersionedParquetIOManager(dg.ConfigurableIOManager):
    """Base class: subclasses say which object store holds the objects."""

    def store(self) -> ObjectStore:
        raise NotImplementedError

    # -- writing ---------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | None):
        if obj is None:
            return
        df = obj.collect() if isinstance(obj, pl.LazyFrame) else obj
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        if len(keys) == 1:
            frames = {keys[0]: df}
        else:
            column = context.definition_metadata.get("partition_expr")
            if not column:
                raise dg.DagsterInvariantViolationError(
                    f"{context.asset_key.to_user_string()} writes {len(keys)} partitions in one "
                    "run but declares no 'partition_expr' metadata naming its partition column"
                )
            frames = split_by_partition(df, column, keys)
        for key, frame in frames.items():
            meta = self._write_partition(context, key, frame)
            meta[INPUTS_METADATA_KEY] = dg.MetadataValue.json(inputs_record(context, key))
            if key is None or len(keys) == 1:
                context.add_output_metadata(meta)
            else:
                context.step_context.add_asset_metadata(
                    meta, asset_key=context.asset_key, partition_key=key
                )

    def _write_partition(
        self, context: dg.OutputContext, partition: str | None, df: pl.DataFrame
    ) -> dict[str, Any]:
        prefix = _prefix(context.asset_key, partition)
        stored = self.store().put(f"{prefix}/{context.run_id}.parquet", to_parquet_bytes(df))
        version = content_hash(df)
        pointer = {
            "run_id": context.run_id,
            "partition": partition,
            "key": f"{prefix}/{context.run_id}.parquet",
            "rows": df.height,
            "content_hash": version,
            "written_at": datetime.now(UTC).isoformat(),
            **stored.as_dict(),
        }
        self.store().put(f"{prefix}/{POINTER}", json.dumps(pointer).encode())
        return {
            "dagster/row_count": dg.MetadataValue.int(df.height),
            "dagster/uri": dg.MetadataValue.text(stored.uri),
            "ml_platform/sha256": dg.MetadataValue.text(stored.sha256),
            "ml_platform/generation": dg.MetadataValue.text(stored.generation),
            "ml_platform/size_bytes": dg.MetadataValue.int(stored.size),
            "ml_platform/content_hash": dg.MetadataValue.text(version),
        }

    # -- reading ---------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        pointers = [self._pointer(context.asset_key, key) for key in keys]
        record_reads(context, [_as_read(p) for p in pointers])
        # One lazy scan over every partition: a 28-day window is one query plan, not 28 reads.
        lazy = self.store().scan_parquet([p["key"] for p in pointers])
        if _wants_lazy(context):
            return lazy
        return lazy.collect()

    def _pointer(self, asset_key: dg.AssetKey, partition: str | None) -> dict:
        raw = self.store().get(f"{_prefix(asset_key, partition)}/{POINTER}")
        if raw is None:
            where = f" partition {partition}" if partition else ""
            raise MissingPartitionError(
                f"{asset_key.to_user_string()}{where} has never been stored; materialize it first"
            )
        return json.loads(raw)

    def current_version(self, asset_key: dg.AssetKey, partition: str | None) -> dict | None:
        """The pointer of the current stored version, or None."""
        raw = self.store().get(f"{_prefix(asset_key, partition)}/{POINTER}")
        return json.loads(raw) if raw is not None else None


class LocalParquetIOManager(VersionedParquetIOManager):
    """The embedded default: versioned Parquet files under a local folder."""

    root: str

    def store(self) -> ObjectStore:
        return LocalObjectStore(self.root)


def _prefix(asset_key: dg.AssetKey, partition: str | None) -> str:
    return "/".join([*asset_key.path, partition or UNPARTITIONED])


def _as_read(pointer: dict) -> PartitionRead:
    return PartitionRead(
        partition=pointer["partition"],
        run_id=pointer["run_id"],
        uri=pointer["uri"],
        sha256=pointer["sha256"],
        size=pointer["size"],
        generation=pointer["generation"],
        rows=pointer.get("rows"),
        content_hash=pointer.get("content_hash"),
    )


def _wants_lazy(context: dg.InputContext) -> bool:
    return context.dagster_type.typing_type is pl.LazyFrame
