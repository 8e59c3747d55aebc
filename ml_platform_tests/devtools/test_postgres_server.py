"""The throwaway server helper: clear failure without binaries, works as root and non-root."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ml_platform.devtools import postgres_server as helper
from ml_platform_tests.processes import signals_as_from_a_terminal

ROOT = Path(__file__).resolve().parents[2]


def test_missing_binaries_fail_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(helper, "BIN_DIRS_GLOB", str(tmp_path / "nothing" / "*"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PG_BIN", raising=False)
    with pytest.raises(helper.PostgresServerError, match="apt-get install -y postgresql"):
        with helper.postgres_server():
            pass


def test_the_server_stops_and_its_folder_is_removed():
    with helper.postgres_server() as server:
        import psycopg

        with psycopg.connect(server.uri) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
        root = server.data_dir.parent
        assert root.is_dir()
    assert not root.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the suite itself runs as non-root here")
def test_it_also_works_for_a_non_root_user():
    # As root, drop to 'nobody' after the imports (the interpreter may live under /root).
    script = textwrap.dedent(
        f"""
        import os, pwd, sys
        sys.path.insert(0, {str(ROOT)!r})
        import psycopg
        from ml_platform.devtools.postgres_server import postgres_server
        nobody = pwd.getpwnam("nobody")
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        with postgres_server() as server:
            with psycopg.connect(server.uri) as conn:
                print(conn.execute("SELECT 1").fetchone()[0], os.stat(server.data_dir).st_uid)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd="/tmp"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "65534"]


def _server_running(data_dir: Path) -> bool:
    """A postgres process whose command line names this data folder."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "postgres" in cmdline and str(data_dir) in cmdline:
                return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_command_stops_the_server_and_removes_its_folder_on_a_signal(sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_platform.devtools.postgres_server"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=signals_as_from_a_terminal,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("# data: "):
                break
        root = Path(lines[-1].removeprefix("# data: ").strip())
        env = dict(line.removeprefix("export ").strip().split("=", 1) for line in lines[:5])
        import psycopg

        uri = (
            f"postgresql://{env['ML_PLATFORM_PG_USER']}:{env['ML_PLATFORM_PG_PASSWORD']}@"
            f"127.0.0.1:{env['ML_PLATFORM_PG_PORT']}/{env['ML_PLATFORM_PG_DB']}"
        )
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert root.is_dir() and _server_running(root / "data")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while (root.exists() or _server_running(root / "data")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not root.exists()
        assert not _server_running(root / "data")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
