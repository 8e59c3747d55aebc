"""Local files that a step's lazy inputs scan, removed when the step's resources are torn down.

A 28-day window read from GCS or Postgres as one lazy frame would otherwise be held in
memory whole before polars reads a column of it: every object's bytes (GCS), every row of
every column (Postgres). Spooled to local files instead, memory holds one object's or one
batch's worth while they are written, and the query reads only the columns and row groups it
needs. Local Parquet objects are scanned in place and never spooled.

The folder is under the system's temporary folder (``TMPDIR``): on Kubernetes, a run pod's
ephemeral storage (helm/README.md sizes it).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr


class Spool:
    """A folder of spooled inputs, made on first use; ``close`` removes it."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        # Downloads ask for files from several threads at once: without the lock, two could
        # each make a folder, and the one forgotten would never be removed.
        self._lock = threading.Lock()

    def new_file(self, suffix: str) -> Path:
        """A path for one spooled input (not yet created)."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="ml-platform-spool-"))
            return self._folder / f"{uuid.uuid4().hex}{suffix}"

    def close(self) -> None:
        with self._lock:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None


_process_spool: Spool | None = None


def process_spool() -> Spool:
    """The spool of IO managers used outside a run's resource lifecycle (a test building an
    input context by hand): removed when the process exits."""
    global _process_spool
    if _process_spool is None:
        _process_spool = Spool()
        atexit.register(_process_spool.close)
    return _process_spool


class SpoolingIOManager(dg.ConfigurableIOManager):
    """An IO manager whose lazy inputs may be spooled: a spool made for each step's
    resources and removed when Dagster tears them down, even after a failure."""

    _spool: Spool | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._spool = Spool()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._spool is not None:
            self._spool.close()

    def spool(self) -> Spool:
        return self._spool or process_spool()
