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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from ml_platform.models.artifacts import FORMAT as ARTIFACT_FORMAT
from ml_platform.models.artifacts import ArtifactError, TrainedModel, dump_model, load_model
from ml_platform.provenance.reads import PartitionRead, provenance_metadata, record_reads
from ml_platform.storage.frames import content_hash, split_by_partition, write_parquet
from ml_platform.storage.object_store import LocalObjectStore, ObjectStore, StoredObject

UNPARTITIONED = "__all__"
POINTER = "_CURRENT.json"


class MissingPartitionError(Exception):
    pass


class VersionedParquetIOManager(dg.ConfigurableIOManager):
    """Base class: subclasses say which object store holds the objects."""

    def store(self) -> ObjectStore:
        raise NotImplementedError

    # -- writing ---------------------------------------------------------------------------
    def handle_output(
        self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame | TrainedModel | None
    ):
        if obj is None:
            return
        if isinstance(obj, TrainedModel):
            key = context.partition_key if context.has_asset_partitions else None
            meta = self._write_model(context, key, obj)
            meta.update(provenance_metadata(context, key))
            context.add_output_metadata(meta)
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
            meta.update(provenance_metadata(context, key))
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
        # The data version is hashed while the frame is encoded and uploaded (polars
        # releases the GIL), so neither waits for the other.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="content-hash") as pool:
            hashing = pool.submit(content_hash, df)
            stored = self.store().put_streamed(
                f"{prefix}/{context.run_id}.parquet",
                lambda sink: write_parquet(df, sink),
                size_hint=df.estimated_size(),
            )
            version = hashing.result()
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
            **_object_metadata(stored, pointer["key"]),
            "dagster/row_count": dg.MetadataValue.int(df.height),
            "ml_platform/content_hash": dg.MetadataValue.text(version),
        }

    def _write_model(
        self, context: dg.OutputContext, partition: str | None, model: TrainedModel
    ) -> dict[str, Any]:
        prefix = _prefix(context.asset_key, partition)
        key = f"{prefix}/{context.run_id}.{ARTIFACT_FORMAT}"
        stored = self.store().put(key, dump_model(model))
        pointer = {
            "run_id": context.run_id,
            "partition": partition,
            "key": key,
            "format": ARTIFACT_FORMAT,
            "feature_columns": model.feature_columns,
            "rows": None,
            "content_hash": None,
            "written_at": datetime.now(UTC).isoformat(),
            **stored.as_dict(),
        }
        self.store().put(f"{prefix}/{POINTER}", json.dumps(pointer).encode())
        return _object_metadata(stored, key)

    # -- reading ---------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        pointers = [self._pointer(context, key) for key in keys]
        record_reads(context, [_as_read(p) for p in pointers])
        if pointers[0].get("format") == ARTIFACT_FORMAT:
            return self._load_model(pointers)
        # One lazy scan over every partition: a 28-day window is one query plan, not 28 reads.
        lazy = self.store().scan_parquet([p["key"] for p in pointers])
        if _wants_lazy(context):
            return lazy
        return lazy.collect()

    def _pointer(self, context: dg.InputContext, partition: str | None) -> dict:
        asset_key = context.asset_key
        raw = self.store().get(f"{_prefix(asset_key, partition)}/{POINTER}")
        if raw is None:
            where = f" partition {partition}" if partition else ""
            hint = (context.upstream_output.definition_metadata or {}).get(
                "ml_platform/when_missing", "materialize it first"
            )
            raise MissingPartitionError(
                f"{asset_key.to_user_string()}{where} has never been stored: {hint}"
            )
        return json.loads(raw)

    def _load_model(self, pointers: list[dict]) -> TrainedModel:
        if len(pointers) != 1:
            raise dg.DagsterInvariantViolationError("a model input must map to one partition")
        pointer = pointers[0]
        data = self.store().get(pointer["key"])
        if data is None:
            raise ArtifactError(f"{pointer['uri']}: the artifact no longer exists")
        pipeline = load_model(data, pointer["sha256"], pointer["uri"])
        return TrainedModel(pipeline, pointer["feature_columns"], source=pointer)

    def current_version(self, asset_key: dg.AssetKey, partition: str | None) -> dict | None:
        """The pointer of the current stored version, or None."""
        raw = self.store().get(f"{_prefix(asset_key, partition)}/{POINTER}")
        return json.loads(raw) if raw is not None else None


class LocalParquetIOManager(VersionedParquetIOManager):
    """The embedded default: versioned Parquet files under a local folder."""

    root: str

    def store(self) -> ObjectStore:
        return LocalObjectStore(self.root)


def _object_metadata(stored: StoredObject, key: str) -> dict[str, Any]:
    """What provenance needs to find, load and verify one stored object again."""
    return {
        "dagster/uri": dg.MetadataValue.text(stored.uri),
        "ml_platform/object_key": dg.MetadataValue.text(key),
        "ml_platform/sha256": dg.MetadataValue.text(stored.sha256),
        "ml_platform/generation": dg.MetadataValue.text(stored.generation),
        "ml_platform/size_bytes": dg.MetadataValue.int(stored.size),
    }


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
