"""Where `ml-platform sql` keeps its copies of stored objects and DuckDB's spill files.

On disk under ``ML_PLATFORM_SQL_SCRATCH`` (default ``<home>/sql-scratch``), not in the
system's temporary folder, which is often memory (tmpfs): a year of copies would then sit in
RAM. One folder per session, removed when the session closes. Each session holds a lock on
its folder while it lives; a folder whose lock nobody holds was left by a session that was
killed, and the next session removes it. (A lock, not a process id: a home may be shared by
containers or machines, where process ids say nothing.)

A session's folder is made under a name the cleanup never looks at, locked, and only then
renamed to ``session-*``: no other session can see it unlocked.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

LOCK = ".lock"
# A folder still being made (by a session killed before it was renamed) after this long.
_STARTING_SECONDS = 60


class SessionFolder:
    """A session's own folder, locked while the session lives."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(root)
        starting = Path(tempfile.mkdtemp(prefix=".starting-", dir=root))
        # Opened for writing: NFS takes an exclusive lock only on a file open for writing.
        self._lock = open(starting / LOCK, "w")  # noqa: SIM115 - held until close()
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = root / f"session-{uuid.uuid4().hex}"
        os.rename(starting, self.path)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)  # still locked: nobody else removes it
        self._lock.close()


def _remove_abandoned(root: Path) -> None:
    for folder in root.glob("session-*"):
        if _unlocked(folder):
            shutil.rmtree(folder, ignore_errors=True)
    for folder in root.glob(".starting-*"):
        try:
            old = time.time() - folder.stat().st_mtime > _STARTING_SECONDS
        except OSError:  # gone: renamed or removed meanwhile
            continue
        if old and _unlocked(folder):
            shutil.rmtree(folder, ignore_errors=True)


def _unlocked(folder: Path) -> bool:
    """Whether nobody holds the folder's lock. A folder without its lock file is being, or
    was being, removed (a removal cut short by a kill leaves one): unlocked, since removing
    it twice does no harm. A lock file that cannot be opened otherwise counts as held."""
    try:
        fd = os.open(folder / LOCK, os.O_WRONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock taken above, if any: the folder is removed next
    return True
