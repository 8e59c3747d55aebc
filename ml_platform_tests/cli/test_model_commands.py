"""The ml-platform model commands, run as a user would, against one platform home."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import dagster as dg

from ml_platform.provenance.champion import champion_history

BIN = Path(sys.executable).parent / "ml-platform"


def _cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=300)


def test_train_promote_predict_rollback_from_the_command_line(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ML_PLATFORM_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    assert (
        _cli(
            env, "demo", "--days", "42", "--rows-per-day", "1000", "--materialize-days", "42"
        ).returncode
        == 0
    )

    small = ["--param", "min_training_rows=1000"]
    assert _cli(env, "train", "--week", "2026-02-02", *small).returncode == 0
    # The same features, code and hyperparameters would make the same model: not trained.
    again = _cli(env, "train", "--week", "2026-02-02", *small)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("up to date, not trained: price_model 2026-02-02 (run ")
    forced = _cli(env, "train", "--week", "2026-02-02", *small, "--force")
    assert forced.returncode == 0 and "succeeded: train_price_model 2026-02-02" in forced.stdout
    assert _cli(env, "promote", "--week", "2026-02-02", "--reason", "first model").returncode == 0
    # A model that failed its checks is trained again: its not-worse-than-champion check
    # compares with the model live then, which is no input of the model.
    strict = [*small, "--param", "champion_tolerance=-1"]
    for _ in range(2):
        refused = _cli(env, "train", "--week", "2026-01-26", *strict)
        assert refused.returncode == 1 and "up to date" not in refused.stdout, refused.stdout
    tolerant = [*small, "--param", "champion_tolerance=10"]
    assert _cli(env, "train", "--week", "2026-01-26", *tolerant).returncode == 0
    assert _cli(env, "promote", "--week", "2026-01-26", "--reason", "older data").returncode == 0
    predicted = _cli(env, "predict", "--date", "2026-02-09", "--to", "2026-02-10")
    assert predicted.returncode == 0, predicted.stderr
    assert "succeeded: predict_prices 2026-02-09..2026-02-10" in predicted.stdout
    # Longer than a backfill chunk (5 days here): one run per chunk, side by side, so memory
    # holds a chunk's features, never the range's. 2026-02-09 is quoted by the live champion
    # from unchanged features already: not quoted again.
    week = _cli(env, "predict", "--date", "2026-02-03", "--to", "2026-02-09")
    assert week.returncode == 0, week.stderr
    assert "7 days in 2 chunks of up to 5 days, 2 runs" in week.stdout
    for chunk in ("2026-02-03..2026-02-07, 5 partitions", "2026-02-08, 1 partition"):
        assert f"succeeded: predict_prices[quotes+quality] {chunk}" in week.stdout, week.stdout
    assert "backfill succeeded: predict 2026-02-03..2026-02-09, 2/2 chunk stages" in week.stdout
    again = _cli(env, "predict", "--date", "2026-02-09", "--to", "2026-02-10")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(
        "up to date, not run: predict_prices 2026-02-09..2026-02-10 (--force runs it again)"
    ), again.stdout
    rolled = _cli(env, "rollback", "--reason", "older data was worse")
    assert rolled.returncode == 0, rolled.stderr
    assert "rolling back from week 2026-01-26 to week 2026-02-02" in rolled.stdout
    # Another champion is live: its quotes are not the ones stored, so the day runs again.
    requoted = _cli(env, "predict", "--date", "2026-02-10")
    assert requoted.returncode == 0, requoted.stderr
    assert "succeeded: predict_prices 2026-02-10, 1 partition" in requoted.stdout

    missing = _cli(env, "promote", "--week", "2026-01-12", "--reason", "typo")
    assert missing.returncode == 1
    assert "week 2026-01-12 has no materialized price_model" in missing.stderr

    # The demo quoted 2026-02-11 with its own model of week 2026-02-02, trained over since:
    # explain's commands re-quote the day with that exact version, not the week's latest.
    explained = json.loads(_cli(env, "explain", "--date", "2026-02-11", "--format", "json").stdout)
    made_by = explained["model"]["storage_id"]
    assert not explained["still_live"]
    assert explained["rerun"] == [
        f"ml-platform promote --model {made_by} --reason 'reproduce 2026-02-11'",
        "ml-platform predict --date 2026-02-11 --force",
    ]
    for command in explained["rerun"]:
        result = _cli(env, *shlex.split(command)[1:])
        assert result.returncode == 0, result.stderr
    requoted = json.loads(_cli(env, "explain", "--date", "2026-02-11", "--format", "json").stdout)
    assert requoted["model"]["storage_id"] == made_by and requoted["still_live"]
    assert requoted["predictions"]["run_id"] != explained["predictions"]["run_id"]
    unknown = _cli(env, "promote", "--model", "999999", "--reason", "typo")
    assert unknown.returncode == 1
    assert "no price_model materialization has storage id 999999" in unknown.stderr

    # A retrain that fails its checks is stored, but does not hide the week's good model.
    strict_again = [*small, "--param", "champion_tolerance=-1", "--force"]
    assert _cli(env, "train", "--week", "2026-02-02", *strict_again).returncode == 1
    refused_id = json.loads(_cli(env, "last-training", "--format", "json").stdout)["storage_id"]
    newest_good = _cli(env, "promote", "--week", "2026-02-02", "--reason", "newest good model")
    assert newest_good.returncode == 0, newest_good.stderr
    live = json.loads(_cli(env, "champion", "--format", "json").stdout)
    assert live["model_week"] == "2026-02-02" and live["model_storage_id"] != refused_id

    # A training run that failed before storing a model is still the last training run.
    too_few = _cli(env, "train", "--week", "2026-02-02", "--param", "min_training_rows=99000000")
    assert too_few.returncode == 1
    last = json.loads(_cli(env, "last-training", "--format", "json").stdout)
    assert last["storage_id"] == refused_id  # the latest stored model, as before
    assert last["last_run"]["status"] == "FAILURE" and last["last_run"]["week"] == "2026-02-02"
    assert "99000000" in last["last_run"]["failure"] or "rows" in last["last_run"]["failure"]
    text = _cli(env, "last-training").stdout
    assert not text.lstrip().startswith("{") and "last_run:" in text and "status: FAILURE" in text

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            history = champion_history(instance)
    finally:
        del os.environ["DAGSTER_HOME"]
    assert [(h["model_week"], h["reason"]) for h in history] == [
        ("2026-02-02", "demo: first model"),  # `ml-platform demo` trains and promotes one
        ("2026-02-02", "first model"),
        ("2026-01-26", "older data"),
        ("2026-02-02", "rollback: older data was worse"),
        ("2026-02-02", "reproduce 2026-02-11"),
        ("2026-02-02", "newest good model"),
    ]
    assert history[0]["promoted_by"] == "automation"
    assert all(h["promoted_by"].startswith("manual") for h in history[1:])
