"""Landing zones: where producers drop files, one folder (or prefix) per day.

A drop for partition ``D`` is ``<root>/<dataset>/<D>/`` holding one or more data files
(``.csv``, ``.csv.gz``, ``.csv.zst`` or ``.parquet``); it is complete when the producer has
written the marker ``_SUCCESS`` last. A re-drop rewrites the files and the marker.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

MARKER = "_SUCCESS"
# Compressed CSV is decompressed when read; fingerprints and quarantine use the landed bytes.
DATA_SUFFIXES = (".csv", ".csv.gz", ".csv.zst", ".parquet")


@dataclass(frozen=True)
class DropFile:
    """One data file of a drop, as listed (no content read yet)."""

    partition: str
    name: str
    uri: str
    size: int
    generation: str
    # A content identity the store gives for free (GCS md5); None where bytes must be hashed.
    content_id: str | None = None


class DropUnreadableError(Exception):
    """A drop's files could not be listed or read; the message names the file and the problem.

    ``transient``: the store failed (a server error, throttling), so the same read may work
    the next time; otherwise the drop itself is the problem (not a regular file, no
    permission, replaced while read) and reads the same way until it is dropped again.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# The machine, not the drop: an I/O error, a stale network mount, no file descriptors left.
_TRANSIENT_ERRNOS = {
    errno.EIO,
    errno.ESTALE,
    errno.EMFILE,
    errno.ENFILE,
    errno.EAGAIN,
    errno.ETIMEDOUT,
}


def _transient(error: OSError) -> bool:
    return error.errno in _TRANSIENT_ERRNOS


def quarantine_reason(file: DropFile, data: bytes, reason: str) -> str:
    """The JSON document stored beside a quarantined file: where it came from and why."""
    return json.dumps(
        {
            "source_uri": file.uri,
            "generation": file.generation,
            "size": file.size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "reason": reason,
            "quarantined_at": datetime.now(UTC).isoformat(),
        },
        indent=2,
    )


def drop_fingerprint(files: list[DropFile], sha256_by_name: dict[str, str]) -> str:
    """Identity of a drop's content: equal exactly when every file's content is equal."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        h.update(f"{f.name}\0{f.content_id or sha256_by_name[f.name]}\n".encode())
    return h.hexdigest()


class LandingZone(dg.ConfigurableResource):
    """What the raw asset and the landing sensor need of a landing zone (folder or bucket)."""

    dataset: str = "shipments"

    def describe(self) -> str:
        raise NotImplementedError

    def completed_drops(self) -> dict[str, str]:
        """Partition -> cheap change token, for every drop whose marker is present."""
        raise NotImplementedError

    def is_complete(self, partition: str) -> bool:
        raise NotImplementedError

    def list_files(self, partition: str) -> list[DropFile]:
        """The drop's data files; raises DropUnreadableError if they cannot be listed."""
        raise NotImplementedError

    def read(self, file: DropFile) -> bytes:
        """The file's bytes; raises DropUnreadableError naming the file and the problem."""
        raise NotImplementedError

    def fingerprint(self, partition: str, known: dict[str, dict] | None = None) -> str:
        """Content identity of the drop, reading only files listed without a content id.

        ``known``: URI -> a file as raw recorded it (``size``, ``generation``, ``sha256``);
        a file listed with that URI, size and generation is not read again.
        """
        known = known or {}
        files = self.list_files(partition)
        shas = {}
        for file in files:
            if file.content_id is not None:
                continue
            seen = known.get(file.uri)
            if seen and seen["size"] == file.size and str(seen["generation"]) == file.generation:
                shas[file.name] = seen["sha256"]
            else:
                shas[file.name] = hashlib.sha256(self.read(file)).hexdigest()
        return drop_fingerprint(files, shas)

    def quarantine(self, file: DropFile, data: bytes, reason: str) -> str:
        """Copy a bad file aside with the reason beside it; returns where it went."""
        raise NotImplementedError


class LocalLandingZone(LandingZone):
    """A landing zone in a local folder, with a quarantine folder beside it."""

    root: str
    quarantine_root: str

    @property
    def _dataset_dir(self) -> Path:
        return Path(self.root) / self.dataset

    def describe(self) -> str:
        return str(self._dataset_dir)

    def completed_drops(self) -> dict[str, str]:
        """Partition folder name -> a cheap change token, for every drop with a marker.

        Costs two stats per drop folder, never a listing of the files inside: a producer
        that re-drops rewrites the marker, which changes the token.
        """
        tokens: dict[str, str] = {}
        try:
            entries = list(os.scandir(self._dataset_dir))
        except FileNotFoundError:
            return tokens
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                marker = os.stat(os.path.join(entry.path, MARKER))
            except FileNotFoundError:
                continue
            folder = entry.stat()
            tokens[entry.name] = f"{folder.st_mtime_ns}:{marker.st_mtime_ns}:{marker.st_size}"
        return tokens

    def is_complete(self, partition: str) -> bool:
        return (self._dataset_dir / partition / MARKER).is_file()

    def list_files(self, partition: str) -> list[DropFile]:
        folder = self._dataset_dir / partition
        try:
            return [self._drop_file(partition, e) for e in _data_entries(folder)]
        except OSError as e:
            raise DropUnreadableError(
                f"{folder.absolute().as_uri()}: {e.strerror or e}", _transient(e)
            ) from e

    def _drop_file(self, partition: str, entry: os.DirEntry) -> DropFile:
        uri = Path(entry.path).absolute().as_uri()
        try:
            st = entry.stat()
        except OSError as e:
            raise DropUnreadableError(f"{uri}: {e.strerror or e}", _transient(e)) from e
        return DropFile(
            partition=partition,
            name=entry.name,
            uri=uri,
            size=st.st_size,
            generation=str(st.st_mtime_ns),
        )

    def read(self, file: DropFile) -> bytes:
        path = self._dataset_dir / file.partition / file.name
        try:
            # O_NONBLOCK: a FIFO in a drop fails here instead of blocking the tick forever.
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise DropUnreadableError(f"{file.uri}: not a regular file")
                return f.read()
        except OSError as e:
            raise DropUnreadableError(f"{file.uri}: {e.strerror or e}", _transient(e)) from e

    def quarantine(self, file: DropFile, data: bytes, reason: str) -> str:
        target = Path(self.quarantine_root) / self.dataset / file.partition / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        shutil.move(tmp, target)
        target.with_name(target.name + ".reason.json").write_text(
            quarantine_reason(file, data, reason)
        )
        return target.absolute().as_uri()


def _data_entries(folder: Path) -> list[os.DirEntry]:
    """The drop's data entries by name: all but hidden names, markers and subfolders."""
    # Symlinks, FIFOs and the like are listed on purpose: skipping a file that cannot be
    # read would ingest the drop without it; listed, it makes the drop unreadable instead.
    with os.scandir(folder) as entries:
        kept = [e for e in entries if not e.name.startswith((".", "_")) and not e.is_dir()]
    return sorted(kept, key=lambda e: e.name)
