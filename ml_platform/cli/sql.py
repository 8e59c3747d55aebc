"""sql: read-only SQL (DuckDB) over the current stored data, or exactly what one run read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO

EXAMPLES = """\
examples:
  ml-platform sql "SELECT partition_date, count(*) FROM clean.shipments GROUP BY 1 ORDER BY 1"
  ml-platform sql --as-of predictions/price_quotes --partition 2026-02-10 \\
      "SELECT count(*), sum(price_eur) FROM features.shipment_features"
  ml-platform sql --export lake.duckdb          (a database file for a notebook or BI tool)
  ml-platform sql                               (interactive; end statements with ';')
"""


def add_parsers(commands) -> None:
    sql = commands.add_parser(
        "sql",
        help="read-only SQL over every asset (current, or as of a materialization)",
        description=(
            "One DuckDB table per asset (raw.shipments, clean.shipments, "
            "features.shipment_features, predictions.price_quotes, ...) holding every "
            "partition's current stored version, or with --as-of exactly the versions a "
            "materialization's provenance names. ml_platform.versions lists them."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.add_argument("query", nargs="?", help="one SELECT statement (none: interactive)")
    sql.add_argument("--as-of", metavar="ASSET", help="e.g. predictions/price_quotes")
    sql.add_argument("--partition", help="the materialization's partition, e.g. 2026-02-10")
    sql.add_argument("--storage-id", type=int, help="a specific materialization of ASSET")
    sql.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    sql.add_argument("--output", type=Path, help="write the result to FILE instead of stdout")
    sql.add_argument("--export", type=Path, metavar="FILE.duckdb", help="write the views to FILE")
    sql.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table")
    sql.set_defaults(handler=run_sql)


def run_sql(args: argparse.Namespace) -> int:
    import warnings

    import dagster as dg

    if (args.partition or args.storage_id is not None) and not args.as_of:
        print("sql: --partition and --storage-id need --as-of ASSET", file=sys.stderr)
        return 2
    if args.format == "parquet" and args.output is None and args.query:
        print("sql: --format parquet needs --output FILE", file=sys.stderr)
        return 2
    # The environment of this invocation decides the deployment (not an earlier import).
    # Dagster's preview/beta notices about the code location are for its developers, not
    # for someone reading a query result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ml_platform.definitions import build_definitions

        defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        return execute(args, instance, defs)


def execute(
    args: argparse.Namespace,
    instance,
    defs,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    """The command's work on a given instance and definitions; 0 on success."""
    import duckdb

    from ml_platform.analytics import views as v
    from ml_platform.analytics.results import write_result
    from ml_platform.analytics.sql import (
        QueryRefusedError,
        Session,
        duckdb_message,
        export_target,
        refuse_unless_select,
    )
    from ml_platform.provenance.lineage import LineageError

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        if args.export:  # refused before anything is read
            export_target(args.export)
        if args.query:
            with duckdb.connect(":memory:") as scratch:
                refuse_unless_select(scratch, args.query)
        with v.storage_managers(defs) as managers:
            if args.as_of:
                catalog = v.as_of_catalog(
                    instance, managers, args.as_of, args.partition, args.storage_id
                )
            else:
                catalog = v.current_catalog(instance, defs.resolve_asset_graph(), managers)
            with Session(catalog) as session:
                stored = sum(len(n) for n in catalog.nodes.values())
                print(
                    f"-- {catalog.description}: {len(session.views)} views, "
                    f"{stored} stored versions (ml_platform.versions)",
                    file=stderr,
                )
                if args.export:
                    tables = session.export(args.export)
                    print(f"-- exported {len(tables)} tables to {args.export}", file=stderr)
                if args.query:
                    result = session.query(args.query)
                    loaded = ", ".join(sorted(session.loaded)) or "none"
                    print(f"-- views loaded: {loaded}", file=stderr)
                    write_result(result, args.format, stdout, args.output, args.max_rows)
                elif not args.export:
                    return repl(session, args, stdout, stderr, stdin or sys.stdin)
    except (QueryRefusedError, duckdb.Error) as e:
        print(f"sql: {duckdb_message(e)}", file=stderr)
        return 1
    except (v.UnavailableVersionError, LineageError, ValueError) as e:
        print(f"sql: {e.args[0] if isinstance(e, LookupError) else e}", file=stderr)
        return 1
    return 0


def repl(session, args, stdout: IO[str], stderr: IO[str], stdin: IO[str]) -> int:
    """Statements end with ';'; an error is reported and the session goes on. \\q quits."""
    import duckdb

    from ml_platform.analytics.results import write_result
    from ml_platform.analytics.sql import QueryRefusedError, duckdb_message

    interactive = stdin.isatty()
    session.load()
    names = ", ".join(sorted(session.views)) or "none"
    print(f"-- views: {names}\n-- end a statement with ';', quit with \\q", file=stderr)
    failed, buffer = False, []
    while True:
        if interactive:
            stderr.write("sql> " if not buffer else "...> ")
            stderr.flush()
        line = stdin.readline()
        if not line or line.strip() in ("\\q", "exit", "quit", ".quit"):
            break
        buffer.append(line)
        text = "".join(buffer).strip()
        if not text.endswith(";"):
            continue
        buffer = []
        try:
            write_result(session.query(text), args.format, stdout, None, args.max_rows)
        except (QueryRefusedError, duckdb.Error, ValueError) as e:
            print(f"sql: {duckdb_message(e)}", file=stderr)
            failed = True
        stdout.flush()
    return 1 if failed and not interactive else 0
