"""Small helpers shared by the Postgres tests."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import psycopg

from ml_platform.devtools.postgres_server import PostgresServer
from ml_platform.storage.postgres_tables import PgSettings, PostgresTables


def store(pg: PostgresServer, application_name: str = "ml_platform") -> PostgresTables:
    return PostgresTables(
        PgSettings(pg.host, pg.port, pg.dbname, pg.user, pg.password, application_name)
    )


def day_frame(day: str, rows: int, seed: int = 0, tag: str = "v1") -> pl.DataFrame:
    """Rows of one day: an id, a value, a tag naming the version written, the day."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {"id": np.arange(rows, dtype=np.int64), "value": rng.random(rows)}
    ).with_columns(
        tag=pl.lit(tag, pl.String), partition_date=pl.lit(date.fromisoformat(day), pl.Date)
    )


def days(start: str, n: int) -> list[str]:
    first = date.fromisoformat(start)
    return [(first + timedelta(days=i)).isoformat() for i in range(n)]


def sql(pg: PostgresServer, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
