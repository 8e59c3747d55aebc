"""Training memory grows with rows x the model's features, not with unneeded columns or copies.

A fresh Python process (as a training pod) trains on a Parquet window of N rows whose
columns are the model's features plus wide columns the model does not use (ids, notes);
the growth of its peak RSS during training must stay within a small multiple of
N x features x 8 bytes (the float64 matrix the regressor bins). Reading the unneeded
columns, object arrays of the categoricals or extra copies of the matrix break the bound.
bench/models.py measures the real figure at 200k rows a day.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta

import numpy as np
import polars as pl

from ml_platform.models.training import CATEGORICAL, FEATURES, NUMERIC, TARGET

ROWS = 1_000_000
DAYS = 10
# Bytes per row allowed: this many float64 copies of the feature matrix (92 MB each here).
# Measured at 1M rows: training from the projected LazyFrame grows the peak by 580-600 MB
# (about 6.4 copies); the former whole-frame pipeline fit (every column read, object arrays
# of the categoricals) by 980 MB (10.6 copies), with the same holdout MAPE.
COPIES = 8
BOUND_MB = ROWS * len(FEATURES) * 8 * COPIES / 2**20

CHILD = """
import json, sys
import polars as pl
from ml_platform.models.training import Hyperparameters, train_and_evaluate

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

lazy = pl.scan_parquet(sys.argv[1])
params = Hyperparameters(learning_rate=0.5, max_iter=10, holdout_days=1, min_training_rows=1_000)
train_and_evaluate(pl.scan_parquet(sys.argv[1]).head(20_000), params)  # warm the imports
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak to the current RSS
start = status("VmRSS")
result = train_and_evaluate(lazy, params)
print(json.dumps({"growth_mb": status("VmHWM") - start, "mape": result.metrics["mape"]}))
"""


def _window(path) -> None:
    rng = np.random.default_rng(0)
    n = ROWS
    vocab = {
        c: [f"{c}_{i}" for i in range(k)] for c, k in zip(CATEGORICAL, (4, 40, 30, 30), strict=True)
    }
    codes = {c: rng.integers(0, len(v), n) for c, v in vocab.items()}
    distance = rng.uniform(50, 5_000, n)
    frame = pl.DataFrame(
        {
            "shipment_id": pl.int_range(n, eager=True).cast(pl.Utf8) + "-shipment-" + "x" * 24,
            "partition_date": [date(2026, 1, 1) + timedelta(days=int(d)) for d in range(DAYS)]
            * (n // DAYS),
            **{c: np.array(vocab[c])[codes[c]] for c in CATEGORICAL},
            **{c: rng.uniform(1, 100, n) for c in NUMERIC},
            "distance_km": distance,
            **{
                f"note_{i}": pl.int_range(n, eager=True).cast(pl.Utf8) + f" free text {i} " * 3
                for i in range(4)
            },
            TARGET: distance * (1 + codes["transport_mode"]) * rng.uniform(0.9, 1.1, n),
        }
    )
    frame.write_parquet(path)


def test_training_peak_is_bounded_by_rows_times_features(tmp_path):
    path = tmp_path / "window.parquet"
    _window(path)
    # Fewer malloc arenas: freed memory is reused across threads, so the figure is steadier.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["mape"] < 0.2  # it did learn
    assert figures["growth_mb"] < BOUND_MB, (
        f"training {ROWS:,} rows x {len(FEATURES)} features grew the peak RSS by "
        f"{figures['growth_mb']:,.0f} MB; bound {BOUND_MB:,.0f} MB ({COPIES} float64 copies)"
    )
