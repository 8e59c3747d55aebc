"""Imported once by a chunked backfill's fork server, so that every worker forked from it starts warm.

Each chunk run is a fresh worker process; what it would otherwise pay per run is paid here
once: importing the code location and pandera (~3 s) and the instance's storage modules (SQLite or
Postgres storage, alembic: ~1.2 s on the first DagsterInstance.get() of a process).
"""

import gc

import dagster as dg
import pandera.polars  # noqa: F401 - the contracts' library, imported on first use elsewhere

import ml_platform.definitions  # noqa: F401 - the code location, imported for the workers


def _warm_instance() -> None:
    # Opened and closed before any fork: workers inherit the imported modules, never a
    # connection. Also creates a fresh local instance's storage before workers open it
    # side by side (two processes initializing one SQLite instance at once can both stamp
    # its schema version).
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
        instance.get_latest_materialization_event(dg.AssetKey("__none__"))
        instance.all_instigator_state()


_warm_instance()
# Everything imported above is shared with every worker forked from here. Frozen, the cyclic
# garbage collector never scans it again: a worker's collections stop walking (and so
# copying, page by page) the whole inherited heap, and this server, when the backfill is
# done, exits without collecting it (0.6 to 0.9 s, while it still holds the command's
# output pipe). Python's documentation recommends gc.freeze() before fork for this reason.
gc.freeze()
