"""The `ml-platform` command: thin shells over Dagster and the demo generator.

Every command that computes something goes through Dagster materializations on the
instance in DAGSTER_HOME, so each run appears in the UI with the same lineage. One module
per group of commands; each adds its parsers and names its handler.
"""

from __future__ import annotations

import argparse
import sys

from ml_platform.cli import data, dev, models, provenance, sql
from ml_platform.cli.home import use_platform_dagster_home, with_default_landing

# Commands that pass their own arguments on to another parser.
PASS_THROUGH = ("generate", "retention")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("generate", help="write demo drops into the landing zone", add_help=False)
    commands.add_parser(
        "retention", help="remove stored versions no provenance needs", add_help=False
    )
    for module in (data, models, provenance, dev, sql):
        module.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "generate":
        from ml_platform.demo.generator import main as generate_main

        return generate_main(with_default_landing(rest))
    if args.command == "retention":
        use_platform_dagster_home()
        from ml_platform.retention_job import retention_main

        return retention_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    use_platform_dagster_home()
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
