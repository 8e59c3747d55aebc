"""The `ml-platform` command: thin shells over Dagster and the demo generator.

Every command that computes something goes through Dagster materializations on the
instance in DAGSTER_HOME, so each run appears in the UI with the same lineage. One module
per group of commands; each adds its parsers and names its handler. Runs show a progress
bar and a summary (``--verbose``: Dagster's event log); bad input and expected failures
print one line (ml_platform/cli/errors.py).
"""

from __future__ import annotations

import gc
import os
import sys
import warnings

from ml_platform.cli import data, dev, models, provenance, reproduce, runs, sql
from ml_platform.cli.errors import OneLineParser, report
from ml_platform.cli.home import use_platform_dagster_home, with_default_landing

# Commands that pass their own arguments on to another parser.
PASS_THROUGH = ("generate", "retention")
# What a command was doing, for the one line an unexpected error gets.
CONTEXT = {"explain": "cannot resolve the model and data behind that day's predictions"}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="ml-platform", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Dagster's event log instead of progress bars",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("generate", help="write demo drops into the landing zone", add_help=False)
    commands.add_parser(
        "retention", help="remove stored versions no provenance needs", add_help=False
    )
    for module in (data, models, provenance, reproduce, dev, sql):
        module.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Dagster's preview/beta notices are for the platform's developers, not its users.
    warnings.filterwarnings("ignore", message=r".*is currently in (preview|beta)")
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "generate":
            from ml_platform.cli.generate import main as generate_main

            return generate_main(with_default_landing(rest))
        if args.command == "retention":
            use_platform_dagster_home()
            from ml_platform.retention_job import retention_main

            return retention_main(rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        runs.VERBOSE = args.verbose
        use_platform_dagster_home()
        return args.handler(args)
    except KeyboardInterrupt as interrupt:
        stopped = f"{interrupt}\n" if str(interrupt) else ""  # runs.RunInterrupted names its run
        print(f"{stopped}ml-platform {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ml-platform lineage ... | head`: the reader had enough
        # Python's documented idiom: point stdout at /dev/null so the flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE, which shells report the same way
    except Exception as error:  # one line, never a traceback (ML_PLATFORM_TRACEBACK=1 for it)
        return report(args.command, error, CONTEXT.get(args.command))


def run() -> None:
    """The console script: ``main()``, then exit without collecting what the command imported."""
    code = main()
    # Interpreter shutdown garbage-collects every object of the imported stack (Dagster,
    # polars, pandera): 0.13 s after a backfill's last line. Frozen, they are left to the OS;
    # atexit handlers still run. Not after DuckDB was imported (`sql`): its bindings
    # (nanobind) print every object still alive at exit to stderr as a leak.
    if "duckdb" not in sys.modules:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
