"""The quick start for real: CLI demo, `ml-platform dev` (webserver + daemon), headless Chromium.

Covers what a newcomer, an operator and an analyst do: land demo data ending today and build
the first days, a model and quotes with the CLI; start the platform and the read-only analyst
UI beside it; see the graph and materialized partitions; watch the landing sensor ingest the
last drops (yesterday and today) under the real daemon; materialize one partition and backfill
a range from an asset page's dialogs (the backfill in the chunks its policy says); read a
quote day's provenance summary; see the clean asset's reject share and prediction_quality's
MAPE plotted over partitions; file a backfill from the CLI; and find that the read-only UI
launches nothing, in the browser or through its GraphQL API.

The demo's dates are relative to today on purpose: the UI's default views (the last 90 days in
the launch dialog, the last 120 partitions in the plots) must show the demo's data.
Screenshots go to a temp folder (printed at the end of the module); with
ML_PLATFORM_SCREENSHOTS=DIR the ones the README shows (README_SHOTS) are also written to DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ml_platform_tests.processes import signals_as_from_a_terminal

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# 37 days ending today; 35 built by the CLI (enough for a full model week on any weekday), the
# last two left for the landing sensor.
DAYS, MATERIALIZE_DAYS = 37, 35
FEATURES = dg.AssetKey(["features", "shipment_features"])
QUOTES = dg.AssetKey(["predictions", "price_quotes"])
QUALITY = dg.AssetKey(["monitoring", "prediction_quality"])
# The screenshots the README shows, by the names the tests save them under.
README_SHOTS = (
    "lineage.png",
    "quality_plot.png",
    "reject_share_plot.png",
    "provenance_summary.png",
)


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


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [BIN / "ml-platform", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # SIGTERM stops it at teardown: not ignored, as it is in a suite run in the
            # background (30 s of waiting for nothing, then SIGKILL, per server).
            preexec_fn=signals_as_from_a_terminal,
        )


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("quickstart") / "home"
    # Backfills run in chunks of two days: 2,000 rows a day, 4,000 rows a run. The demo's
    # start date is today's business: no ML_PLATFORM_START_DATE (the suite pins one).
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "ML_PLATFORM_ROWS_PER_DAY": "2000",
        "ML_PLATFORM_BACKFILL_ROWS_PER_RUN": "4000",
    }
    for name in ("DAGSTER_HOME", "ML_PLATFORM_START_DATE"):
        env.pop(name, None)
    today = date.today()
    start = today - timedelta(days=DAYS - 1)
    demo = subprocess.run(
        [BIN / "ml-platform", "demo", "--days", str(DAYS), "--rows-per-day", "300"]
        + ["--materialize-days", str(MATERIALIZE_DAYS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    built = start + timedelta(days=MATERIALIZE_DAYS - 1)
    assert f"landed {DAYS} daily drops {start}..{today}" in demo.stdout
    # 300 rows a day in runs of 4,000 rows: the demo's data runs in chunks of 13 days.
    assert f"backfill succeeded: data {start}..{built}, 6/6 chunk stages" in demo.stdout, (
        demo.stdout
    )
    assert "succeeded: predict_prices" in demo.stdout, demo.stdout
    # The daily partitions begin where the demo's data begins.
    assert (home / "start_date").read_text().strip() == start.isoformat()

    port, read_only_port = _free_port(), _free_port()
    server = _start(["dev", "--port", str(port)], env, home / "dev.log")
    analyst = _start(
        ["dev", "--read-only", "--port", str(read_only_port)], env, home / "read_only.log"
    )
    url, read_only_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{read_only_port}"
    try:
        # The read-only UI comes up meanwhile; its test waits for it.
        _wait_for(lambda: _get(f"{url}/server_info"), 120, "the webserver to serve")
        os.environ["DAGSTER_HOME"] = str(home / "dagster")
        with dg.DagsterInstance.get() as instance:
            yield {
                "url": url,
                "read_only_url": read_only_url,
                "env": env,
                "home": home,
                "instance": instance,
                "start": start,
                "today": today,
            }
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        for process in (server, analyst):
            _stop(process)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Iterator[Path]:
    """The module's screenshots (test artifacts); README_SHOTS also go to ML_PLATFORM_SCREENSHOTS."""
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    print(f"\nUI screenshots: {folder}")
    target = os.environ.get("ML_PLATFORM_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for name in README_SHOTS:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, Path(target) / name)


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(30_000)
    yield page
    page.close()


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _open_materialize_dialog(page, url: str, asset: dg.AssetKey):
    page.goto(f"{url}/assets/{asset.to_user_string()}", wait_until="networkidle")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Partition selection").wait_for()
    # More than 90 partitions: the dialog shows the last 90 days until asked for all.
    show_all = dialog.get_by_role("button", name="Show all partitions")
    if show_all.count():
        show_all.click()
    return dialog


def _select_partitions(dialog, text: str, expected: int) -> None:
    box = dialog.get_by_role("textbox").first
    box.fill(text)
    box.press("Enter")
    noun = "partition" if expected == 1 else "partitions"
    dialog.get_by_text(f"{expected} {noun}", exact=True).wait_for()


def _runs_since(instance, t0: float, **filters) -> list:
    return [r for r in instance.get_runs(dg.RunsFilter(**filters)) if _created(instance, r) > t0]


def _created(instance, run) -> float:
    record = instance.get_run_record_by_id(run.run_id)
    return record.create_timestamp.timestamp()


def test_ui_shows_the_asset_graph(platform, page, shots):
    page.goto(f"{platform['url']}/asset-groups", wait_until="networkidle")
    for group in ("raw", "clean", "features", "models", "predictions", "monitoring"):
        page.get_by_text(group, exact=True).first.wait_for()
    assert page.get_by_text("Join the Dagster community").count() == 0
    # The whole chain up to the quality figures, as the README shows it.
    page.set_viewport_size({"width": 1500, "height": 560})
    page.goto(
        f"{platform['url']}/assets/monitoring/prediction_quality"
        "?view=lineage&lineageScope=upstream&lineageDepth=6",
        wait_until="networkidle",
    )
    page.get_by_role("button", name="Hide navigation").click()
    for asset in ("shipments", "shipment_features", "price_model", "champion", "price_quotes"):
        page.get_by_text(asset, exact=True).first.wait_for()
    page.screenshot(
        path=shots / "lineage.png", clip={"x": 70, "y": 160, "width": 1380, "height": 400}
    )


def test_ui_shows_the_demo_partitions_materialized(platform, page, shots):
    page.goto(
        f"{platform['url']}/assets/features/shipment_features?view=partitions",
        wait_until="networkidle",
    )
    label = page.get_by_text("Materialized (", exact=False).first
    label.wait_for()
    count = int(label.inner_text().split("(")[1].rstrip(")"))
    assert count >= MATERIALIZE_DAYS
    page.screenshot(path=shots / "partitions.png")


def test_the_daemon_runs_the_landing_sensor_on_the_last_drops(platform):
    instance, today = platform["instance"], platform["today"]
    last_two = {(today - timedelta(days=1)).isoformat(), today.isoformat()}
    raw = dg.AssetKey(["raw", "shipments"])
    _wait_for(
        lambda: last_two <= set(instance.get_materialized_partitions(raw)),
        180,
        "the landing sensor to ingest yesterday's and today's drops",
    )
    runs = instance.get_runs(dg.RunsFilter(job_name="ingest_shipments"))
    # Exactly one run per new drop; the days the CLI built are not re-run.
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(last_two)


@pytest.fixture(scope="module")
def launches(platform, browser, shots) -> dict:
    """One partition and a range launched from the asset page's dialogs, a range filed from the CLI.

    Launched together so the daemon works on all three at once: it looks at backfills only
    every 30 seconds, and each stage of a backfill waits for the next look.
    """
    instance, start, url = platform["instance"], platform["start"], platform["url"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(30_000)

    day = (start + timedelta(days=30)).isoformat()
    dialog = _open_materialize_dialog(page, url, FEATURES)
    _select_partitions(dialog, day, 1)
    t0 = time.time()
    dialog.get_by_role("button", name="Launch 1 run").click()
    run = _wait_for(
        lambda: next(iter(_runs_since(instance, t0, tags={"dagster/partition": day})), None),
        60,
        "the dialog's run to be created",
    )

    first, last = start + timedelta(days=5), start + timedelta(days=8)
    page.reload(wait_until="networkidle")
    dialog = _open_materialize_dialog(page, url, FEATURES)
    # The dialog states the policy the backfill will follow.
    dialog.get_by_text("with a maximum of 2 partitions per run").wait_for()
    _select_partitions(dialog, f"[{first}...{last}]", 4)
    page.screenshot(path=shots / "backfill_dialog.png")
    before = {b.backfill_id for b in instance.get_backfills()}
    dialog.get_by_role("button", name="Launch backfill").click()
    backfill = _wait_for(
        lambda: next((b for b in instance.get_backfills() if b.backfill_id not in before), None),
        60,
        "the dialog's backfill to be filed",
    )
    page.close()

    cli_last = start + timedelta(days=2)
    filed = subprocess.run(
        [BIN / "ml-platform", "backfill", "--from", str(start), "--to", str(cli_last), "--submit"],
        env=platform["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert filed.returncode == 0, filed.stdout + filed.stderr
    return {
        "run": run,
        "day": day,
        "backfill": (backfill.backfill_id, first, last),
        "cli_backfill": (filed.stdout.split()[1], start, cli_last),
    }


def _finished_backfill(instance, backfill_id: str, timeout: float = 300):
    done = _wait_for(
        lambda: (b := instance.get_backfill(backfill_id)) and b.status.value != "REQUESTED" and b,
        timeout,
        "the daemon to finish the backfill",
        interval=2,
    )
    assert done.status.value == "COMPLETED_SUCCESS", done.status
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    return runs


def _spans(runs) -> list[tuple[str, str]]:
    return sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        if "dagster/asset_partition_range_start" in r.tags
        else (r.tags["dagster/partition"], r.tags["dagster/partition"])
        for r in runs
    )


def test_one_partition_materialized_from_the_asset_page_succeeds(platform, launches, page, shots):
    instance, run = platform["instance"], launches["run"]
    assert run.asset_selection == {FEATURES}
    done = _wait_for(
        lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r,
        180,
        "the run to finish",
        interval=2,
    )
    assert done.status == dg.DagsterRunStatus.SUCCESS, done.status
    page.goto(f"{platform['url']}/runs/{run.run_id}", wait_until="networkidle")
    page.get_by_text("Success", exact=True).first.wait_for()
    page.screenshot(path=shots / "materialized_run.png")


def test_a_backfill_launched_from_the_dialog_runs_in_chunks(platform, launches, page, shots):
    backfill_id, first, last = launches["backfill"]
    runs = _finished_backfill(platform["instance"], backfill_id)
    # Four days in runs of two, as the backfill policy and the dialog said.
    assert _spans(runs) == [
        (first.isoformat(), (first + timedelta(days=1)).isoformat()),
        ((last - timedelta(days=1)).isoformat(), last.isoformat()),
    ]
    page.goto(f"{platform['url']}/runs/b/{backfill_id}", wait_until="networkidle")
    page.get_by_text("Completed", exact=False).first.wait_for()
    page.screenshot(path=shots / "backfill_done.png")


def test_a_backfill_filed_from_the_cli_runs_in_chunks_under_the_daemon(platform, launches):
    instance = platform["instance"]
    backfill_id, first, last = launches["cli_backfill"]
    runs = _finished_backfill(instance, backfill_id)
    # The backfill policy splits three days into runs of at most two days (rows a day and
    # rows a run from the environment), each retried alone if it fails: raw and clean in one
    # pair of runs, then features (a trailing window over clean) in another.
    spans = _spans(runs)
    two, one = (str(first), str(first + timedelta(days=1))), (str(last), str(last))
    assert spans == [two, two, one, one], spans
    filed = {(first + timedelta(days=k)).isoformat() for k in range((last - first).days + 1)}
    for asset in (["raw", "shipments"], ["features", "shipment_features"]):
        assert filed <= instance.get_materialized_partitions(dg.AssetKey(asset))


def test_a_quote_days_materialization_opens_with_its_provenance_summary(platform, page, shots):
    instance = platform["instance"]
    day = min(instance.get_materialized_partitions(QUOTES))
    # Wide enough for the metadata table's provenance row to show whole.
    page.set_viewport_size({"width": 1700, "height": 900})
    page.goto(
        f"{platform['url']}/assets/predictions/price_quotes?view=events&partition={day}",
        wait_until="networkidle",
    )
    page.get_by_role("button", name="Hide navigation").click()
    summary = page.get_by_text("Summary: made from model week", exact=False).first
    summary.wait_for()
    text = summary.inner_text()
    assert f"features {day}" in text and "raw drops" in text, text
    entry = page.locator("tr", has=page.get_by_text("ml_platform/provenance", exact=True)).first
    entry.scroll_into_view_if_needed()
    entry.screenshot(path=shots / "provenance_summary.png")


# The sum of a canvas's alpha channel: 0 while nothing is drawn, steady once the chart is.
CANVAS_INK = """c => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < d.length; i += 4) ink += d[i];
  return ink;
}"""


def _plot(page, url: str, asset: dg.AssetKey, title: str, path: Path) -> None:
    """Open an asset's Plots tab, see the chart titled ``title`` drawn, and save it."""
    page.goto(f"{url}/assets/{asset.to_user_string()}", wait_until="networkidle")
    page.get_by_text("Plots", exact=True).first.click()
    heading = page.get_by_text(title, exact=True).first
    heading.wait_for()
    # The grid cell of that plot: the innermost box holding its title and its chart.
    cell = page.locator("div", has=heading).filter(has=page.locator("canvas")).last
    canvas = cell.locator("canvas").first
    cell.scroll_into_view_if_needed()
    seen = []
    _wait_for(
        lambda: (
            seen.append(canvas.evaluate(CANVAS_INK))
            or (seen[-1] > 0 and seen[-2:] == [seen[-1]] * 2)
        ),
        30,
        f"the {title} chart to be drawn",
        interval=0.5,
    )
    cell.screenshot(path=path)


def test_the_clean_asset_plots_its_reject_share_over_partitions(platform, page, shots):
    instance = platform["instance"]
    clean = dg.AssetKey(["clean", "shipments"])
    metadata = instance.get_latest_materialization_event(clean).asset_materialization.metadata
    assert isinstance(metadata["rejected_share"], dg.FloatMetadataValue)
    assert 0 < metadata["rejected_share"].value < 0.05  # the demo corrupts 1 % of rows
    for name in ("rows_in", "rows_out", "rows_rejected"):
        assert isinstance(metadata[name], dg.IntMetadataValue)
    # Identifiers are text, not numbers to plot.
    assert isinstance(metadata["ml_platform/generation"], dg.TextMetadataValue)
    _plot(page, platform["url"], clean, "rejected_share", shots / "reject_share_plot.png")


def test_prediction_quality_plots_its_mape_over_days(platform, page, shots):
    instance = platform["instance"]
    event = instance.get_latest_materialization_event(QUALITY)
    assert isinstance(event.asset_materialization.metadata["mape"], dg.FloatMetadataValue)
    _plot(page, platform["url"], QUALITY, "mape", shots / "quality_plot.png")


LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""


def test_the_read_only_ui_launches_nothing(platform, page, shots):
    instance = platform["instance"]
    url = platform["read_only_url"]
    _wait_for(lambda: _get(f"{url}/server_info"), 120, "the read-only webserver to serve")
    page.goto(f"{url}/assets/features/shipment_features", wait_until="networkidle")
    button = page.get_by_role("button", name="Materialize…")
    button.wait_for()
    assert button.is_disabled()
    # Browsing works: the same instance's partitions and provenance are there.
    page.goto(f"{url}/assets/features/shipment_features?view=partitions", wait_until="networkidle")
    page.get_by_text("Materialized (", exact=False).first.wait_for()
    page.screenshot(path=shots / "read_only.png")

    before = len(instance.get_backfills())
    params = {
        "partitionNames": [platform["start"].isoformat()],
        "assetSelection": [{"path": FEATURES.path}],
    }
    answer = _graphql(url, LAUNCH_BACKFILL, {"params": params})
    assert answer["data"]["launchPartitionBackfill"]["__typename"] == "UnauthorizedError", answer
    assert len(instance.get_backfills()) == before
