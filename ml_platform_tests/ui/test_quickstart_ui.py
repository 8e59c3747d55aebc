"""The quick start for real: CLI demo, `dagster dev` (webserver + daemon), headless Chromium.

Covers what a newcomer does: land demo data and materialize the first days with the CLI,
start the platform, see the graph and materialized partitions in the UI, watch the landing
sensor ingest the remaining drops under the real daemon, and file a backfill from the CLI
that the daemon carries out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(condition, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("quickstart") / "home"
    # Backfills run in chunks of two days: 2,000 rows a day, 4,000 rows a run.
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "ML_PLATFORM_ROWS_PER_DAY": "2000",
        "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "4000",
    }
    env.pop("DAGSTER_HOME", None)
    demo = subprocess.run(
        [
            BIN / "ml-platform",
            "demo",
            "--days",
            "5",
            "--rows-per-day",
            "2000",
            "--materialize-days",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "succeeded: data_pipeline 2026-01-01..2026-01-03" in demo.stdout

    port = _free_port()
    log = open(home / "dev.log", "w")
    server = subprocess.Popen(
        [BIN / "ml-platform", "dev", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _get(f"{url}/server_info"), 120, "the webserver to serve")
        os.environ["DAGSTER_HOME"] = str(home / "dagster")
        with dg.DagsterInstance.get() as instance:
            yield {"url": url, "env": env, "home": home, "instance": instance}
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _get(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_ui_shows_the_asset_graph(platform, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{platform['url']}/asset-groups", wait_until="networkidle")
    for group in ("raw", "clean", "features"):
        page.get_by_text(group, exact=True).first.wait_for(timeout=30_000)
    assert page.get_by_text("Join the Dagster community").count() == 0
    page.screenshot(path=tmp_path / "lineage.png")


def test_ui_shows_the_demo_partitions_materialized(platform, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(
        f"{platform['url']}/assets/features/shipment_features?view=partitions",
        wait_until="networkidle",
    )
    label = page.get_by_text("Materialized (", exact=False).first
    label.wait_for(timeout=30_000)
    count = int(label.inner_text().split("(")[1].rstrip(")"))
    assert count >= 3
    page.screenshot(path=tmp_path / "partitions.png")


def test_the_daemon_runs_the_landing_sensor_on_the_remaining_drops(platform):
    instance = platform["instance"]
    raw = dg.AssetKey(["raw", "shipments"])
    _wait_for(
        lambda: {"2026-01-04", "2026-01-05"} <= set(instance.get_materialized_partitions(raw)),
        180,
        "the landing sensor to ingest the last two drops",
    )
    runs = instance.get_runs(dg.RunsFilter(job_name="ingest_shipments"))
    # Exactly one run per new drop; the three days the CLI materialized are not re-run.
    assert sorted(r.tags["dagster/partition"] for r in runs) == ["2026-01-04", "2026-01-05"]


def test_a_backfill_filed_from_the_cli_runs_in_chunks_under_the_daemon(platform):
    instance = platform["instance"]
    filed = subprocess.run(
        [BIN / "ml-platform", "backfill", "--from", "2026-01-01", "--to", "2026-01-05", "--submit"],
        env=platform["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert filed.returncode == 0, filed.stdout + filed.stderr
    backfill_id = filed.stdout.split()[1]
    done = _wait_for(
        lambda: (b := instance.get_backfill(backfill_id)) and b.status.value != "REQUESTED" and b,
        300,
        "the daemon to finish the backfill",
        interval=2,
    )
    assert done.status.value == "COMPLETED_SUCCESS", done.status
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # The backfill policy splits five days into runs of at most two days (rows a day and
    # rows a run from the environment), each retried alone if it fails.
    spans = sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in runs
        if "dagster/asset_partition_range_start" in r.tags
    )
    days = {(date.fromisoformat(b) - date.fromisoformat(a)).days + 1 for a, b in spans}
    assert len(runs) >= 3 and days <= {1, 2}, spans
    for asset in (["raw", "shipments"], ["features", "shipment_features"]):
        materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert {f"2026-01-0{d}" for d in range(1, 6)} <= materialized
