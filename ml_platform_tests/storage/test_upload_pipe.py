"""The pipe that lets Parquet encoding overlap a streaming upload."""

import io
import threading

import pytest

from ml_platform.storage.upload_pipe import UploadAborted, UploadPipe


def _in_thread(fn):
    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as error:  # handed to the test thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_reader_gets_full_chunks_then_a_short_read_at_the_end():
    pipe = UploadPipe(max_ahead=64)
    thread, result = _in_thread(lambda: [pipe.read(16), pipe.read(16), pipe.read(16)])
    for i in range(5):
        pipe.write(bytes([i]) * 5)
    pipe.finish()
    thread.join(timeout=5)
    first, second, last = result["value"]
    assert first + second + last == b"".join(bytes([i]) * 5 for i in range(5))
    assert (len(first), len(second), len(last)) == (16, 9, 0)
    assert pipe.size == 25


def test_reader_can_seek_back_within_the_chunk_it_is_sending_but_not_before():
    pipe = UploadPipe(max_ahead=64)
    pipe.write(b"a" * 10 + b"b" * 10 + b"c" * 10)
    pipe.finish()
    assert pipe.read(10) == b"a" * 10
    assert pipe.read(10) == b"b" * 10  # the first chunk is acknowledged and dropped
    pipe.seek(12)  # a retry resends part of the current chunk
    assert pipe.tell() == 12
    assert pipe.read(8) == b"b" * 8
    with pytest.raises(io.UnsupportedOperation, match="only bytes 12..30"):
        pipe.seek(5)


def test_writer_waits_while_max_ahead_bytes_are_unread():
    pipe = UploadPipe(max_ahead=8)
    pipe.write(b"x" * 8)
    thread, result = _in_thread(lambda: pipe.write(b"y" * 4))
    thread.join(timeout=0.3)
    assert thread.is_alive(), "the writer should wait for the reader"
    assert pipe.read(8) == b"x" * 8
    thread.join(timeout=5)
    assert result["value"] == 4


def test_abort_makes_the_reader_raise_instead_of_ending_the_stream():
    pipe = UploadPipe(max_ahead=64)
    pipe.write(b"partial")
    thread, result = _in_thread(lambda: pipe.read(32))
    pipe.abort(RuntimeError("encoder died"))
    thread.join(timeout=5)
    assert isinstance(result["error"], UploadAborted)
    assert "encoder died" in str(result["error"])


def test_abort_makes_a_waiting_writer_raise():
    pipe = UploadPipe(max_ahead=4)
    pipe.write(b"full")
    thread, result = _in_thread(lambda: pipe.write(b"more"))
    pipe.abort(ConnectionError("server gone"))
    thread.join(timeout=5)
    assert isinstance(result["error"], UploadAborted)
    assert "server gone" in str(result["error"])


def test_sha256_covers_every_byte_written():
    import hashlib

    pipe = UploadPipe(max_ahead=1024)
    pipe.write(b"hello ")
    pipe.write(memoryview(b"world"))
    assert pipe.sha256_hex() == hashlib.sha256(b"hello world").hexdigest()
