"""Where `ml-platform sql` keeps its copies of stored objects and DuckDB's spill files.

On disk under ``ML_PLATFORM_SQL_SCRATCH`` (default ``<home>/sql-scratch``), not in the
system's temporary folder, which is often memory (tmpfs): a year of copies would then sit in
RAM. One folder per session, removed when the session closes. Each session holds a lock on
its folder while it lives; a folder whose lock nobody holds was left by a session that was
killed, and the next session removes it. (A lock, not a process id: a home may be shared by
containers or machines, where process ids say nothing.)
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
import time
from pathlib import Path

LOCK = ".lock"
# A folder without its lock file yet is a session starting right now, unless it is older.
_STARTING_SECONDS = 60


class SessionFolder:
    """A session's own folder, locked while the session lives."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for folder in root.glob("session-*"):
            if folder.is_dir() and _abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self._lock = open(self.path / LOCK, "w")  # noqa: SIM115 - held until close()
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()


def _abandoned(folder: Path) -> bool:
    """Whether no live session holds the folder."""
    try:
        lock = open(folder / LOCK)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime > _STARTING_SECONDS
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
