"""The GCS Parquet IO manager against a real GCS-compatible server, through real Dagster runs."""

import base64
import hashlib
import io
import json
import os
import re
import signal
import uuid
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import google_crc32c
import numpy as np
import polars as pl
import pytest
from dagster_gcp import GCSResource
from google.cloud import storage

from ml_platform.partitions import trailing_window
from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.storage.frames import content_hash
from ml_platform.storage.gcs_io_manager import GCSParquetIOManager
from ml_platform.storage.gcs_object_store import GCSObjectStore
from ml_platform_tests.fixtures.gcs import EMULATOR_HOST_ENV, start_emulator
from ml_platform_tests.pipeline.helpers import run_failure_message

PARTS = dg.DailyPartitionsDefinition(start_date="2026-01-01")
ROWS_PER_DAY = 5
NUMBERS = dg.AssetKey(["lake", "numbers"])
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dg.asset(
    key=NUMBERS,
    partitions_def=PARTS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "partition_date"},
    io_manager_key="lake",
)
def numbers(context: dg.AssetExecutionContext) -> pl.DataFrame:
    """ROWS_PER_DAY rows per partition; the run tag test/version changes the values."""
    version = int(context.run.tags.get("test/version", "1"))
    rows = int(context.run.tags.get("test/rows", str(ROWS_PER_DAY)))
    frames = [
        pl.DataFrame(
            {
                "partition_date": [date.fromisoformat(key)] * rows,
                "value": pl.int_range(0, rows, eager=True) * version,
                # Incompressible when large, so the object really spans many upload chunks.
                "noise": np.random.default_rng().random(rows) if rows > 1000 else [0.0] * rows,
            }
        )
        for key in context.partition_keys
    ]
    return pl.concat(frames)


# The query plans window_summary was given, to see what its lazy input scans.
PLANS: list[str] = []


@dg.asset(
    partitions_def=PARTS,
    ins={"numbers": dg.AssetIn(key=NUMBERS, partition_mapping=trailing_window)},
    io_manager_key="lake",
)
def window_summary(numbers: pl.LazyFrame) -> pl.DataFrame:
    PLANS.append(numbers.explain())
    df = numbers.collect()
    return pl.DataFrame(
        {
            "rows": [df.height],
            "days": [df["partition_date"].n_unique()],
            "value_sum": [int(df["value"].sum())],
        }
    )


@dg.asset(partitions_def=PARTS, ins={"numbers": dg.AssetIn(key=NUMBERS)}, io_manager_key="lake")
def same_day(numbers: pl.DataFrame) -> pl.DataFrame:
    return numbers.select(pl.col("value").sum())


def _io(bucket: str, **kwargs) -> GCSParquetIOManager:
    return GCSParquetIOManager(gcs=GCSResource(), gcs_bucket=bucket, gcs_prefix="lake", **kwargs)


def _materialize(instance, io_manager, selection, partition=None, span=None, tags=None, ok=True):
    tags = dict(tags or {})
    if span:
        tags |= {RANGE_START: span[0], RANGE_END: span[1]}
    return dg.materialize(
        [numbers, window_summary, same_day],
        selection=selection,
        partition_key=partition,
        resources={"lake": io_manager},
        instance=instance,
        tags=tags,
        raise_on_error=ok,
    )


def _metadata(instance, key: dg.AssetKey, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _blob(client: storage.Client, uri: str) -> storage.Blob:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return client.bucket(bucket).get_blob(name)


def test_round_trip_records_uri_generation_size_and_checksum(instance, gcs_bucket, gcs_client):
    io_manager = _io(gcs_bucket)
    result = _materialize(instance, io_manager, [NUMBERS], partition="2026-03-01")
    meta = _metadata(instance, NUMBERS, "2026-03-01")

    expected_key = f"lake/lake/numbers/2026-03-01/{result.run_id}-[0-9a-f]{{8}}\\.parquet"
    assert re.fullmatch(f"gs://{gcs_bucket}/{expected_key}", meta["dagster/uri"])
    blob = _blob(gcs_client, meta["dagster/uri"])
    assert meta["ml_platform/generation"] == str(blob.generation)
    assert meta["ml_platform/size_bytes"] == blob.size
    data = blob.download_as_bytes()
    assert blob.crc32c == base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    assert meta["ml_platform/size_bytes"] == len(data)
    assert meta["ml_platform/sha256"] == hashlib.sha256(data).hexdigest()
    frame = pl.read_parquet(data)
    assert frame.height == ROWS_PER_DAY
    assert pl.read_parquet_schema(io.BytesIO(data))["partition_date"] == pl.Date
    assert b"ZSTD" in _compression_of(data)

    _materialize(instance, io_manager, ["same_day"], partition="2026-03-01")
    inputs = _metadata(instance, dg.AssetKey("same_day"), "2026-03-01")[INPUTS_METADATA_KEY]
    assert inputs[0]["asset"] == "lake/numbers"
    assert inputs[0]["partitions"][0]["uri"] == meta["dagster/uri"]
    assert inputs[0]["partitions"][0]["generation"] == meta["ml_platform/generation"]


def _compression_of(data: bytes) -> bytes:
    import pyarrow.parquet as pq

    md = pq.ParquetFile(io.BytesIO(data)).metadata
    return md.row_group(0).column(0).compression.encode()


def test_every_version_stays_loadable_and_loads_resolve_the_latest(
    instance, gcs_bucket, gcs_client
):
    io_manager = _io(gcs_bucket)
    uris = []
    for version in (1, 2, 3):
        _materialize(
            instance,
            io_manager,
            [NUMBERS],
            partition="2026-03-02",
            tags={"test/version": str(version)},
        )
        uris.append(_metadata(instance, NUMBERS, "2026-03-02")["dagster/uri"])
    assert len(set(uris)) == 3
    for version, uri in enumerate(uris, start=1):
        frame = pl.read_parquet(_blob(gcs_client, uri).download_as_bytes())
        assert frame["value"].to_list() == [v * version for v in range(ROWS_PER_DAY)]

    pointer = io_manager.current_version(instance, NUMBERS, "2026-03-02")
    assert pointer["uri"] == uris[-1]
    _materialize(instance, io_manager, ["same_day"], partition="2026-03-02")
    loaded = _metadata(instance, dg.AssetKey("same_day"), "2026-03-02")[INPUTS_METADATA_KEY]
    assert loaded[0]["partitions"][0]["uri"] == uris[-1]


def test_single_run_backfill_writes_one_version_per_partition(instance, gcs_bucket, gcs_client):
    io_manager = _io(gcs_bucket)
    result = _materialize(instance, io_manager, [NUMBERS], span=("2026-03-01", "2026-03-05"))
    assert result.success
    for day in range(1, 6):
        partition = f"2026-03-0{day}"
        meta = _metadata(instance, NUMBERS, partition)
        assert re.search(
            rf"/{partition}/{result.run_id}-[0-9a-f]{{8}}\.parquet$", meta["dagster/uri"]
        )
        frame = pl.read_parquet(_blob(gcs_client, meta["dagster/uri"]).download_as_bytes())
        assert frame["partition_date"].unique().to_list() == [date.fromisoformat(partition)]
        assert meta["dagster/row_count"] == ROWS_PER_DAY


def test_28_day_window_loads_every_partition_and_records_each_read(instance, gcs_bucket):
    io_manager = _io(gcs_bucket)
    end = date(2026, 3, 1)
    start = end - timedelta(days=28)
    _materialize(instance, io_manager, [NUMBERS], span=(start.isoformat(), end.isoformat()))

    _materialize(instance, io_manager, ["window_summary"], partition=end.isoformat())
    summary = pl.read_parquet(
        io_manager.store().get(
            io_manager.current_version(instance, dg.AssetKey("window_summary"), "2026-03-01")["key"]
        )
    )
    assert summary.row(0, named=True) == {
        "rows": 29 * ROWS_PER_DAY,
        "days": 29,
        "value_sum": 29 * sum(range(ROWS_PER_DAY)),
    }
    inputs = _metadata(instance, dg.AssetKey("window_summary"), "2026-03-01")[INPUTS_METADATA_KEY]
    reads = inputs[0]["partitions"]
    assert len(reads) == 29
    assert {r["partition"] for r in reads} == {
        (start + timedelta(days=i)).isoformat() for i in range(29)
    }
    assert all(r["uri"].startswith(f"gs://{gcs_bucket}/lake/") for r in reads)
    assert all(r["storage_id"] is not None for r in reads)
    # The window was scanned from local copies (spooled), not from 29 objects' bytes held
    # in memory, and the copies went with the step's resources.
    scanned = re.search(r"Parquet SCAN \[([^,\]]+)", PLANS[-1])
    assert scanned and "in-mem" not in scanned.group(1), PLANS[-1]
    spooled = Path(scanned.group(1))
    assert spooled.parent.name.startswith("ml-platform-spool-") and not spooled.parent.exists()


class _ThirdWriteFails(GCSObjectStore):
    """The writer dies after two partitions of a range were uploaded."""

    writes = 0

    def put_streamed(self, key, write, size_hint):
        type(self).writes += 1
        if type(self).writes == 3:
            raise ConnectionError("writer killed on the third partition")
        return super().put_streamed(key, write, size_hint)


class _IOWithStore(GCSParquetIOManager):
    """The GCS IO manager with a test-chosen store class (fault injection in the writer)."""

    store_class: str = "third_fails"

    def store(self) -> GCSObjectStore:
        if self._store is None:
            cls = {"third_fails": _ThirdWriteFails, "kill_server": _KillsServerMidUpload}
            self._store = cls[self.store_class](
                self.gcs.get_client(),
                self.gcs_bucket,
                self.gcs_prefix,
                chunk_size=256 * 1024,
                retry_deadline=self.retry_deadline_seconds,
            )
        return self._store


def _assert_old_version_current(instance, io_manager, client, old_uri: str):
    pointer = io_manager.current_version(instance, NUMBERS, "2026-03-03")
    assert pointer["uri"] == old_uri
    frame = pl.read_parquet(io_manager.store().get(pointer["key"]))
    assert frame["value"].to_list() == list(range(ROWS_PER_DAY))
    assert _blob(client, old_uri) is not None


def test_a_range_dying_half_way_on_gcs_publishes_nothing(instance, gcs_bucket, gcs_client):
    good = _io(gcs_bucket)
    _materialize(instance, good, [NUMBERS], span=("2026-03-01", "2026-03-03"))
    old = {d: _metadata(instance, NUMBERS, d)["dagster/uri"] for d in _DAYS_1_3}

    _ThirdWriteFails.writes = 0
    failing = _IOWithStore(gcs=GCSResource(), gcs_bucket=gcs_bucket, gcs_prefix="lake")
    result = _materialize(
        instance,
        failing,
        [NUMBERS],
        span=("2026-03-01", "2026-03-03"),
        tags={"test/version": "2"},
        ok=False,
    )
    assert not result.success
    uploaded = [b.name for b in gcs_client.list_blobs(gcs_bucket) if result.run_id in b.name]
    assert len(uploaded) == 2  # in the bucket, but named by no event
    for day in _DAYS_1_3:
        assert good.current_version(instance, NUMBERS, day)["uri"] == old[day]
    _assert_old_version_current(instance, good, gcs_client, old["2026-03-03"])


_DAYS_1_3 = ("2026-03-01", "2026-03-02", "2026-03-03")


# -- the server stopped mid-upload ---------------------------------------------------------
_server_to_kill: dict[str, int] = {}


class _KillingSink:
    """Passes the encoder's bytes on; kills the GCS server (SIGKILL) after ``after`` bytes.

    The pipe holds at most four 256 KiB chunks ahead of the upload, so by then the upload
    has sent its first chunks: the server dies in the middle of a streamed upload.
    """

    def __init__(self, sink, after: int) -> None:
        self.sink, self.after, self.written = sink, after, 0

    def write(self, data) -> int:
        self.written += len(data)
        if self.written >= self.after and _server_to_kill.get("pid"):
            os.kill(_server_to_kill.pop("pid"), signal.SIGKILL)
        return self.sink.write(data)


class _KillsServerMidUpload(GCSObjectStore):
    def put_streamed(self, key, write, size_hint):
        assert size_hint > 8 * 1024 * 1024, "the test frame must be large enough to stream"
        return super().put_streamed(
            key, lambda sink: write(_KillingSink(sink, after=2 * 1024 * 1024)), size_hint
        )


def test_server_stopped_mid_upload_leaves_the_old_version_current(
    instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data_dir = tmp_path / "gcs-data"
    data_dir.mkdir()
    server = start_emulator(tmp_path / "emulator.log", data_dir=data_dir)
    try:
        monkeypatch.setenv(EMULATOR_HOST_ENV, server.url)
        server.client().create_bucket("lake-bucket")
        good = _io("lake-bucket")
        _materialize(instance, good, [NUMBERS], partition="2026-03-03")
        old_uri = _metadata(instance, NUMBERS, "2026-03-03")["dagster/uri"]

        _server_to_kill["pid"] = server.process.pid
        failing = _IOWithStore(
            gcs=GCSResource(),
            gcs_bucket="lake-bucket",
            gcs_prefix="lake",
            store_class="kill_server",
            retry_deadline_seconds=2,
        )
        # About 10 MB of Parquet (29 MB in memory): streamed while encoded, in 256 KiB
        # chunks, and the server killed after about 2 MB.
        tags = {"test/version": "2", "test/rows": "1200000"}
        result = _materialize(
            instance, failing, [NUMBERS], partition="2026-03-03", tags=tags, ok=False
        )
        assert not result.success
        assert server.process.wait(timeout=10) == -signal.SIGKILL
        # The step fails with the upload's own error, not the encoder's view of a closed pipe.
        message = run_failure_message(result)
        assert "Connection" in message, message
    finally:
        _server_to_kill.clear()
        server.stop()

    # The same data, served again: the interrupted upload never became an object.
    restarted = start_emulator(tmp_path / "emulator2.log", data_dir=data_dir)
    try:
        monkeypatch.setenv(EMULATOR_HOST_ENV, restarted.url)
        client = restarted.client()
        names = [b.name for b in client.list_blobs("lake-bucket")]
        assert not any(result.run_id in name for name in names), names
        _assert_old_version_current(instance, _io("lake-bucket"), client, old_uri)
    finally:
        restarted.stop()


def test_large_partition_streams_while_encoding_and_records_what_gcs_stored(
    instance, gcs_bucket, gcs_client
):
    io_manager = _io(gcs_bucket, upload_chunk_size_mb=1)
    # About 10 MB of Parquet: above the 8 MiB single-request limit, so streamed in 1 MiB chunks.
    tags = {"test/rows": "1200000"}
    _materialize(instance, io_manager, [NUMBERS], partition="2026-03-04", tags=tags)
    meta = _metadata(instance, NUMBERS, "2026-03-04")

    blob = _blob(gcs_client, meta["dagster/uri"])
    assert meta["ml_platform/generation"] == str(blob.generation)
    data = blob.download_as_bytes()
    assert meta["ml_platform/size_bytes"] == blob.size == len(data) > 8 * 1024 * 1024
    assert meta["ml_platform/sha256"] == hashlib.sha256(data).hexdigest()
    frame = pl.read_parquet(data)
    assert frame.height == 1_200_000
    assert frame["value"].to_list() == list(range(1_200_000))
    pointer = io_manager.current_version(instance, NUMBERS, "2026-03-04")
    assert pointer["sha256"] == meta["ml_platform/sha256"]
    assert pointer["content_hash"] == meta["ml_platform/content_hash"] == content_hash(frame)


def test_encoder_failing_mid_stream_leaves_no_object(gcs_client):
    # Its own bucket, kept: the emulator refuses to delete a bucket with an unfinished
    # upload session, which is what an aborted upload leaves until GCS expires it.
    gcs_bucket = f"aborted-{uuid.uuid4().hex[:16]}"
    gcs_client.create_bucket(gcs_bucket)
    store = GCSObjectStore(gcs_client, gcs_bucket, "lake", chunk_size=256 * 1024)
    store.put("part/_CURRENT.json", b'{"key": "part/old.parquet"}')

    class EncoderDied(Exception):
        pass

    def dies_after_3_mb(sink) -> None:
        for _ in range(12):
            sink.write(np.random.default_rng().bytes(256 * 1024))
        raise EncoderDied("the encoder failed after 3 MB")

    with pytest.raises(EncoderDied, match="after 3 MB"):
        store.put_streamed("part/new.parquet", dies_after_3_mb, size_hint=10**9)
    names = [b.name for b in gcs_client.list_blobs(gcs_bucket, prefix="lake/")]
    assert names == ["lake/part/_CURRENT.json"]
    assert store.get("part/_CURRENT.json") == b'{"key": "part/old.parquet"}'


def test_store_holds_skops_artifacts_verified_by_sha256(gcs_bucket, gcs_client):
    import skops.io as sio
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), Ridge(alpha=0.5))
    x = pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.2, 0.9]}).to_numpy()
    pipeline.fit(x, [1.0, 2.0, 3.0, 4.5])
    store = GCSObjectStore(gcs_client, gcs_bucket, "models")
    stored = store.put("champion/run-1.skops", sio.dumps(pipeline))

    data = store.get_verified("champion/run-1.skops", stored.sha256)
    # Nothing beyond skops' default-trusted sklearn/numpy types, so the trusted list is empty.
    assert sio.get_untrusted_types(data=data) == []
    loaded = sio.loads(data, trusted=[])
    assert (loaded.predict(x) == pipeline.predict(x)).all()
    assert stored.generation == str(_blob(gcs_client, stored.uri).generation)

    tampered = GCSObjectStore(gcs_client, gcs_bucket, "models")
    tampered.put("champion/run-1.skops", data + b"\0")
    with pytest.raises(Exception, match="refusing to use it"):
        tampered.get_verified("champion/run-1.skops", stored.sha256)


def test_unknown_objects_fail_clearly(gcs_bucket, instance):
    io_manager = _io(gcs_bucket)
    result = _materialize(instance, io_manager, ["same_day"], partition="2026-03-09", ok=False)
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "numbers has no materialization of partition(s) 2026-03-09" in json.dumps(
        str(failure.event_specific_data.error)
    )


def test_copy_to_writes_the_object_to_a_file_and_hashes_what_it_holds(
    gcs_bucket, gcs_client, tmp_path
):
    from ml_platform.storage.object_store import LocalObjectStore, sha256_hex

    data = os.urandom(3 * 1024 * 1024)  # larger than one download chunk of the client
    for store in (
        GCSObjectStore(gcs_client, gcs_bucket, "lake"),
        LocalObjectStore(tmp_path / "lake"),
    ):
        stored = store.put("part/a.parquet", data)
        dest = tmp_path / f"{type(store).__name__}.copy"
        assert store.copy_to("part/a.parquet", dest) == stored.sha256 == sha256_hex(data)
        assert dest.read_bytes() == data
        missing = tmp_path / f"{type(store).__name__}.missing"
        assert store.copy_to("part/none.parquet", missing) is None
        assert not missing.exists()
