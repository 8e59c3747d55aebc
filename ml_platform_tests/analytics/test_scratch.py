"""Sessions' scratch folders under concurrency: each exists while its session lives, and
only folders nobody holds are removed (ml_platform/analytics/scratch.py)."""

from __future__ import annotations

import subprocess
import sys

SESSIONS = """
import sys
from pathlib import Path
from ml_platform.analytics.scratch import SessionFolder
root = Path(sys.argv[1])
for _ in range(60):
    folder = SessionFolder(root)
    (folder.path / "spool").mkdir()  # fails if another session removed it
    folder.close()
print("ok")
"""


def test_concurrent_sessions_never_remove_each_others_folders(tmp_path):
    root = tmp_path / "scratch"
    killed = root / "session-killed"  # left by a killed session: its lock is not held
    killed.mkdir(parents=True)
    (killed / ".lock").touch()
    cut_short = root / "session-cut-short"  # its removal was killed after the lock file
    (cut_short / "spill").mkdir(parents=True)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", SESSIONS, str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert list(root.iterdir()) == []
