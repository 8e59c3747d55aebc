"""`ml-platform dev`: the UI comes up without warnings, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ml_platform.devtools.postgres_server import free_port
from ml_platform_tests.processes import signals_as_from_a_terminal

BIN = Path(sys.executable).parent / "ml-platform"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dev_starts_without_warnings_and_a_signal_stops_every_child(tmp_path, sig):
    port = free_port()
    env = {**os.environ, "ML_PLATFORM_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen(
        [str(BIN), "dev", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a signal for the command only, not for pytest's group
        preexec_fn=signals_as_from_a_terminal,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        url = f"http://127.0.0.1:{port}/server_info"
        assert wait_until(lambda: answers(url), timeout=180), "".join(output)
        # The webserver answers; the daemon and the code server are up by now as well.
        assert wait_until(lambda: len(descendants(proc.pid)) >= 3, timeout=60), "".join(output)
        children = descendants(proc.pid)
        proc.send_signal(sig)  # what Ctrl-C sends (SIGINT), or a service manager (SIGTERM)
        proc.wait(timeout=60)  # TimeoutExpired fails the test: it must stop within a minute
        assert wait_until(lambda: not any(alive(p) for p in children), timeout=30), [
            Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ") for p in children if alive(p)
        ]
        assert not answers(url)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    text = "".join(output)
    assert "superseded" not in text and "deprecated" not in text.lower(), text
    assert "dg dev" in text.splitlines()[1]
