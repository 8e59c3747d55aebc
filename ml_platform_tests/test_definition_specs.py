"""The code location's definitions against a committed snapshot (syrupy).

A change to an asset's partitions, dependencies, backfill policy, automation condition,
checks, IO manager or pod tags, or to a job, sensor, schedule or resource, fails here until
the snapshot is updated with it, so every such change shows in review as a diff:

    uv run pytest ml_platform_tests/test_definition_specs.py --snapshot-update
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# The definitions read the deployment from the environment when they are imported, so each
# deployment is loaded in its own process, from a clean environment.
DEPLOYMENTS = {
    "local": {},
    # As the prod values deploy it (helm/values/dagster-prod.yaml), bucket names made up.
    "prod": {
        "ML_PLATFORM_DEPLOYMENT": "prod",
        "ML_PLATFORM_EXECUTOR": "in_process",
        "ML_PLATFORM_GCS_BUCKET": "lake-bucket",
        "ML_PLATFORM_LANDING_BUCKET": "landing-bucket",
    },
}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, dict]:
    home = tmp_path_factory.mktemp("specs")
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ML_PLATFORM_", "DAGSTER_", "STORAGE_EMULATOR"))
    }
    base |= {"ML_PLATFORM_HOME": str(home), "ML_PLATFORM_START_DATE": "2026-01-01"}
    loaded = {}
    for deployment, env in DEPLOYMENTS.items():
        out = subprocess.run(
            [sys.executable, "-W", "ignore", "-m", "ml_platform.devtools.definition_specs"],
            env=base | env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        loaded[deployment] = json.loads(out.stdout)
    return loaded


def test_local_definitions_match_the_snapshot(specs, snapshot):
    assert specs["local"] == snapshot


def test_prod_has_the_same_graph_on_its_own_resources(specs, snapshot):
    local, prod = specs["local"], specs["prod"]
    assert {k: v for k, v in prod.items() if k != "resources"} == {
        k: v for k, v in local.items() if k != "resources"
    }
    assert prod["resources"] == snapshot


def test_every_daily_asset_backfills_in_bounded_chunks(specs):
    """A backfill's memory grows with its chunk, never with its range (issue 13)."""
    unbounded = [
        key
        for key, asset in specs["local"]["assets"].items()
        if asset["partitions"]
        and asset["partitions"]["type"] == "DailyPartitionsDefinition"
        and asset["backfill_policy"] != "BackfillPolicy(max_partitions_per_run=5)"
    ]
    assert unbounded == []
