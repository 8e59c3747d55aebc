"""Polars DataFrames as versioned zstd Parquet, one object per partition and write.

Layout under the store: ``<asset/key>/<partition>/<run id>-<write id>.parquet``. Objects are
immutable and never overwritten; which one is current is what the partition's latest
materialization event names (``ml_platform.storage.current`` says why), so a run that dies
half-way through a range, or a step that fails after writing, changes nothing any reader
sees. Old versions stay loadable for provenance until a retention job removes them.

Why our own IO manager: dagster-polars' UPath IO managers overwrite one file per partition
(no version survives for provenance) and refuse single-run backfills over a range.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import polars as pl

from ml_platform.models.artifacts import FORMAT as ARTIFACT_FORMAT
from ml_platform.models.artifacts import ArtifactError, TrainedModel, dump_model, load_model
from ml_platform.provenance.reads import PartitionRead, provenance_metadata, record_reads
from ml_platform.provenance.summary import sources_of
from ml_platform.storage.current import (
    OBJECT_KEY,
    CurrentVersion,
    MissingPartitionError,
    UnresolvedVersionError,
    current_versions,
)
from ml_platform.storage.frames import content_hash, split_by_partition, write_parquet
from ml_platform.storage.object_store import (
    LocalObjectStore,
    MissingObjectError,
    ObjectStore,
    StoredObject,
)
from ml_platform.storage.spool import SpoolingIOManager

UNPARTITIONED = "__all__"
FORMAT_KEY = "ml_platform/format"
FEATURE_COLUMNS_KEY = "ml_platform/feature_columns"

__all__ = ["MissingPartitionError", "UnresolvedVersionError", "VersionedParquetIOManager"]


class VersionedParquetIOManager(SpoolingIOManager):
    """Base class: subclasses say which object store holds the objects. A remote store's
    inputs are spooled to local files for the step's lazy scans (see storage/spool.py)."""

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
        # Partitions are encoded and written in parallel (polars and the store release the
        # GIL); nothing is visible before Dagster records the events, so order is free.
        with ThreadPoolExecutor(max_workers=_writers(len(frames))) as pool:
            written = pool.map(lambda kv: self._write_partition(context, *kv), frames.items())
            metas = dict(zip(frames, written, strict=True))
        for key, meta in metas.items():
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
        key = _object_key(context, partition, "parquet")
        # The data version is hashed while the frame is encoded and uploaded (polars
        # releases the GIL), so neither waits for the other.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="content-hash") as pool:
            hashing = pool.submit(content_hash, df)
            stored = self.store().put_streamed(
                key, lambda sink: write_parquet(df, sink), size_hint=df.estimated_size()
            )
            version = hashing.result()
        return {
            **_object_metadata(stored, key),
            "dagster/row_count": dg.MetadataValue.int(df.height),
            "ml_platform/content_hash": dg.MetadataValue.text(version),
        }

    def _write_model(
        self, context: dg.OutputContext, partition: str | None, model: TrainedModel
    ) -> dict[str, Any]:
        key = _object_key(context, partition, ARTIFACT_FORMAT)
        stored = self.store().put(key, dump_model(model))
        return {
            **_object_metadata(stored, key),
            FORMAT_KEY: dg.MetadataValue.text(ARTIFACT_FORMAT),
            FEATURE_COLUMNS_KEY: dg.MetadataValue.json(list(model.feature_columns)),
        }

    # -- reading ---------------------------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame | TrainedModel:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        hint = (context.upstream_output.definition_metadata or {}).get(
            "ml_platform/when_missing", "materialize it first"
        )
        versions = current_versions(context.instance, context.asset_key, keys, hint)
        record_reads(context, [_as_read(v) for v in versions])
        if versions[0].metadata.get(FORMAT_KEY) == ARTIFACT_FORMAT:
            return self._load_model(versions)
        # One lazy scan over every partition: a 28-day window is one query plan, not 28 reads.
        lazy = self._scan(versions)
        if _wants_lazy(context):
            return lazy
        return lazy.collect()

    def _scan(self, versions: list[CurrentVersion]) -> pl.LazyFrame:
        by_key = {v.object_key: v for v in versions}
        try:
            return self.store().scan_parquet(list(by_key), self.spool())
        except MissingObjectError as e:
            raise UnresolvedVersionError(
                f"{by_key[e.key].where}: its stored version {e.uri} no longer exists "
                "(removed by retention?); re-materialize the partition"
            ) from None

    def _load_model(self, versions: list[CurrentVersion]) -> TrainedModel:
        if len(versions) != 1:
            raise dg.DagsterInvariantViolationError("a model input must map to one partition")
        version = versions[0]
        meta = version.metadata
        data = self.store().get(version.object_key)
        if data is None:
            raise ArtifactError(
                f"{version.where}: the artifact {meta['dagster/uri']} no longer exists"
            )
        pipeline = load_model(data, meta["ml_platform/sha256"], meta["dagster/uri"])
        return TrainedModel(pipeline, meta[FEATURE_COLUMNS_KEY], source=version_dict(version))

    def current_version(
        self, instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None
    ) -> dict:
        """The current stored version of a partition, as its latest materialization names it."""
        (version,) = current_versions(instance, asset_key, [partition])
        return version_dict(version)


class LocalParquetIOManager(VersionedParquetIOManager):
    """The embedded default: versioned Parquet files under a local folder."""

    root: str

    def store(self) -> ObjectStore:
        return LocalObjectStore(self.root)


def _writers(partitions: int) -> int:
    """Partitions written at once: every core, a few more for the store's round trips."""
    return max(1, min(partitions, (os.cpu_count() or 2) + 2))


def _object_metadata(stored: StoredObject, key: str) -> dict[str, Any]:
    """What provenance and readers need to find, load and verify one stored object again."""
    return {
        "dagster/uri": dg.MetadataValue.text(stored.uri),
        OBJECT_KEY: dg.MetadataValue.text(key),
        "ml_platform/sha256": dg.MetadataValue.text(stored.sha256),
        "ml_platform/generation": dg.MetadataValue.text(stored.generation),
        "ml_platform/size_bytes": dg.MetadataValue.int(stored.size),
    }


def _object_key(context: dg.OutputContext, partition: str | None, suffix: str) -> str:
    # A fresh write id per write: a retried step of the same run never overwrites an object
    # that an earlier attempt's event may already name.
    prefix = "/".join([*context.asset_key.path, partition or UNPARTITIONED])
    return f"{prefix}/{context.run_id}-{uuid.uuid4().hex[:8]}.{suffix}"


def version_dict(version: CurrentVersion) -> dict:
    """A stored version as a plain record: where it is, what it holds, which event names it."""
    meta = version.metadata
    return {
        "partition": version.partition,
        "run_id": version.run_id,
        "storage_id": version.storage_id,
        "data_version": version.data_version,
        "key": version.object_key,
        "uri": meta.get("dagster/uri"),
        "sha256": meta.get("ml_platform/sha256"),
        "size": meta.get("ml_platform/size_bytes"),
        "generation": meta.get("ml_platform/generation"),
        "rows": meta.get("dagster/row_count"),
        "content_hash": meta.get("ml_platform/content_hash"),
        "format": meta.get(FORMAT_KEY, "parquet"),
        "feature_columns": meta.get(FEATURE_COLUMNS_KEY),
    }


def _as_read(version: CurrentVersion) -> PartitionRead:
    record = version_dict(version)
    return PartitionRead(
        partition=version.partition,
        run_id=version.run_id,
        uri=record["uri"],
        sha256=record["sha256"],
        size=record["size"],
        generation=record["generation"],
        rows=record["rows"],
        content_hash=record["content_hash"],
        storage_id=version.storage_id,
        data_version=version.data_version,
        sources=sources_of(version.partition, version.metadata),
    )


def _wants_lazy(context: dg.InputContext) -> bool:
    return context.dagster_type.typing_type is pl.LazyFrame
