"""Benchmark: a backward provenance query on a Dagster instance on Postgres with ~10,000 materializations.

    .venv/bin/python bench/provenance.py [--days 490] [--rounds 4] [--repeat 5]

Starts its own throwaway PostgreSQL server (the test suite's helper) and fills a Dagster
instance on it with materialization events of the platform's graph shape, reported as
runless events (``report_runless_asset_event``) carrying realistic ``ml_platform/inputs``
records: running the real pipelines ``--rounds`` times over ``--days`` days would take hours
for what is only event-log volume. Per round, every day gets raw (with source files),
clean, features (reading the 29-day trailing window of clean), predictions (reading the
day's features and the champion) and prediction quality; every week a price model (reading
28 days of features) and a promotion. Then it times ``backward()`` of one prediction
partition (no storage verification: that measures the object store, not the query),
best of ``--repeat``. Target (issue 6): under 1 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_platform.devtools.postgres_server import postgres_server  # noqa: E402
from ml_platform.provenance.lineage import backward  # noqa: E402

K = dg.AssetKey.from_user_string


def _instance(server, home: Path):
    storage = {
        "postgres": {
            "postgres_db": {
                "hostname": server.host,
                "port": server.port,
                "db_name": server.dbname,
                "username": server.user,
                "password": server.password,
                "scheme": "postgresql+psycopg2",
            }
        }
    }
    return dg.instance_for_test(temp_dir=str(home), overrides={"storage": storage})


class Filler:
    def __init__(self, instance) -> None:
        self.instance = instance
        self.latest: dict[str, dict] = {}
        self.count = 0

    def read(self, asset: str, partitions: list[str | None]) -> dict:
        ids = self.latest.get(asset, {})
        rows = [
            {
                "partition": p,
                "run_id": "runless",
                "uri": f"file:///bench/{asset}/{p}/x.parquet",
                "sha256": "0" * 64,
                "size": 1000,
                "generation": "1",
                "rows": 1000,
                "content_hash": "c" * 24,
                "storage_id": ids[p],
                "data_version": "d" * 24,
            }
            for p in partitions
            if p in ids
        ]
        return {"asset": asset, "partitions": rows}

    def report(self, asset: str, partition: str | None, inputs: list[dict], extra=None) -> None:
        meta = {
            "ml_platform/inputs": dg.MetadataValue.json(inputs),
            "dagster/uri": dg.MetadataValue.text(f"file:///bench/{asset}/{partition}/x.parquet"),
            "ml_platform/sha256": dg.MetadataValue.text("0" * 64),
            **(extra or {}),
        }
        self.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=K(asset), partition=partition, metadata=meta)
        )
        self.count += 1

    def refresh(self, asset: str) -> None:
        key = K(asset)
        by_partition = dict(
            self.instance.get_latest_storage_id_by_partition(
                key, dg.DagsterEventType.ASSET_MATERIALIZATION
            )
        )
        latest = self.instance.fetch_materializations(key, limit=1).records
        if latest:
            by_partition[None] = latest[0].storage_id
        self.latest[asset] = by_partition


def fill(instance, days: int, rounds: int) -> int:
    f = Filler(instance)
    start = date(2025, 1, 1)
    dates = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    mondays = [d for d in dates if date.fromisoformat(d).weekday() == 0 and d >= dates[28]]
    for _ in range(rounds):
        for d in dates:
            files = [
                {
                    "uri": f"file:///landing/{d}/part-{i}.csv",
                    "size": 1,
                    "generation": "1",
                    "sha256": "f" * 64,
                    "rows": 500,
                }
                for i in range(2)
            ]
            f.report(
                "raw/shipments", d, [], {"ml_platform/source_files": dg.MetadataValue.json(files)}
            )
        f.refresh("raw/shipments")
        for d in dates:
            f.report("clean/shipments", d, [f.read("raw/shipments", [d])])
        f.refresh("clean/shipments")
        for i, d in enumerate(dates):
            f.report(
                "features/shipment_features",
                d,
                [f.read("clean/shipments", dates[max(0, i - 28) : i + 1])],
            )
        f.refresh("features/shipment_features")
        for week in mondays:
            i = dates.index(week)
            f.report(
                "models/price_model",
                week,
                [f.read("features/shipment_features", dates[i - 21 : i + 7])],
            )
        f.refresh("models/price_model")
        f.report("models/champion", None, [f.read("models/price_model", [mondays[-1]])])
        f.refresh("models/champion")
        for d in dates:
            f.report(
                "predictions/price_quotes",
                d,
                [f.read("features/shipment_features", [d]), f.read("models/champion", [None])],
            )
        f.refresh("predictions/price_quotes")
        for d in dates:
            f.report(
                "monitoring/prediction_quality",
                d,
                [f.read("predictions/price_quotes", [d]), f.read("clean/shipments", [d])],
            )
    return f.count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=490)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import tempfile

    with postgres_server() as server, tempfile.TemporaryDirectory() as home:
        with _instance(server, Path(home)) as instance:
            t0 = time.perf_counter()
            count = fill(instance, args.days, args.rounds)
            print(f"reported {count} materializations in {time.perf_counter() - t0:.1f}s")
            day = (date(2025, 1, 1) + timedelta(days=args.days - 1)).isoformat()
            key = K("predictions/price_quotes")
            timings = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                lineage = backward(instance, key, day)
                timings.append(time.perf_counter() - t0)
            print(
                f"backward(predictions/price_quotes {day}): {len(lineage.nodes)} nodes, "
                f"best {min(timings) * 1000:.0f} ms, median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
