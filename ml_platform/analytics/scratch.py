"""Where `ml-platform sql` keeps its copies of stored objects and DuckDB's spill files.

On disk under ``ML_PLATFORM_SQL_SCRATCH`` (default ``<home>/sql-scratch``), not in the
system's temporary folder, which is often memory (tmpfs): a year of copies would then sit in
RAM. One folder per session, named by its process id, removed when the session closes; a
folder left by a session whose process is gone (killed) is removed by the next session.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_SESSION = re.compile(r"session-(\d+)-")


def session_folder(root: Path) -> tempfile.TemporaryDirectory:
    """A new session's folder under ``root``, after removing those of dead processes."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        match = _SESSION.match(folder.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"session-{os.getpid()}-", dir=root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
