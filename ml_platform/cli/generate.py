"""generate: write synthetic freight-shipment drops into the landing zone (demo/generator.py)."""

from __future__ import annotations

import time
from pathlib import Path

from ml_platform.cli.errors import OneLineParser, iso_date
from ml_platform.demo.generator import GeneratorConfig, generate_drops


def _parser() -> OneLineParser:
    defaults = GeneratorConfig()
    parser = OneLineParser(
        prog="ml-platform generate", description="Write synthetic freight-shipment drops."
    )
    parser.add_argument(
        "--landing-root",
        type=Path,
        required=True,
        help="where the drops go (ml-platform generate: the platform home's landing zone)",
    )
    parser.add_argument("--start", type=iso_date, required=True, help="YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rows-per-day", type=int, default=defaults.rows_per_day)
    parser.add_argument("--files-per-drop", type=int, default=defaults.files_per_drop)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--shock-date", type=iso_date, default=None, help="YYYY-MM-DD")
    parser.add_argument("--shock-factor", type=float, default=defaults.shock_factor)
    parser.add_argument("--bad-row-share", type=float, default=defaults.bad_row_share)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be >= 1")
    try:
        config = GeneratorConfig(
            rows_per_day=args.rows_per_day,
            files_per_drop=args.files_per_drop,
            seed=args.seed,
            shock_date=args.shock_date,
            shock_factor=args.shock_factor,
            bad_row_share=args.bad_row_share,
        )
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()
    summaries = generate_drops(args.landing_root, args.start, args.days, config)
    seconds = time.perf_counter() - started
    rows = sum(s.rows for s in summaries)
    print(
        f"wrote {len(summaries)} drop(s) {summaries[0].partition}..{summaries[-1].partition} "
        f"to {args.landing_root}: {rows} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)"
    )
    return 0
