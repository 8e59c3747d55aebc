"""Resources that pin a re-execution to recorded versions and keep it off live state.

Used by ``reproduce``: the asset's real code runs on a scratch instance, but every input is
the exact stored version its provenance record names (never the partition's latest), every
output goes to a scratch folder, and the landing zone only hands out the recorded source
files, byte-checked. Nothing here writes to the live lake, landing zone or warehouse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import IO, Any
from urllib.parse import unquote

import dagster as dg
import polars as pl

from ml_platform.landing.zone import DropFile, DropUnreadableError
from ml_platform.provenance.lineage import Node
from ml_platform.provenance.reads import INPUTS_METADATA_KEY, PartitionRead, record_reads
from ml_platform.storage.current import (
    CurrentVersion,
    latest_storage_ids,
    records_by_storage_id,
    version_of,
)
from ml_platform.storage.object_store import LocalObjectStore, StoredObject, sha256_hex
from ml_platform.storage.parquet_io_manager import FORMAT_KEY, LocalParquetIOManager


class PinError(LookupError):
    """A recorded version cannot be had exactly as recorded; the message says which and why."""


@dataclass
class PinnedVersion:
    """One upstream partition version a recorded step read, and the event that names it."""

    asset: str
    read: dict
    version: CurrentVersion | None = None
    # Frames already fetched while checking (tables, where the check is the read).
    frame: pl.DataFrame | None = None

    @property
    def partition(self) -> str | None:
        return self.read.get("partition")

    @property
    def where(self) -> str:
        part = f" {self.partition}" if self.partition is not None else ""
        return (
            f"{self.asset}{part} (run {self.read.get('run_id')}, storage id "
            f"{self.read.get('storage_id')}, {self.read.get('uri')})"
        )

    def partition_read(self) -> PartitionRead:
        known = {f.name for f in fields(PartitionRead)}
        return PartitionRead(**{k: v for k, v in self.read.items() if k in known})


def check_available(pin: PinnedVersion, manager: Any) -> None:
    """Raise PinError unless the pinned version is still stored, byte for byte."""
    if pin.version is None:
        raise PinError(f"{pin.where}: no materialization with that storage id on this instance")
    if hasattr(manager, "store"):
        key = pin.version.metadata.get("ml_platform/object_key")
        if not key:
            raise PinError(f"{pin.where}: its materialization names no stored object")
        data = manager.store().get(key)
        if data is None:
            raise PinError(f"{pin.where}: this stored version no longer exists (retention?)")
        recorded = pin.read.get("sha256")
        if recorded and sha256_hex(data) != recorded:
            raise PinError(f"{pin.where}: the stored object changed (sha256 differs)")
        return
    if hasattr(manager, "tables"):
        schema, table = manager.table_for(dg.AssetKey.from_user_string(pin.asset))
        try:
            frame = manager.tables().read_version(schema, table, pin.partition, pin.read["run_id"])
        except LookupError as e:
            raise PinError(f"{pin.where}: {e}") from None
        # Tables keep only current rows: the warehouse's bookkeeping must still name them.
        (version,) = manager.tables().versions(schema, table, [pin.partition])
        recorded = pin.read.get("content_hash")
        if recorded and version.content_hash != recorded:
            raise PinError(f"{pin.where}: the table's rows changed (content hash differs)")
        pin.frame = frame
        return
    raise PinError(f"{pin.where}: stored by an IO manager reproduce cannot read")


class ScratchReadThroughStore:
    """Writes go to a scratch folder; reads find scratch objects first, then live ones."""

    def __init__(self, scratch: LocalObjectStore, live: Any) -> None:
        self.scratch, self.live = scratch, live
        self.missing: list[str] = []

    def put(self, key: str, data: bytes) -> StoredObject:
        return self.scratch.put(key, data)

    def put_streamed(
        self, key: str, write: Callable[[IO[bytes]], None], size_hint: int
    ) -> StoredObject:
        return self.scratch.put_streamed(key, write, size_hint)

    def get(self, key: str) -> bytes | None:
        data = self.scratch.get(key)
        if data is None and self.live is not None:
            data = self.live.get(key)
            if data is None:
                self.missing.append(self.live.uri(key))
        return data

    def uri(self, key: str) -> str:
        return self.scratch.uri(key)

    def local_path_or_uri(self, key: str) -> str:
        return self.scratch.local_path_or_uri(key)

    def scan_parquet(self, keys: list[str], spool=None) -> pl.LazyFrame:
        return self.scratch.scan_parquet(keys, spool)

    def list_objects(self, prefix: str = ""):
        return self.scratch.list_objects(prefix)

    def delete(self, key: str) -> None:
        raise PinError(f"a reproduction never deletes stored objects ({key})")


class PinnedIOManager(dg.IOManager):
    """Loads exactly the pinned versions through the live IO manager's own code; stores in scratch.

    ``pins``: upstream asset -> partition -> PinnedVersion (shared by every pinned manager of a
    reproduction). ``live``: asset -> initialized live IO manager, read only.
    """

    def __init__(
        self,
        pins: dict[str, dict[str | None, PinnedVersion]],
        live_by_asset: dict[str, Any],
        live_for_key: Any,
        scratch_root: str,
    ) -> None:
        self.pins = pins
        self.live_by_asset = live_by_asset
        self.scratch = LocalParquetIOManager(root=scratch_root)
        live_store = live_for_key.store() if hasattr(live_for_key, "store") else None
        self._store = ScratchReadThroughStore(LocalObjectStore(scratch_root), live_store)

    def store(self) -> ScratchReadThroughStore:
        """What assets that fetch artifacts themselves (the champion model) read through."""
        return self._store

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        self.scratch.handle_output(context, obj)

    def load_input(self, context: dg.InputContext):
        asset = context.asset_key.to_user_string()
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        pinned = self.pins.get(asset)
        if pinned is None:
            raise PinError(f"the recorded materialization names no read of {asset}")
        if set(keys) != set(pinned):
            raise PinError(
                f"{asset}: the asset's partition mapping now asks for {_span(keys)} but the "
                f"recorded run read {_span(list(pinned))}"
            )
        versions = [pinned[k] for k in keys]
        record_reads(context, [v.partition_read() for v in versions])
        manager = self.live_by_asset[asset]
        wants_lazy = context.dagster_type.typing_type is pl.LazyFrame
        if hasattr(manager, "store"):
            # The live manager's own loaders, given the recorded versions instead of the latest.
            current = [v.version for v in versions]
            if current[0].metadata.get(FORMAT_KEY) == "skops":
                return manager._load_model(current)
            lazy = manager._scan(current)
            return lazy if wants_lazy else lazy.collect()
        frames = [v.frame for v in versions]
        df = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
        return df.lazy() if wants_lazy else df


class PinnedLanding:
    """A landing zone holding only the recorded source files of one drop, read only.

    Each file is read from the live landing zone and must still have the recorded sha256;
    a file that vanished or changed makes the drop unreadable, naming the file.
    """

    def __init__(self, live: Any, partition: str, source_files: list[dict]) -> None:
        self.live = live
        self.partition = partition
        self.source_files = source_files
        self.dataset = getattr(live, "dataset", "shipments")

    def describe(self) -> str:
        return f"recorded source files in {self.live.describe()}"

    def completed_drops(self) -> dict[str, str]:
        return {self.partition: "pinned"}

    def is_complete(self, partition: str) -> bool:
        return partition == self.partition and bool(self.source_files)

    def list_files(self, partition: str) -> list[DropFile]:
        if partition != self.partition:
            return []
        return [
            DropFile(
                partition=partition,
                name=unquote(f["uri"].rstrip("/").rsplit("/", 1)[-1]),
                uri=f["uri"],
                size=f.get("size", 0),
                generation=str(f.get("generation", "")),
            )
            for f in self.source_files
        ]

    def read(self, file: DropFile) -> bytes:
        recorded = next(f for f in self.source_files if f["uri"] == file.uri)
        try:
            data = self.live.read(file)
        except DropUnreadableError as e:
            raise PinError(f"landed file {file.uri} can no longer be read: {e}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != recorded.get("sha256"):
            raise PinError(
                f"landed file {file.uri} changed since it was ingested (sha256 "
                f"{str(recorded.get('sha256'))[:12]}… recorded, {actual[:12]}… now: re-dropped?)"
            )
        return data

    def check(self) -> None:
        """Raise PinError unless every recorded file is still there with its recorded bytes."""
        for file in self.list_files(self.partition):
            self.read(file)

    def fingerprint(self, partition: str) -> str:
        raise PinError("a reproduction does not fingerprint drops")

    def quarantine(self, file: DropFile, data: bytes, reason: str) -> str:
        # Never copy anything into the live quarantine; the raw step fails naming the file.
        return "(not quarantined: reproduction)"


def _span(keys: list) -> str:
    keys = sorted(str(k) for k in keys)
    if not keys:
        return "nothing"
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]} ({len(keys)} partitions)"


# -- what a recorded step read -----------------------------------------------------------
def pins_for(instance, record, live) -> dict[str, dict[str | None, PinnedVersion]]:
    """Every recorded read, resolved to its materialization and checked to still be stored."""
    meta = record.asset_materialization.metadata
    entries = meta[INPUTS_METADATA_KEY].value if INPUTS_METADATA_KEY in meta else []
    pins: dict[str, dict[str | None, PinnedVersion]] = {}
    for entry in entries:
        asset = entry["asset"]
        key = dg.AssetKey.from_user_string(asset)
        reads = entry["partitions"]
        unresolved = [r for r in reads if r.get("storage_id") is None]
        if unresolved:
            raise PinError(
                f"{asset} {unresolved[0].get('partition')}: the recorded read names no "
                "materialization, so its exact version cannot be found"
            )
        by_id = {
            r.storage_id: r
            for r in records_by_storage_id(instance, key, [r["storage_id"] for r in reads])
        }
        pins[asset] = {}
        for read in reads:
            rec = by_id.get(read["storage_id"])
            version = version_of(key, rec) if rec is not None else None
            pin = PinnedVersion(asset, read, version)
            manager = live.by_asset.get(asset)
            if manager is None:
                raise PinError(f"{pin.where}: no IO manager is known for {asset}")
            check_available(pin, manager)
            pins[asset][read.get("partition")] = pin
    return pins


def pinned_landing(live, record, root: Node) -> PinnedLanding | None:
    if not root.source_files:
        return None
    landing = live.resources.get("landing")
    if landing is None:
        raise PinError("the definitions have no landing zone to re-read the source files from")
    pinned = PinnedLanding(landing, root.partition, root.source_files)
    pinned.check()
    return pinned


def inputs_summary(instance, pins) -> list[dict]:
    """Each pinned version, and whether it is still its partition's current one."""
    rows = []
    for asset, by_partition in pins.items():
        key = dg.AssetKey.from_user_string(asset)
        partitions = {p for p in by_partition if p is not None}
        latest = latest_storage_ids(instance, key, partitions) if partitions else {}
        if None in by_partition:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key), limit=1
            ).records
            latest[None] = records[0].storage_id if records else None
        for part, pin in sorted(by_partition.items(), key=lambda kv: str(kv[0])):
            rows.append(
                {
                    "asset": asset,
                    "partition": part,
                    "storage_id": pin.read.get("storage_id"),
                    "run_id": pin.read.get("run_id"),
                    "content_hash": pin.read.get("content_hash"),
                    "current": latest.get(part) == pin.read.get("storage_id"),
                }
            )
    return rows
