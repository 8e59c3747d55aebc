"""reproduce: re-execute a materialization from exactly what it read, and say if it matches."""

from __future__ import annotations

import argparse
import sys


def add_parsers(commands) -> None:
    parser = commands.add_parser(
        "reproduce",
        help="re-run a materialization pinned to its recorded inputs, in scratch, and compare",
    )
    parser.add_argument("asset", help="asset key, e.g. features/shipment_features")
    parser.add_argument("--partition", help="the partition (its latest materialization)")
    parser.add_argument("--storage-id", type=int, help="a specific materialization")
    parser.add_argument(
        "--scratch", help="keep the re-computed output in this folder (default: a temp folder)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    """Exit 0 when identical; 1 when different or impossible (the reason on one line)."""
    import json

    import dagster as dg

    from ml_platform.definitions import defs
    from ml_platform.provenance.reproduce import reproduce
    from ml_platform.provenance.reproduce_text import as_text

    if args.partition is None and args.storage_id is None:
        print("reproduce: give --partition D (latest) or --storage-id N", file=sys.stderr)
        return 2
    from ml_platform.provenance.reproduce import unusable_folder

    if args.scratch is not None and (problem := unusable_folder(args.scratch)):
        print(f"reproduce: --scratch {args.scratch} {problem}", file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        result = reproduce(
            defs,
            instance,
            dg.AssetKey.from_user_string(args.asset),
            args.partition,
            args.storage_id,
            scratch_dir=args.scratch,
        )
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(as_text(result))
    if not result.identical:
        print(f"reproduce: {result.status}: {result.reason}", file=sys.stderr)
    return 0 if result.identical else 1
