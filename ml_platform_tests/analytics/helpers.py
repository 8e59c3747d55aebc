"""Running `ml-platform sql` in process against a test platform."""

from __future__ import annotations

import argparse
import io

from ml_platform.cli.sql import execute

DEFAULTS = dict(
    query=None,
    as_of=None,
    partition=None,
    storage_id=None,
    format="table",
    output=None,
    export=None,
    max_rows=100,
)


def run_sql(platform: dict, query=None, stdin=None, **options) -> tuple[int, str, str]:
    """The command in process, on platform's instance and defs: (exit code, stdout, stderr)."""
    args = argparse.Namespace(**{**DEFAULTS, "query": query, **options})
    out, err = io.StringIO(), io.StringIO()
    code = execute(args, platform["instance"], platform["defs"], out, err, stdin)
    return code, out.getvalue(), err.getvalue()
