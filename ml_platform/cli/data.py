"""demo and backfill: land demo data and build partitions of the data half."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta

from ml_platform.cli.runs import SELECTIONS, run_job, run_range, submit_backfill


def add_parsers(commands) -> None:
    demo = commands.add_parser("demo", help="land demo drops and materialize the first days")
    demo.add_argument("--days", type=int, default=38)
    demo.add_argument("--rows-per-day", type=int, default=20_000)
    demo.add_argument("--materialize-days", type=int, default=35)
    demo.set_defaults(handler=run_demo)

    backfill = commands.add_parser("backfill", help="backfill a partition range")
    backfill.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD")
    backfill.add_argument("--select", choices=sorted(SELECTIONS), default="data")
    backfill.add_argument(
        "--submit",
        action="store_true",
        help="file an asset backfill for the daemon (dagster dev) instead of running it here",
    )
    backfill.set_defaults(handler=run_backfill)


def run_demo(args: argparse.Namespace) -> int:
    """Land demo drops, materialize the first days, and (with enough days) train, promote, predict.

    The drops after ``--materialize-days`` are left for the landing sensor to pick up once
    the platform runs, so a newcomer sees it work.
    """
    from ml_platform.demo.generator import GeneratorConfig, generate_drops
    from ml_platform.settings import load_settings

    settings = load_settings()
    start = settings.start_date
    t0 = time.perf_counter()
    generate_drops(
        settings.landing_root,
        start,
        args.days,
        GeneratorConfig(rows_per_day=args.rows_per_day, bad_row_share=0.01),
    )
    print(
        f"landed {args.days} daily drops in {settings.landing_root} ({time.perf_counter() - t0:.1f}s)"
    )
    if args.materialize_days <= 0:
        return 0
    end = start + timedelta(days=args.materialize_days - 1)
    if run_range(start, end, "data"):
        return 1
    week = last_trainable_week(start, end)
    if week is None:
        return 0
    config = {"ops": {"models__champion": {"config": {"reason": "demo: first model"}}}}
    return (
        run_job("train_price_model", partition=week.isoformat())
        or run_job("promote_champion", config=config)
        or run_job(
            "predict_prices", first=(week + timedelta(days=7)).isoformat(), last=end.isoformat()
        )
    )


def last_trainable_week(start: date, end: date) -> date | None:
    """The Monday of the last model week that ends before ``end`` with four weeks of features."""
    from ml_platform.partitions import TRAINING_WEEKS

    monday = end - timedelta(days=end.weekday() + 7)
    first_feature_day = monday - timedelta(weeks=TRAINING_WEEKS - 1)
    if first_feature_day < start or monday + timedelta(days=6) >= end:
        return None
    return monday


def run_backfill(args: argparse.Namespace) -> int:
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    if end < start:
        print(f"--to {end} is before --from {start}", file=sys.stderr)
        return 2
    if args.submit:
        return submit_backfill(start, end, SELECTIONS[args.select])
    return run_range(start, end, args.select)
