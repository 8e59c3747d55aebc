"""Versioned object stores: where IO managers put immutable objects.

Every write makes a new object; nothing is overwritten or deleted before writing, so an
interrupted write changes nothing a reader sees, and every URI recorded in metadata stays
loadable until retention removes it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import polars as pl

    from ml_platform.storage.spool import Spool


@dataclass(frozen=True)
class StoredObject:
    """What provenance needs to find, and verify, one stored object again."""

    uri: str
    generation: str
    size: int
    sha256: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object: what retention needs to decide about it without reading it."""

    key: str
    uri: str
    size: int
    generation: str
    updated: datetime


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> StoredObject: ...

    def put_streamed(
        self, key: str, write: Callable[[IO[bytes]], None], size_hint: int
    ) -> StoredObject:
        """Store what ``write`` writes to the stream it is given; all of it, or nothing.

        ``size_hint`` (bytes, roughly) lets a remote store stream large objects while they
        are written.
        """

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""

    def copy_to(self, key: str, dest: Path) -> str | None:
        """Put the object's bytes in the new local file ``dest`` without holding them in
        memory; their sha256, or None (and no file) when there is no such object."""

    def local_path_or_uri(self, key: str) -> str:
        """A path or URI naming the object (a local path polars can scan, or a gs:// URI)."""

    def uri(self, key: str) -> str:
        """The URI recorded in metadata for the object at key."""

    def scan_parquet(self, keys: list[str], spool: Spool | None = None) -> pl.LazyFrame:
        """One lazy scan over the Parquet objects at keys, in order; a remote store copies
        them into ``spool`` first where one is given (see storage/spool.py)."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under prefix (all pages)."""

    def delete(self, key: str) -> None:
        """Remove the object at key; a missing object is not an error."""


class MissingObjectError(FileNotFoundError):
    """A stored object that a version names does not exist (any more)."""

    def __init__(self, key: str, uri: str) -> None:
        super().__init__(f"{uri} does not exist")
        self.key = key
        self.uri = uri


COPY_BLOCK_BYTES = 1024 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashingWriter(io.RawIOBase):
    """Passes writes through to a file, hashing them on the way."""

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self._target = target
        self._sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sha256.update(data)
        return self._target.write(data)

    def sha256_hex(self) -> str:
        return self._sha256.hexdigest()


class LocalObjectStore:
    """Objects as files under a root folder; writes are temp-file-then-rename atomic."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} escapes the storage root {self.root}")
        return path

    def put(self, key: str, data: bytes) -> StoredObject:
        return self.put_streamed(key, lambda f: f.write(data), len(data))

    def put_streamed(
        self, key: str, write: Callable[[IO[bytes]], None], size_hint: int
    ) -> StoredObject:
        """Write to a temporary file, fsync, then rename: readers see all of it or none."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                sink = HashingWriter(f)
                write(sink)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        stat = path.stat()
        return StoredObject(
            uri=path.as_uri(),
            generation=str(stat.st_mtime_ns),
            size=stat.st_size,
            sha256=sink.sha256_hex(),
        )

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def copy_to(self, key: str, dest: Path) -> str | None:
        try:
            with open(self.path(key), "rb") as source, open(dest, "xb") as target:
                sink = HashingWriter(target)
                shutil.copyfileobj(source, sink, COPY_BLOCK_BYTES)
        except FileNotFoundError:
            return None
        return sink.sha256_hex()

    def local_path_or_uri(self, key: str) -> str:
        return str(self.path(key))

    def uri(self, key: str) -> str:
        return self.path(key).as_uri()

    def scan_parquet(self, keys: list[str], spool: Spool | None = None) -> pl.LazyFrame:
        from ml_platform.storage.frames import scan_parquet_union

        # Local files stay lazy, in place (no spool): polars reads only the row groups and
        # columns a plan needs.
        paths = []
        for key in keys:
            path = self.path(key)
            if not path.is_file():
                raise MissingObjectError(key, path.as_uri())
            paths.append(str(path))
        return scan_parquet_union(paths)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self.root.resolve()
        start = self.path(prefix) if prefix else base
        if not start.exists():
            return
        for path in sorted(start.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            stat = path.stat()
            yield ObjectInfo(
                key=path.relative_to(base).as_posix(),
                uri=path.as_uri(),
                size=stat.st_size,
                generation=str(stat.st_mtime_ns),
                updated=datetime.fromtimestamp(stat.st_mtime, UTC),
            )

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
