"""Benchmark: the Postgres IO path against raw ADBC, connectorx and pandas, on the same data.

    uv run --group bench python bench/postgres_io.py [--rows 1000000] [--repeat 3] [--pandas-rows 50000]

Starts its own throwaway PostgreSQL server (the test suite's helper), builds one frame of
the platform's column types (1M rows x 11 columns over 30 daily partitions) and measures,
best of ``--repeat``:

- write: ``PostgresTables.write`` of all 30 partitions in one transaction (hashing,
  DELETE, COPY, BRIN index, bookkeeping) vs raw ``adbc_ingest`` of the same Arrow table
  into an unindexed table of the same column types;
- read: ``PostgresTables.read`` of the 30 partitions into polars vs a raw ADBC
  ``SELECT *`` and a connectorx read of the same table, both into polars (both tables
  vacuumed first, as autovacuum would after the write rounds' replaces);
- pandas ``to_sql`` (SQLAlchemy + psycopg2, its default row inserts) on a smaller sample
  (``--pandas-rows``), reported as rows/s: it is too slow to run on 1M rows.

Targets (issue 4): write >= 0.8x raw ADBC ingest, read >= 0.7x raw ADBC/connectorx read,
both >= 20x pandas to_sql.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_platform.devtools.postgres_server import postgres_server  # noqa: E402
from ml_platform.storage.pg_types import columns_of, to_arrow_for_copy  # noqa: E402
from ml_platform.storage.postgres_tables import PgSettings, PostgresTables  # noqa: E402

DAYS = 30
TARGETS = {"write_vs_adbc": 0.8, "read_vs_best_raw": 0.7, "vs_pandas": 20.0}


def platform_frame(rows: int, seed: int = 0) -> pl.DataFrame:
    """Columns like clean shipments and features: text, timestamps, dates, floats, ints, bools."""
    rng = np.random.default_rng(seed)
    start = date(2026, 1, 1)
    day_index = np.sort(rng.integers(0, DAYS, rows))
    epoch_us = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    modes = np.array(["road", "rail", "sea", "air"])
    return pl.DataFrame(
        {
            "shipment_id": [f"S{i:09d}" for i in range(rows)],
            "booked_at": pl.Series(
                epoch_us + day_index * 86_400_000_000 + rng.integers(0, 86_400_000_000, rows)
            ).cast(pl.Datetime("us", "UTC")),
            "partition_date": pl.Series(
                [start + timedelta(days=int(d)) for d in range(DAYS)]
            ).gather(day_index),
            "distance_km": rng.uniform(10, 5000, rows),
            "weight_kg": rng.uniform(1, 20000, rows),
            "price_eur": rng.uniform(50, 90000, rows),
            "transport_mode": modes[rng.integers(0, 4, rows)],
            "carrier": [f"carrier-{i % 37}" for i in range(rows)],
            "lane_shipments_28d": rng.integers(0, 5000, rows).astype(np.uint32),
            "day_of_week": rng.integers(1, 8, rows).astype(np.int8),
            "is_express": rng.random(rows) < 0.1,
        }
    )


def interleaved(repeat: int, paths: dict[str, Callable[[], object]], before=None) -> dict:
    """Best time of each path, running the paths in turn each round so that load from
    elsewhere on the machine hits them alike."""
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeat):
        for name, fn in paths.items():
            if before:
                before()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pandas-rows", type=int, default=50_000)
    args = parser.parse_args()

    df = platform_frame(args.rows)
    keys = [(date(2026, 1, 1) + timedelta(days=d)).isoformat() for d in range(DAYS)]
    frames = {k: f for (k,), f in df.partition_by("partition_date", as_dict=True).items()}
    frames = {str(k): frames[k] for k in sorted(frames)}
    columns = columns_of(df)
    arrow = to_arrow_for_copy(df, columns)
    print(
        f"{args.rows:,} rows x {df.width} columns, {DAYS} daily partitions; best of {args.repeat}"
    )

    with postgres_server() as server:
        import adbc_driver_postgresql.dbapi as adbc
        import connectorx as cx

        settings = PgSettings(server.host, server.port, server.dbname, server.user, server.password)
        tables = PostgresTables(settings)
        ddl = ", ".join(f'"{c.name}" {c.pg_type}' for c in columns)
        with adbc.connect(server.uri) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE raw_ingest ({ddl})")
            conn.commit()

            def truncate_raw() -> None:
                cur.execute("TRUNCATE raw_ingest")
                conn.commit()

            def raw_ingest() -> None:
                cur.adbc_ingest("raw_ingest", arrow, mode="append")
                conn.commit()

            def raw_read() -> pl.DataFrame:
                cur.execute("SELECT * FROM raw_ingest")
                return pl.from_arrow(cur.fetch_arrow_table())

            results = interleaved(
                args.repeat,
                {
                    "adbc_ingest_s": raw_ingest,
                    "ml_write_s": lambda: tables.write(
                        "bench", "shipments", frames, "run", "partition_date"
                    ),
                },
                before=truncate_raw,  # raw ingest always goes into an empty table
            )
            raw_ingest()
            # Each timed write replaced every row, leaving dead row versions that a read would
            # scan until autovacuum (1 min here) clears them; vacuum both tables as it would.
            conn.adbc_connection.set_autocommit(True)
            cur.execute("VACUUM ANALYZE raw_ingest")
            cur.execute("VACUUM ANALYZE bench.shipments")
            conn.adbc_connection.set_autocommit(False)
            results |= interleaved(
                args.repeat,
                {
                    "adbc_read_s": raw_read,
                    "connectorx_read_s": lambda: pl.from_arrow(
                        cx.read_sql(server.uri, "SELECT * FROM raw_ingest", return_type="arrow")
                    ),
                    "ml_read_s": lambda: tables.read("bench", "shipments", keys),
                },
            )
            check, _ = tables.read("bench", "shipments", keys)
            assert check.height == args.rows and check.schema == df.schema

        results["pandas_to_sql_s"] = pandas_to_sql(server, df.head(args.pandas_rows))

    report(results, args.rows, args.pandas_rows)


def pandas_to_sql(server, sample: pl.DataFrame) -> float:
    import sqlalchemy

    engine = sqlalchemy.create_engine(server.uri.replace("postgresql://", "postgresql+psycopg2://"))
    pdf = sample.to_pandas()
    try:
        t0 = time.perf_counter()
        pdf.to_sql("pandas_to_sql", engine, if_exists="replace", index=False)
        return time.perf_counter() - t0
    finally:
        engine.dispose()


def report(r: dict[str, float], rows: int, pandas_rows: int) -> None:
    rate = {k[:-2]: rows / v for k, v in r.items() if k != "pandas_to_sql_s"}
    rate["pandas_to_sql"] = pandas_rows / r["pandas_to_sql_s"]
    best_raw_read = max(rate["adbc_read"], rate["connectorx_read"])
    ratios = {
        "write_vs_adbc": rate["ml_write"] / rate["adbc_ingest"],
        "read_vs_adbc": rate["ml_read"] / rate["adbc_read"],
        "read_vs_connectorx": rate["ml_read"] / rate["connectorx_read"],
        "read_vs_best_raw": rate["ml_read"] / best_raw_read,
        "write_vs_pandas": rate["ml_write"] / rate["pandas_to_sql"],
        "read_vs_pandas": rate["ml_read"] / rate["pandas_to_sql"],
    }
    print(f"\n{'path':<32}{'seconds':>10}{'rows/s':>14}")
    for name, seconds in r.items():
        n = pandas_rows if name == "pandas_to_sql_s" else rows
        note = f"  ({pandas_rows:,}-row sample)" if name == "pandas_to_sql_s" else ""
        print(f"{name[:-2]:<32}{seconds:>10.3f}{n / seconds:>14,.0f}{note}")
    print()
    failed = []
    for name, value in ratios.items():
        target = TARGETS.get(name) or (TARGETS["vs_pandas"] if "pandas" in name else None)
        verdict = ""
        if target is not None:
            ok = value >= target
            verdict = f"  target >= {target:g}x: {'ok' if ok else 'MISSED'}"
            failed += [] if ok else [name]
        print(f"{name:<32}{value:>10.2f}x{verdict}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "postgres_io.json").write_text(
        json.dumps({"seconds": r, "rows_per_s": rate, "ratios": ratios}, indent=2)
    )
    if failed:
        sys.exit(f"missed targets: {failed}")


if __name__ == "__main__":
    main()
