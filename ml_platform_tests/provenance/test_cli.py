"""The provenance commands, run as a user runs them, against one platform home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops

BIN = Path(sys.executable).parent / "ml-platform"


def _cli(env, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=300)
    return result


def _json(env, *args: str):
    result = _cli(env, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _walk(tree: dict):
    yield tree
    for entry in tree.get("inputs", []):
        for child in entry["partitions"]:
            yield from _walk(child)


# About 15 subprocess commands, each loading the code location: minutes, not seconds.
@pytest.mark.timeout(1500)
def test_provenance_commands(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ML_PLATFORM_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    demo = ["demo", "--days", "42", "--rows-per-day", "1000", "--materialize-days", "42"]
    assert _cli(env, *demo).returncode == 0
    assert (
        _cli(env, "train", "--week", "2026-02-02", "--param", "min_training_rows=1000").returncode
        == 0
    )
    assert _cli(env, "promote", "--week", "2026-02-02", "--reason", "first").returncode == 0
    # The demo already promoted a model and quoted 2026-02-09..11: quote them all again.
    assert _cli(env, "predict", "--date", "2026-02-09", "--to", "2026-02-11").returncode == 0

    tree = _json(env, "lineage", "predictions/price_quotes", "--partition", "2026-02-09")
    nodes = [n for n in _walk(tree) if "ref" not in n]
    assert {n["asset"] for n in nodes} == {
        "predictions/price_quotes",
        "features/shipment_features",
        "models/champion",
        "models/price_model",
        "clean/shipments",
        "raw/shipments",
    }
    assert {n["status"] for n in nodes} == {"verified"}
    raw = [n for n in nodes if n["asset"] == "raw/shipments"]
    assert all(n["source_files"] for n in raw)
    text = _cli(env, "lineage", "predictions/price_quotes", "--partition", "2026-02-09")
    assert "└─ " in text.stdout and "source file" in text.stdout

    quotes = pl.read_parquet(home / "storage" / nodes[0]["object_key"])
    shipment = quotes["shipment_id"][0]
    row = _json(
        env,
        "lineage",
        "predictions/price_quotes",
        "--partition",
        "2026-02-09",
        "--shipment-id",
        shipment,
    )
    assert row["prediction"]["shipment_id"] == shipment
    assert row["features"]["shipment_id"] == shipment and "lane" in row["features"]

    explained = _json(env, "explain", "--date", "2026-02-09")
    assert explained["model"]["week"] == "2026-02-02"
    assert explained["still_live"] and explained["rerun"] == [
        "ml-platform predict --date 2026-02-09 --force"
    ]
    assert explained["reproduce"] == (
        "ml-platform reproduce predictions/price_quotes --partition 2026-02-09"
    )
    assert _json(env, "champion")["model_week"] == "2026-02-02"
    assert _json(env, "last-training")["week"] == "2026-02-02"
    assert _json(env, "stale") == []

    # A bad drop: re-landed with other content and re-ingested; the rest is now stale.
    generate_drops(
        home / "landing", date(2026, 2, 5), 1, GeneratorConfig(rows_per_day=1000, seed=5)
    )
    # Before it is ingested again, stale says so (it said "nothing is stale").
    redropped = _json(env, "stale")
    assert [(s["asset"], s["partition"], s["reasons"][0]["kind"]) for s in redropped] == [
        ("raw/shipments", "2026-02-05", "landed drop")
    ]
    assert (
        _cli(
            env, "backfill", "--from", "2026-02-05", "--to", "2026-02-05", "--select", "raw"
        ).returncode
        == 0
    )
    uri = raw[0]["source_files"][0]["uri"]
    file_uri = next(
        f["uri"] for n in raw if n["partition"] == "2026-02-05" for f in n["source_files"]
    )
    impacted = _json(env, "impact", "--file", file_uri)
    assert {"predictions/price_quotes", "models/champion"} <= {i["asset"] for i in impacted}
    assert uri  # any file of the chain resolves
    stale = _json(env, "stale", "--backfill")
    stale_keys = {(s["asset"], s["partition"]) for s in stale["stale"]}
    assert ("clean/shipments", "2026-02-05") in stale_keys
    assert ("predictions/price_quotes", "2026-02-09") in stale_keys

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            backfill = instance.get_backfill(stale["backfill_id"])
            subset = backfill.asset_backfill_data.target_subset
            filed = {
                (key.to_user_string(), p)
                for key in subset.asset_keys
                for p in subset.get_partitions_subset(key).get_partition_keys()
            }
    finally:
        del os.environ["DAGSTER_HOME"]
    assert filed == stale_keys
