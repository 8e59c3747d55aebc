"""Benchmark: the models half at 200k rows a day: training time and prediction throughput.

    uv run python bench/models.py [--rows-per-day 200000] [--repeats 3]

On a fresh ML_PLATFORM_HOME and SQLite DAGSTER_HOME (temp folders on local disk), in one
process, with every import done before any clock starts:

1. land 2026-01-01 .. 2026-02-09 (40 days): week 2026-02-02's model trains on the four weeks
   of features 2026-01-12 .. 2026-02-08, whose 28-day lane windows reach back to 2026-01-01;
   2026-02-09, the day after the model's week, is the day scored;
2. materialize the data half over the whole range in one run (`data_pipeline`);
3. train week 2026-02-02 through the `train_price_model` job in a fresh Python process on
   the same instance, as the training step's pod runs it (so its peak RSS is the training
   step's own, not this process's leftovers from the data half), then promote it
   (`promote_champion`);
4. score the day through the `predict_prices` job (only predictions/price_quotes) versus
   loading the same features partition and calling the champion pipeline's `predict`
   directly; best of ``--repeats`` each, alternating. The step's own duration (Dagster's
   STEP_SUCCESS timer: inputs, compute, output write) is compared, so run start-up is
   excluded; the whole run's wall time is reported too.

Prints per-phase seconds, rows/s and peak RSS (training's goal: under 4 GB, the training
pod reserves 4 GiB), and the step / direct ratio (goal <= 1.2x).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

START = date(2026, 1, 1)
WEEK = "2026-02-02"
# The day after the model's week: the first day this model would score in production.
PREDICT_DAY = date(2026, 2, 9)
DAYS = (PREDICT_DAY - START).days + 1
GOAL = 1.2
TRAIN_PEAK_GOAL_MB = 4_000
# Dagster's console logger at DEBUG prints every event; the figures are what matter here.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--workdir", help="an empty folder to keep the homes in (default: a temp folder, removed)"
    )
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_only:  # the child process of phase 3, on the parent's homes
        return _train_only()

    if args.workdir:
        Path(args.workdir).mkdir(parents=True)
        return _in(Path(args.workdir), args)
    with tempfile.TemporaryDirectory(prefix="ml_platform_bench_models_") as tmp:
        return _in(Path(tmp), args)


def _in(root: Path, args) -> int:
    """A fresh platform home and a SQLite Dagster home under root."""
    home = root / "home"
    os.environ["ML_PLATFORM_HOME"] = str(home)
    os.environ["ML_PLATFORM_DEPLOYMENT"] = "local"
    os.environ["DAGSTER_HOME"] = str(root / "dagster")
    (root / "dagster").mkdir()
    return _bench(home, args)


def _bench(home: Path, args) -> int:
    # Settings are read at import time, so imports follow the environment; all of them
    # happen before the first clock starts.
    import dagster as dg
    import numpy as np

    import ml_platform.transforms.shipments  # noqa: F401
    from ml_platform.assets.features import FEATURES_KEY
    from ml_platform.assets.predictions import PREDICTIONS_KEY
    from ml_platform.definitions import defs
    from ml_platform.demo.generator import GeneratorConfig, generate_drops
    from ml_platform.models.training import predict
    from ml_platform.provenance.champion import (
        PRICE_MODEL_KEY,
        current_champion,
        load_champion_model,
    )
    from ml_platform.storage.object_store import LocalObjectStore

    rows_per_day = args.rows_per_day
    last_day = (START + timedelta(days=DAYS - 1)).isoformat()
    day = PREDICT_DAY.isoformat()
    store = LocalObjectStore(home / "storage")

    print(f"models half at {rows_per_day:,} rows/day; {os.cpu_count()} CPUs")
    with _phase("generate") as p:
        generate_drops(
            home / "landing",
            START,
            DAYS,
            GeneratorConfig(rows_per_day=rows_per_day, bad_row_share=0.01),
        )
    print(f"landed {START} .. {last_day} ({DAYS} days x {rows_per_day:,} rows) in {p.seconds:.1f}s")

    with dg.DagsterInstance.get() as instance:
        with _phase("data half") as data:
            result = defs.resolve_job_def("data_pipeline").execute_in_process(
                instance=instance,
                run_config=QUIET,
                tags={
                    "dagster/asset_partition_range_start": START.isoformat(),
                    "dagster/asset_partition_range_end": last_day,
                },
            )
        assert result.success
        print(
            f"data half, one run over {DAYS} days: {data.seconds:.1f}s "
            f"({DAYS * rows_per_day / data.seconds:,.0f} landed rows/s), {data.rss()}"
        )

        with _phase("train") as train:
            child = _train_in_fresh_process()
        meta = _latest_metadata(instance, PRICE_MODEL_KEY, WEEK)
        rows_train = meta["rows_train"].value
        fit_seconds = meta["training_seconds"].value
        peak = child["peak_mb"]
        print(
            f"train week {WEEK}: fit {fit_seconds:.1f}s on {rows_train:,} rows "
            f"({rows_train / fit_seconds:,.0f} rows/s), holdout {meta['rows_holdout'].value:,} "
            f"rows, MAPE {meta['holdout_mape'].value:.4f} (naive baseline "
            f"{meta['baseline_mape'].value:.4f}); step {child['step_seconds']:.1f}s, "
            f"process wall {train.seconds:.1f}s"
        )
        print(
            f"training peak RSS, fresh process (imports {child['start_mb']:,.0f} MB): "
            f"{peak:,.0f} MB (goal: < {TRAIN_PEAK_GOAL_MB:,} MB) "
            f"{'MET' if peak < TRAIN_PEAK_GOAL_MB else 'MISSED'}"
        )

        with _phase("promote") as promote:
            result = defs.resolve_job_def("promote_champion").execute_in_process(
                instance=instance, run_config=QUIET
            )
        assert result.success and current_champion(instance)["model_week"] == WEEK
        print(f"promote: run wall {promote.seconds:.1f}s")

        # The per-run fixed cost the step pays and the direct call does not: the artifact
        # read, its sha256 and the skops load.
        with _phase("model load") as load:
            model = load_champion_model(current_champion(instance), store)
        print(f"champion artifact load (read, sha256, skops): {load.seconds:.2f}s")

        predict_job = defs.resolve_job_def("predict_prices")
        job, direct = [], []
        for _ in range(args.repeats):  # alternating, so load on the machine hits both alike
            with _phase("predict job") as run:
                result = predict_job.execute_in_process(
                    instance=instance,
                    partition_key=day,
                    asset_selection=[PREDICTIONS_KEY],
                    run_config=QUIET,
                )
            assert result.success
            job.append((_step_seconds(result), run))
            with _phase("direct") as call:
                features = _load_partition(instance, store, FEATURES_KEY, day)
                predicted = predict(model, features)
            direct.append((call.seconds, call))

        quotes = _load_partition(instance, store, PREDICTIONS_KEY, day)
        assert quotes["shipment_id"].to_list() == features["shipment_id"].to_list()
        assert np.allclose(quotes["predicted_price_eur"].to_numpy(), predicted)
        rows = features.height
        step, run = min(job, key=lambda x: x[0])
        floor, call = min(direct, key=lambda x: x[0])
        wall = min(r.seconds for _, r in job)
        print(f"\npredict {day}: {rows:,} rows, best of {args.repeats}")
        print(f"{'':<36}{'seconds':>8}{'rows/s':>10}{'peak RSS':>10}{'growth':>9}")
        for name, seconds, phase in (
            ("predict_prices step (price_quotes)", step, run),
            ("predict_prices run wall", wall, run),
            ("direct: load features + predict()", floor, call),
        ):
            print(
                f"{name:<36}{seconds:>8.2f}{rows / seconds:>10,.0f}"
                f"{phase.peak_mb:>8,.0f}MB{phase.growth_mb:>7,.0f}MB"
            )
        print(
            f"all runs: step {_fmt(s for s, _ in job)}; run wall {_fmt(r.seconds for _, r in job)}; "
            f"direct {_fmt(s for s, _ in direct)}"
        )
        ratio = step / floor
        print(
            f"\nprediction step / direct predict = {ratio:.2f}x (goal: <= {GOAL}x) "
            f"{'MET' if ratio <= GOAL else 'MISSED'}; run wall / direct = {wall / floor:.2f}x"
        )
    print(f"peak RSS of the whole benchmark process: {max(_phase.peaks):,.0f} MB")
    return 0


def _train_in_fresh_process() -> dict:
    """Phase 3 in a child process (this script with --train-only); its figures as a dict."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--train-only"], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _train_only() -> int:
    """Train WEEK on the instance and homes of the environment; print figures as JSON."""
    import json

    import dagster as dg

    from ml_platform.definitions import defs

    start_mb = _status_mb("VmRSS")
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("train_price_model").execute_in_process(
            instance=instance, partition_key=WEEK, run_config=QUIET
        )
    assert result.success
    figures = {
        "start_mb": start_mb,
        "peak_mb": _status_mb("VmHWM"),
        "step_seconds": _step_seconds(result),
    }
    print(json.dumps(figures))
    return 0


class _phase:
    """Wall time and peak RSS of one phase (the kernel's high-water mark is reset at entry)."""

    peaks: list[float] = []  # every phase's peak, for the whole process's

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        _reset_peak_rss()
        self.start_mb = _status_mb("VmRSS")
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        self.peak_mb = _status_mb("VmHWM")
        self.growth_mb = self.peak_mb - self.start_mb
        _phase.peaks.append(self.peak_mb)

    def rss(self) -> str:
        return f"peak RSS {self.peak_mb:,.0f} MB (+{self.growth_mb:,.0f} MB over its start)"


def _reset_peak_rss() -> None:
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM (and ru_maxrss with it), so each
    # phase gets its own peak.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _step_seconds(result) -> float:
    """The single step's own duration, from its STEP_SUCCESS event (excludes run start-up)."""
    (event,) = result.get_step_success_events()
    return event.event_specific_data.duration_ms / 1000


def _latest_metadata(instance, asset_key, partition: str) -> dict:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.metadata


def _load_partition(instance, store, asset_key, partition: str):
    """One partition's current version, read the way the IO manager reads it."""
    key = _latest_metadata(instance, asset_key, partition)["ml_platform/object_key"].value
    return store.scan_parquet([key]).collect()


def _fmt(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
