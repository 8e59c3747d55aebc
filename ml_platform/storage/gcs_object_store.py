"""Versioned objects in a GCS bucket, through the real google-cloud-storage client.

A GCS object becomes visible only when its upload finalizes, so a put is atomic: an
interrupted upload leaves no object (and the previous version's pointer untouched). Keys
are never reused for data (they hold the run id), so every recorded URI stays loadable
until retention removes it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ml_platform.storage.object_store import (
    MissingObjectError,
    ObjectInfo,
    StoredObject,
    file_sha256,
    sha256_hex,
)
from ml_platform.storage.upload_pipe import UploadAborted, UploadPipe

if TYPE_CHECKING:
    import polars as pl
    from google.cloud import storage

    from ml_platform.storage.spool import Spool

# Concurrent downloads for multi-partition loads (a 28-day window is 29 objects).
DOWNLOAD_WORKERS = 8
# The client sends objects up to 8 MiB in one request; a producer expected to write more is
# streamed instead, in chunks of this size, while it is still writing.
SINGLE_REQUEST_BYTES = 8 * 1024 * 1024
STREAM_CHUNK_BYTES = 8 * 1024 * 1024


class ObjectIntegrityError(Exception):
    """A downloaded object's bytes do not match the checksum recorded when it was written."""


def join_key(prefix: str, key: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{key}" if prefix else key


class GCSObjectStore:
    """Objects under ``gs://<bucket>/<prefix>/``; bytes of any kind (Parquet, skops, JSON)."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        prefix: str = "",
        chunk_size: int | None = None,
        timeout: float = 120.0,
        retry_deadline: float = 120.0,
    ) -> None:
        self.client = client
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        # None: one request up to 8 MiB, a resumable upload in 100 MiB chunks above, and
        # STREAM_CHUNK_BYTES chunks for streamed uploads.
        self.chunk_size = chunk_size
        self.timeout = timeout
        from google.cloud.storage.retry import DEFAULT_RETRY

        # Uploads retry transient errors (keys are never reused, so a retry cannot clobber
        # another version) until the deadline, then fail with nothing made current.
        self.retry = DEFAULT_RETRY.with_deadline(retry_deadline)
        self._bucket = client.bucket(bucket)

    def blob_name(self, key: str) -> str:
        return join_key(self.prefix, key)

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self.blob_name(key)}"

    def local_path_or_uri(self, key: str) -> str:
        return self.uri(key)

    def put(self, key: str, data: bytes) -> StoredObject:
        """Upload bytes; the object exists only once the upload finalizes."""
        blob = self._bucket.blob(self.blob_name(key), chunk_size=self.chunk_size)
        # The client and GCS verify the upload's crc32c themselves; the sha256 is what
        # provenance records (in the pointer and in Dagster's metadata).
        blob.upload_from_file(
            io.BytesIO(data),
            size=len(data),
            content_type=_content_type(key),
            checksum="auto",
            timeout=self.timeout,
            retry=self.retry,
        )
        return self._stored(key, blob, len(data), sha256_hex(data))

    def put_streamed(
        self, key: str, write: Callable[[IO[bytes]], None], size_hint: int
    ) -> StoredObject:
        """Store what ``write`` writes, uploading while it writes when it is large.

        Nothing becomes visible unless ``write`` returns and the upload finalizes: a failure
        on either side stops the resumable upload before its last chunk. The unfinished
        session holds no object and GCS expires it after a week; cancelling it would need
        the client's private upload object, as ``upload_from_file`` does not expose it.
        """
        if size_hint <= SINGLE_REQUEST_BYTES:
            buffer = io.BytesIO()
            write(buffer)
            return self.put(key, buffer.getvalue())
        chunk = self.chunk_size or STREAM_CHUNK_BYTES
        blob = self._bucket.blob(self.blob_name(key), chunk_size=chunk)
        pipe = UploadPipe(max_ahead=4 * chunk)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcs-upload") as pool:
            upload = pool.submit(self._upload_from_pipe, blob, pipe, key)
            try:
                write(pipe)
            except BaseException as error:
                pipe.abort(error)
                _raise_upload_error_first(upload, error)
            pipe.finish()
            upload.result()
        return self._stored(key, blob, pipe.size, pipe.sha256_hex())

    def _upload_from_pipe(self, blob: storage.Blob, pipe: UploadPipe, key: str) -> None:
        try:
            # size=None: a resumable upload that reads chunk by chunk until the pipe ends.
            blob.upload_from_file(
                pipe,
                size=None,
                content_type=_content_type(key),
                checksum="auto",
                timeout=self.timeout,
                retry=self.retry,
            )
        except BaseException as error:
            pipe.abort(error)
            raise

    def _stored(self, key: str, blob: storage.Blob, size: int, sha256: str) -> StoredObject:
        return StoredObject(
            uri=self.uri(key), generation=str(blob.generation), size=size, sha256=sha256
        )

    def get(self, key: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            blob = self._bucket.blob(self.blob_name(key))
            return blob.download_as_bytes(timeout=self.timeout, retry=self.retry)
        except NotFound:
            return None

    def copy_to(self, key: str, dest: Path) -> str | None:
        from google.api_core.exceptions import NotFound

        blob = self._bucket.blob(self.blob_name(key))
        try:
            blob.download_to_filename(str(dest), timeout=self.timeout, retry=self.retry)
        except NotFound:
            Path(dest).unlink(missing_ok=True)
            return None
        # Hashed from the file once written (from the page cache): the client may resume a
        # broken download, so the bytes it streams are not all the file ends up holding.
        return file_sha256(dest)

    def get_verified(self, key: str, sha256: str) -> bytes:
        """The object's bytes, checked against the sha256 recorded when it was written."""
        data = self.get(key)
        if data is None:
            raise FileNotFoundError(f"{self.uri(key)} does not exist (removed by retention?)")
        actual = sha256_hex(data)
        if actual != sha256:
            raise ObjectIntegrityError(
                f"{self.uri(key)} has sha256 {actual}, but {sha256} was recorded when it was "
                "written; refusing to use it"
            )
        return data

    def get_many(self, keys: list[str]) -> list[bytes]:
        """Download several objects concurrently, in order; a missing one is an error."""

        def one(key: str) -> bytes:
            data = self.get(key)
            if data is None:
                raise MissingObjectError(key, self.uri(key))
            return data

        return _concurrently(one, keys)

    def scan_parquet(self, keys: list[str], spool: Spool | None = None) -> pl.LazyFrame:
        from ml_platform.storage.frames import scan_parquet_union

        # polars cannot reach every GCS-compatible endpoint (the emulator, private
        # endpoints) with the client's credentials, so the bytes come through the client.
        if spool is None:
            return scan_parquet_union(self.get_many(keys))
        # Into local files, concurrently: memory holds no object whole, and the scan reads
        # only the columns and row groups its query needs (a window's four columns).
        return scan_parquet_union([str(path) for path in self.spool_many(keys, spool)])

    def spool_many(self, keys: list[str], spool: Spool) -> list[Path]:
        """Copies of the objects in local files of ``spool``, in order; a missing one is an
        error."""

        def one(key: str) -> Path:
            path = spool.new_file(".parquet")
            if self.copy_to(key, path) is None:
                raise MissingObjectError(key, self.uri(key))
            return path

        return _concurrently(one, keys)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # The client's iterator follows nextPageToken, so listings past 1,000 objects work.
        full = (
            join_key(self.prefix, prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        for blob in self.client.list_blobs(self.bucket_name, prefix=full or None):
            yield ObjectInfo(
                key=blob.name[strip:],
                uri=f"gs://{self.bucket_name}/{blob.name}",
                size=int(blob.size or 0),
                generation=str(blob.generation),
                updated=blob.updated or blob.time_created,
            )

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._bucket.blob(self.blob_name(key)).delete(timeout=self.timeout)
        except NotFound:
            pass


def _raise_upload_error_first(upload: Future, write_error: BaseException) -> None:
    """Re-raise the upload's own error when it failed first (the write only saw the pipe close)."""
    upload_error = upload.exception()
    if upload_error is None or isinstance(upload_error, UploadAborted):
        raise write_error
    raise upload_error from write_error


def _content_type(key: str) -> str:
    if key.endswith(".json"):
        return "application/json"
    if key.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    return "application/octet-stream"


def _concurrently(download: Callable, keys: list[str]) -> list:
    """``download`` of every key, up to DOWNLOAD_WORKERS at once, results in key order."""
    if len(keys) <= 1:
        return [download(k) for k in keys]
    with ThreadPoolExecutor(max_workers=min(DOWNLOAD_WORKERS, len(keys))) as pool:
        return list(pool.map(download, keys))
