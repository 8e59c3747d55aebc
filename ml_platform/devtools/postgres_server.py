"""A throwaway PostgreSQL server in a temp folder on a free loopback port.

Used by the test suite, the benchmark and local development (`python -m
ml_platform.devtools.postgres_server` prints the environment to point the platform at it).
initdb refuses to run as root, so as root the cluster is created and run as the ``postgres``
user on a folder that user owns; as any other user it runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

SERVER_USER = "postgres"
SUPERUSER = "ml_platform"
DATABASE = "ml_platform"
BIN_DIRS_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH, in $PG_BIN or in "
    f"{BIN_DIRS_GLOB}; install them (Debian: apt-get install -y postgresql) or set PG_BIN"
)


class PostgresServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class PostgresServer:
    """Connection settings of a running throwaway server."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)  # never in a log or a traceback
    dbname: str
    data_dir: Path

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    def env(self, prefix: str = "ML_PLATFORM_PG_") -> dict[str, str]:
        """The environment variables PostgresIOManager (and dagster.yaml) read."""
        return {
            f"{prefix}HOST": self.host,
            f"{prefix}PORT": str(self.port),
            f"{prefix}DB": self.dbname,
            f"{prefix}USER": self.user,
            f"{prefix}PASSWORD": self.password,
        }

    def create_database(self, name: str) -> PostgresServer:
        """A fresh database on the same server (for tests that need an empty one)."""
        return _create_database(self, name)


def _create_database(server: PostgresServer, name: str) -> PostgresServer:
    import psycopg
    from psycopg import sql

    maintenance = replace(server, dbname="postgres")
    with psycopg.connect(maintenance.uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return replace(server, dbname=name)


def find_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl; fails with an install hint when there is none."""
    candidates = [os.environ.get("PG_BIN")]
    on_path = shutil.which("initdb")
    # PATH may hold a lone symlink to initdb: its real folder has pg_ctl beside it.
    candidates.append(str(Path(on_path).resolve().parent) if on_path else None)
    candidates += sorted(glob.glob(BIN_DIRS_GLOB), reverse=True)  # newest major first
    for candidate in candidates:
        if candidate and all((Path(candidate) / b).is_file() for b in ("initdb", "pg_ctl")):
            return Path(candidate)
    raise PostgresServerError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", SERVER_USER, "--", *cmd]


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(_as_server_user(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        raise PostgresServerError(
            f"{what} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
        )


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def postgres_server(base_dir: str | Path | None = None) -> Iterator[PostgresServer]:
    """Start a cluster (fsync off: it is thrown away), yield its settings, stop and remove it.

    As root, ``base_dir`` (default: the system temp folder) must be traversable by the
    ``postgres`` user.
    """
    bin_dir = find_bin_dir()
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError as e:
            raise PostgresServerError(
                f"running as root but there is no {SERVER_USER!r} user to run initdb as"
            ) from e
    root = Path(tempfile.mkdtemp(prefix="ml_platform_pg_", dir=base_dir))
    _give_to_server_user(root)
    data_dir, password = root / "data", secrets.token_urlsafe(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password)
    _give_to_server_user(pwfile)
    started = False
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        pwfile.unlink()
        server = _start(bin_dir, data_dir, root, password)
        started = True
        yield server
    finally:
        if started:
            try:
                stop(bin_dir, data_dir)
            except PostgresServerError:
                # Ctrl-C in a terminal reaches the server too; stopped already is fine.
                if (data_dir / "postmaster.pid").exists():
                    raise
        shutil.rmtree(root, ignore_errors=True)


def _start(bin_dir: Path, data_dir: Path, root: Path, password: str) -> PostgresServer:
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={root}",
            "-c fsync=off",
            "-c synchronous_commit=off",
            "-c full_page_writes=off",
            "-c max_connections=200",
            "-c shared_buffers=256MB",
            "-c max_wal_size=4GB",
        ]
    )
    last_error: Exception | None = None
    for _ in range(5):  # the free port may be taken between probing and binding
        port = free_port()
        try:
            _run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data_dir),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} {options}",
                    "start",
                ],
                "pg_ctl start",
            )
        except PostgresServerError as e:
            last_error = e
            continue
        server = PostgresServer("127.0.0.1", port, SUPERUSER, password, DATABASE, data_dir)
        return _create_database(server, DATABASE)
    log = root / "server.log"
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise PostgresServerError(f"could not start PostgreSQL: {last_error}\n{tail}")


def stop(bin_dir: Path, data_dir: Path) -> None:
    _run(
        [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
        "pg_ctl stop",
    )


class _Terminated(Exception):
    """SIGTERM, turned into an exception so the server's cleanup runs as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def main() -> None:
    """Run a throwaway server until Ctrl-C or SIGTERM, printing the variables that point at it.

    Either signal stops the server and deletes its folder: SIGTERM is turned into an
    exception (from before the server starts), so the context manager's cleanup runs.
    """
    signal.signal(signal.SIGTERM, _raise_terminated)
    with contextlib.suppress(KeyboardInterrupt, _Terminated):
        with postgres_server() as server:
            for name, value in server.env().items():
                print(f"export {name}={value}")
            print(f"# {server.uri}\n# data: {server.data_dir.parent}", flush=True)
            print("# Ctrl-C (or SIGTERM) stops the server and deletes its data", flush=True)
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
