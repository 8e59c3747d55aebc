"""Every CLI command, worker process and code server imports the definitions: keep them light."""

import subprocess
import sys
from pathlib import Path

# Imported only where a model is trained, loaded or stored (2.6 s together here), a query
# runs, or a contract is judged (pandera imports pandas: 1.1 s).
HEAVY = ["sklearn", "skops", "scipy", "duckdb", "pandera", "pandas"]


def test_definitions_do_not_import_model_or_query_libraries():
    code = (
        "import sys, ml_platform.definitions\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"imported at definitions load: {out.stdout.strip()}"


def test_the_environment_imports_from_compiled_bytecode():
    """scripts/_common.sh syncs with --compile-bytecode: no process compiles the stack again."""
    import importlib.util

    import dagster
    import polars

    for module in (dagster, polars):
        cached = importlib.util.cache_from_source(module.__file__)
        assert Path(cached).exists(), f"{module.__name__} has no compiled bytecode: {cached}"
