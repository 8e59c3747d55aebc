"""A bounded pipe from an encoder to a streaming upload, so encoding overlaps the transfer.

The encoder (polars writing Parquet, in the caller's thread) writes into the pipe; the
uploader (google-cloud-storage's resumable upload, in another thread) reads it one chunk at
a time. Why not the client's own ``BlobWriter``: it uploads inside ``write()``, in the
encoder's thread, so nothing overlaps, and it does not report the finished object's
generation.

The uploader may seek back after a transient error, but only to bytes the server has not
acknowledged, which all lie in the chunk being sent; everything before that chunk is
dropped, so memory stays near ``max_ahead`` bytes whatever the object's size.
"""

from __future__ import annotations

import hashlib
import io
import threading


class UploadAborted(Exception):
    """The other side of the pipe failed; raised to stop this side."""


class UploadPipe(io.RawIOBase):
    """Write on one thread, read (and seek within the unacknowledged chunk) on another."""

    def __init__(self, max_ahead: int) -> None:
        super().__init__()
        self._max_ahead = max_ahead
        self._cond = threading.Condition()
        self._buffer = bytearray()
        self._base = 0  # stream offset of self._buffer[0]
        self._position = 0  # the reader's offset
        self._written = 0
        self._finished = False
        self._error: BaseException | None = None
        self._sha256 = hashlib.sha256()

    # -- the encoder's side ----------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if not size:
            return 0
        # hashlib releases the GIL on large buffers, so hashing overlaps the upload too.
        self._sha256.update(data)
        with self._cond:
            while self._error is None and self._written - self._position >= self._max_ahead:
                self._cond.wait()
            if self._error is not None:
                raise UploadAborted(f"the upload failed: {self._error}") from self._error
            self._buffer += data
            self._written += size
            self._cond.notify_all()
        return size

    def finish(self) -> None:
        """Every byte is written: the reader's next short read ends the upload."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        """Stop both sides: the reader raises instead of seeing an end of stream.

        Raising (never returning a short read) is what keeps a truncated object from being
        finalized when the encoder fails half-way.
        """
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    @property
    def size(self) -> int:
        return self._written

    def sha256_hex(self) -> str:
        return self._sha256.hexdigest()

    # -- the uploader's side ---------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            # A new read starts a new chunk: everything before it is acknowledged.
            del self._buffer[: self._position - self._base]
            self._base = self._position
            self._cond.notify_all()
            while self._error is None and not self._finished and not self._enough(size):
                self._cond.wait()
            if self._error is not None:
                raise UploadAborted(f"the encoder failed: {self._error}") from self._error
            end = self._written if size < 0 else min(self._written, self._position + size)
            data = bytes(self._buffer[self._position - self._base : end - self._base])
            self._position = end
            return data

    def _enough(self, size: int) -> bool:
        return size >= 0 and self._written - self._position >= size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._cond:
            if whence == io.SEEK_CUR:
                offset += self._position
            elif whence != io.SEEK_SET:
                raise io.UnsupportedOperation("an upload pipe has no end to seek from")
            if not self._base <= offset <= self._written:
                raise io.UnsupportedOperation(
                    f"cannot seek to byte {offset}: only bytes {self._base}..{self._written} "
                    "are still held"
                )
            self._position = offset
            return offset
