"""Benchmark: the data half (raw -> clean -> features) three ways, on the same landed data.

    uv run python bench/data_half.py [--days 60] [--rows-per-day 200000]

1. one single-run backfill over the whole range (one Dagster run),
2. one Dagster run per partition,
3. a bare polars script calling the same transformation functions and writing the same
   Parquet outputs, without Dagster (the floor).

Each variant runs in its own process (so peak memory is its own) on a fresh SQLite
Dagster instance on local disk, and prints rows/s, peak RSS and the ratios to the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

START = date(2026, 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    parser.add_argument("--variant", choices=["single_run", "per_partition", "bare"])
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.variant:
        return _run_variant(args)

    with tempfile.TemporaryDirectory(prefix="ml_platform_bench_") as tmp:
        landing = Path(tmp) / "landing"
        from ml_platform.demo.generator import GeneratorConfig, generate_drops

        t0 = time.perf_counter()
        generate_drops(
            landing,
            START,
            args.days,
            GeneratorConfig(rows_per_day=args.rows_per_day, bad_row_share=0.01),
        )
        rows = args.days * args.rows_per_day
        print(
            f"landed {args.days} days x {args.rows_per_day:,} rows = {rows:,} rows in {time.perf_counter() - t0:.1f}s"
        )
        results = {}
        for variant in ("bare", "single_run", "per_partition"):
            workdir = Path(tmp) / variant
            workdir.mkdir()
            (workdir / "landing").symlink_to(landing)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--workdir",
                    str(workdir),
                    "--days",
                    str(args.days),
                    "--rows-per-day",
                    str(args.rows_per_day),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        _report(results, rows)
    return 0


def _report(results: dict, rows: int) -> None:
    floor = results["bare"]["seconds"]
    print(f"\n{'variant':<16}{'seconds':>9}{'rows/s':>14}{'peak RSS':>11}{'vs bare':>9}")
    for name, r in results.items():
        print(
            f"{name:<16}{r['seconds']:>9.1f}{rows / r['seconds']:>14,.0f}"
            f"{r['peak_rss_mb']:>9,.0f}MB{r['seconds'] / floor:>8.2f}x"
        )
    ratio = results["single_run"]["seconds"] / floor
    print(f"\nsingle-run backfill / bare polars = {ratio:.2f}x (goal: <= 1.5x)")


def _run_variant(args) -> int:
    workdir = Path(args.workdir)
    os.environ["ML_PLATFORM_HOME"] = str(workdir)
    os.environ["DAGSTER_HOME"] = str(workdir / "dagster")
    (workdir / "dagster").mkdir()
    last = (START + timedelta(days=args.days - 1)).isoformat()
    # Imports happen before the clock starts, for every variant alike.
    import dagster as dg

    import ml_platform.transforms.shipments  # noqa: F401
    from ml_platform.definitions import defs

    t0 = time.perf_counter()
    if args.variant == "bare":
        _bare(workdir / "landing" / "shipments", workdir / "bare_out", args.days)
    else:
        job = defs.resolve_job_def("data_pipeline")
        with dg.DagsterInstance.get() as instance:
            if args.variant == "single_run":
                ok = job.execute_in_process(
                    instance=instance,
                    tags={
                        "dagster/asset_partition_range_start": START.isoformat(),
                        "dagster/asset_partition_range_end": last,
                    },
                ).success
            else:
                ok = all(
                    job.execute_in_process(
                        instance=instance, partition_key=(START + timedelta(days=i)).isoformat()
                    ).success
                    for i in range(args.days)
                )
        assert ok
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))
    return 0


def _bare(landing: Path, out: Path, days: int) -> None:
    """The same work without Dagster: parse, hash, clean, validate, featurize, write Parquet."""
    import polars as pl

    from ml_platform.landing.reader import parse_drop_file
    from ml_platform.landing.zone import DropFile
    from ml_platform.partitions import TRAILING_WINDOW_DAYS
    from ml_platform.schemas import SHIPMENT_FEATURES
    from ml_platform.storage.frames import content_hash, to_parquet_bytes
    from ml_platform.transforms.shipments import (
        clean_shipments,
        raw_from_files,
        shipment_features,
        validate_clean,
    )

    def write(name: str, day: str, df: pl.DataFrame) -> None:
        path = out / name / f"{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = to_parquet_bytes(df)
        hashlib.sha256(data).hexdigest()
        content_hash(df)
        path.write_bytes(data)

    raws = []
    for i in range(days):
        day = (START + timedelta(days=i)).isoformat()
        parsed = []
        for f in sorted((landing / day).glob("part-*")):
            data = f.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            file = DropFile(
                partition=day, name=f.name, uri=f.as_uri(), size=len(data), generation="0"
            )
            parsed.append((file.uri, sha, parse_drop_file(file, data)))
        raw = raw_from_files(parsed, day)
        write("raw", day, raw)
        raws.append(raw)
    raw = pl.concat(raws, how="diagonal")
    clean, rejected = clean_shipments(raw)
    validate_clean(clean)
    for (day,), part in clean.partition_by("partition_date", as_dict=True).items():
        write("clean", str(day), part)
    for (day,), part in rejected.partition_by("partition_date", as_dict=True).items():
        write("rejected", str(day), part)
    all_days = [START + timedelta(days=i) for i in range(days)]
    features = shipment_features(clean.lazy(), all_days, TRAILING_WINDOW_DAYS)
    SHIPMENT_FEATURES.validate(features, lazy=True)
    for (day,), part in features.partition_by("partition_date", as_dict=True).items():
        write("features", str(day), part)


if __name__ == "__main__":
    sys.exit(main())
