"""GCS IO benchmark: a 1M-row partition through the GCS Parquet IO manager, vs a raw client
upload/download of the same Parquet bytes, vs dagster-gcp's GCSPickleIOManager.

Starts its own gcp-storage-emulator on loopback. Run: ``.venv/bin/python bench/gcs_io.py``.
The emulator is a single Python process, so absolute MB/s are the emulator's; the ratios
are what this measures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

ROWS = 1_000_000
REPEAT = 3


def start_emulator() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    proc = subprocess.Popen(
        [str(exe), "start", "-H", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gcp-storage-emulator did not start")


def frame() -> pl.DataFrame:
    rng = np.random.default_rng(7)
    return pl.DataFrame(
        {
            "shipment_id": [f"s-{i}" for i in range(ROWS)],
            "partition_date": pl.Series([None] * ROWS, dtype=pl.Date).fill_null(
                pl.date(2026, 3, 1)
            ),
            "lane": rng.choice(["Hamburg->Lyon", "Milan->Rotterdam", "Lyon->Milan"], ROWS),
            "distance_km": rng.uniform(50, 3000, ROWS),
            "weight_kg": rng.uniform(1, 20000, ROWS),
            "transport_mode": rng.choice(["road", "rail", "sea", "air"], ROWS),
            "price_eur": rng.uniform(100, 9000, ROWS).round(2),
        }
    )


def best(fn) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    proc, url = start_emulator()
    os.environ["STORAGE_EMULATOR_HOST"] = url
    try:
        run(url)
    finally:
        proc.terminate()
        proc.wait()


def run(url: str) -> None:
    from dagster_gcp import GCSResource
    from dagster_gcp.gcs import GCSPickleIOManager

    from ml_platform.storage.frames import to_parquet_bytes
    from ml_platform.storage.gcs_io_manager import GCSParquetIOManager

    df = frame()
    client = GCSResource().get_client()
    client.create_bucket("bench")
    key = dg.AssetKey(["features", "bench"])
    io_manager = GCSParquetIOManager(gcs=GCSResource(), gcs_bucket="bench", gcs_prefix="lake")
    counter = iter(range(1000))

    def io_write():
        ctx = dg.build_output_context(asset_key=key, run_id=f"run-{next(counter):04d}")
        io_manager._write_partition(ctx, "2026-03-01", df)

    def io_read():
        pointer = io_manager.current_version(key, "2026-03-01")
        return io_manager.store().scan_parquet([pointer["key"]]).collect()

    t_io_w = best(io_write)
    t_io_r = best(io_read)
    assert io_read().equals(df)
    size = io_manager.current_version(key, "2026-03-01")["size"]

    data = to_parquet_bytes(df)
    blob = client.bucket("bench").blob("raw/bench.parquet")
    t_raw_w = best(lambda: blob.upload_from_string(data))
    t_raw_r = best(lambda: blob.download_as_bytes())

    store = io_manager.store()
    t_put = best(lambda: store.put("transfer/bench.parquet", data))
    t_get = best(lambda: store.get("transfer/bench.parquet"))
    t_encode = best(lambda: to_parquet_bytes(df))

    pickle_io = GCSPickleIOManager(gcs=GCSResource(), gcs_bucket="bench", gcs_prefix="pickle")
    # A context records its output metadata once: one fresh context per write.
    t_pk_w = best(lambda: pickle_io.handle_output(dg.build_output_context(asset_key=key), df))
    in_ctx = dg.build_input_context(
        asset_key=key, upstream_output=dg.build_output_context(asset_key=key)
    )
    t_pk_r = best(lambda: pickle_io.load_input(in_ctx))
    pickle_size = client.bucket("bench").get_blob("pickle/features/bench").size

    mb = size / 1e6
    rows = f"{ROWS:,} rows x {df.width} columns"
    print(f"GCS IO benchmark ({rows}; best of {REPEAT}; emulator at {url})")
    print(
        f"{'path':42} {'write s':>8} {'MB/s':>7} {'Mrows/s':>8} {'read s':>8} {'MB/s':>7} {'Mrows/s':>8} {'object MB':>10}"
    )

    def line(name, tw, tr, nbytes):
        print(
            f"{name:42} {tw:8.3f} {nbytes / 1e6 / tw:7.1f} {ROWS / tw / 1e6:8.2f} "
            f"{tr:8.3f} {nbytes / 1e6 / tr:7.1f} {ROWS / tr / 1e6:8.2f} {nbytes / 1e6:10.1f}"
        )

    line("IO manager (encode+upload+pointer / load)", t_io_w, t_io_r, size)
    line("raw client upload/download of same bytes", t_raw_w, t_raw_r, len(data))
    line("IO manager's store put/get of same bytes", t_put, t_get, len(data))
    line("dagster-gcp GCSPickleIOManager", t_pk_w, t_pk_r, pickle_size)
    print(
        f"IO manager vs raw client: write {t_raw_w / t_io_w:.2f}x, read {t_raw_r / t_io_r:.2f}x (goal >= 0.85x)"
    )
    print(
        f"transfer only (store put/get vs raw client): write {t_raw_w / t_put:.2f}x, "
        f"read {t_raw_r / t_get:.2f}x; zstd Parquet encoding alone takes {t_encode:.3f} s"
    )
    print(
        f"IO manager vs pickle: write {t_pk_w / t_io_w:.2f}x faster, read {t_pk_r / t_io_r:.2f}x "
        f"faster, object {pickle_size / size:.1f}x smaller ({mb:.1f} MB vs {pickle_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
