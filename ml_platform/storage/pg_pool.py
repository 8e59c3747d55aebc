"""Connection settings, and a few idle ADBC connections per PostgreSQL database and process,
reused across calls."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class PgSettings:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)  # never in a log or a traceback
    application_name: str = "ml_platform"

    def uri(self) -> str:
        q = lambda v: quote(str(v), safe="")  # noqa: E731
        return (
            f"postgresql://{q(self.user)}:{q(self.password)}@{self.host}:{self.port}/"
            f"{q(self.dbname)}?application_name={q(self.application_name)}"
        )

    def public_uri(self) -> str:
        """The server and database, without credentials (for metadata and messages)."""
        return f"postgresql://{self.host}:{self.port}/{quote(self.dbname, safe='')}"


class ConnectionPool:
    """A few idle ADBC connections per database and process.

    Opening an ADBC connection costs ~50 ms (authentication plus the driver's type-catalog
    query), more than a small partition write, so connections are reused; at most
    ``MAX_IDLE`` stay open per process, and a connection that saw an error is closed.
    """

    MAX_IDLE = 4

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.pid = os.getpid()
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def get(self) -> Any:
        import adbc_driver_postgresql.dbapi as adbc

        while True:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                return adbc.connect(self.uri)
            try:  # the server may have ended it while idle (restart, pg_terminate_backend)
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
                conn.rollback()
                return conn
            except Exception:  # noqa: BLE001 - a dead connection is replaced, not reported
                close_quietly(conn)

    def put(self, conn: Any, healthy: bool) -> None:
        if healthy:
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                healthy = False
        with self.lock:
            if healthy and len(self.idle) < self.MAX_IDLE and os.getpid() == self.pid:
                self.idle.append(conn)
                return
        close_quietly(conn)

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            close_quietly(conn)


_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(uri: str) -> ConnectionPool:
    with _POOLS_LOCK:
        pool = _POOLS.get(uri)
        if pool is None or pool.pid != os.getpid():  # a forked child must not share sockets
            pool = _POOLS[uri] = ConnectionPool(uri)
        return pool


def close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def close_idle() -> None:
    """Close every pooled connection of this process (tests, shutdown)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(close_idle)
