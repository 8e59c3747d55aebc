"""demo and backfill: land demo data and build partitions of the data half."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from ml_platform.cli.backfill_chunks import run_chunked_backfill
from ml_platform.cli.errors import UsageError, iso_date
from ml_platform.cli.models import train_week
from ml_platform.cli.runs import (
    SELECTIONS,
    check_calendar,
    run_job,
    submit_backfill,
    verbose_option,
)


def whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_number(text: str) -> int:
    value = whole_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_parsers(commands) -> None:
    demo = commands.add_parser(
        "demo", help="land demo drops and materialize the first days", parents=[verbose_option()]
    )
    demo.add_argument("--days", type=whole_number, default=38)
    demo.add_argument("--rows-per-day", type=positive_number, default=20_000)
    demo.add_argument("--materialize-days", type=whole_number, default=35)
    demo.set_defaults(handler=run_demo)

    backfill = commands.add_parser(
        "backfill",
        help="backfill a partition range (in chunks, runs side by side in worker processes)",
        parents=[verbose_option()],
    )
    backfill.add_argument("--from", dest="start", type=iso_date, required=True, help="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", type=iso_date, required=True, help="YYYY-MM-DD")
    backfill.add_argument("--select", choices=sorted(SELECTIONS), default="data")
    backfill.add_argument(
        "--submit",
        action="store_true",
        help="file an asset backfill for the daemon (ml-platform dev) instead of running it here",
    )
    backfill.add_argument(
        "--force",
        action="store_true",
        help="run every day again, also those whose data, inputs and code are unchanged",
    )
    backfill.add_argument(
        "--workers",
        type=whole_number,
        default=None,
        help="runs at a time (default: the instance's run queue limit, max_concurrent_runs)",
    )
    backfill.set_defaults(handler=run_backfill)


def run_demo(args: argparse.Namespace) -> int:
    """Land demo drops, materialize the first days, and (with enough days) train, promote, predict.

    The drops after ``--materialize-days`` are left for the landing sensor to pick up once
    the platform runs, so a newcomer sees it work. The drops end today (the UI's default
    views show the most recent days) unless ML_PLATFORM_START_DATE names the first day.
    """
    from ml_platform.settings import load_settings

    start = demo_start(args.days)
    settings = load_settings()
    if args.days:
        land_demo_drops(settings.landing_root, start, args.days, args.rows_per_day)
    if args.materialize_days <= 0:
        return 0
    end = start + timedelta(days=args.materialize_days - 1)
    # In chunks sized by the rows the demo lands, as a backfill of that volume runs: the
    # default demo is one run, a year at production volume runs in bounded chunks.
    days_per_run = max(1, settings.backfill_rows_per_run // args.rows_per_day)
    if run_chunked_backfill(start, end, "data", None, days_per_run=days_per_run):
        return 1
    week = last_trainable_week(start, end)
    if week is None:
        return 0
    config = {"ops": {"models__champion": {"config": {"reason": "demo: first model"}}}}
    # Run again, the demo trains nothing its model was made from already, and the automatic
    # promotion leaves a live model live.
    return (
        train_week(week.isoformat(), {})
        or run_job("promote_champion", config=config)
        or run_chunked_backfill(
            week + timedelta(days=7), end, "predict", None, days_per_run=days_per_run
        )
    )


def demo_start(days: int) -> date:
    """The demo's first day: ML_PLATFORM_START_DATE if set, else ``days`` days ending today.

    Daily partitions begin at the settings' start date, so a local home records the demo's
    first day (``<home>/start_date``, read by the settings) when it has no earlier one: the
    partitions then begin where the data begins, and a later demo never removes a partition.
    """
    import os
    import sys

    from ml_platform.settings import START_DATE_FILE, load_settings

    settings = load_settings()
    if "ML_PLATFORM_START_DATE" in os.environ:
        return settings.start_date
    start = date.today() - timedelta(days=max(days, 1) - 1)
    if start >= settings.start_date and (settings.home / START_DATE_FILE).is_file():
        return start
    if settings.deployment != "local":
        if start < settings.start_date:
            raise UsageError(
                f"the demo's first day {start} is before the first daily partition "
                f"{settings.start_date}: set ML_PLATFORM_START_DATE"
            )
        return start
    if "ml_platform.partitions" in sys.modules:  # built already: a new start would not apply
        raise UsageError("the demo must record its start date before the partitions are built")
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / START_DATE_FILE).write_text(f"{start.isoformat()}\n")
    print(f"daily partitions start at {start} (recorded in {settings.home / START_DATE_FILE})")
    return start


def land_demo_drops(root, start: date, days: int, rows_per_day: int) -> None:
    """Write the demo's daily drops with a progress bar, then one summary line."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ml_platform.cli import runs
    from ml_platform.demo.generator import GeneratorConfig, write_drop

    config = GeneratorConfig(rows_per_day=rows_per_day, bad_row_share=0.01)
    dates = [start + timedelta(days=k) for k in range(days)]
    t0 = time.perf_counter()
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("demo drops"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        TextColumn("elapsed, ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=runs.VERBOSE or not console.is_terminal,
    )
    rows = 0
    # numpy and polars release the GIL for most of the work, so days overlap well in threads.
    with progress, ThreadPoolExecutor(max_workers=min(days, 4)) as pool:
        task = progress.add_task("land", total=days)
        for summary in pool.map(lambda day: write_drop(root, day, config), dates):
            rows += summary.rows
            progress.advance(task)
    print(
        f"landed {days} daily drops {dates[0]}..{dates[-1]}, {rows:,} rows, in {root} "
        f"({time.perf_counter() - t0:.1f}s)",
        flush=True,
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
    start, end = args.start, args.end
    if end < start:
        raise UsageError(f"--to {end} is before --from {start}")
    check_calendar(start, end, ("--from", "--to"))
    if args.submit:
        return submit_backfill(start, end, SELECTIONS[args.select])
    # Chunks of the backfill policy's size, the run queue's limit of them at a time.
    return run_chunked_backfill(start, end, args.select, args.workers or None, force=args.force)
