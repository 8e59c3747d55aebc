"""Tick retention is Dagster's own `retention:` setting, in every instance config we ship."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_platform_tests.dagster_internals import InstigatorType, TickStatus, dagster_instance_config

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    InstigatorType.SENSOR: {
        TickStatus.SKIPPED: 7,
        TickStatus.FAILURE: 30,
        TickStatus.SUCCESS: 30,
        TickStatus.STARTED: 30,
    },
    InstigatorType.SCHEDULE: {status: 30 for status in TickStatus},
    InstigatorType.AUTO_MATERIALIZE: {
        TickStatus.SKIPPED: 7,
        TickStatus.FAILURE: 30,
        TickStatus.SUCCESS: 30,
        TickStatus.STARTED: 30,
    },
}


def test_the_local_instance_applies_the_tick_retention(tmp_path, monkeypatch):
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # the local storage's base_dir
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        for instigator_type, expected in EXPECTED.items():
            settings = instance.get_tick_retention_settings(instigator_type)
            assert {s: settings[s] for s in expected} == expected, instigator_type


@pytest.mark.parametrize("folder", ["deploy/local-postgres", "deploy/prod"])
def test_the_other_instance_configs_set_a_valid_retention(folder, monkeypatch):
    for name in ("HOST", "PORT", "DB", "USER", "PASSWORD"):
        monkeypatch.setenv(f"DAGSTER_PG_{name}", "5432" if name == "PORT" else "x")
    monkeypatch.setenv("ML_PLATFORM_COMPUTE_LOG_BUCKET", "logs")
    config, _ = dagster_instance_config(str(ROOT / folder))  # validates against the schema
    sensor = config["retention"]["sensor"]["purge_after_days"]
    assert sensor["skipped"] == 7 and sensor["failure"] >= 30
