"""Retention removes old versions, keeping current ones and everything provenance references."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from ml_platform.retention_job import retention_job, retention_main
from ml_platform.storage.parquet_io_manager import LocalParquetIOManager
from ml_platform.storage.retention import apply_retention, parse_age
from ml_platform_tests.storage.test_gcs_io_manager import NUMBERS, _io, _materialize, _metadata

SUMMARY = dg.AssetKey("window_summary")
END = "2026-03-01"


def _history(instance, io_manager):
    """numbers v1 for 29 days, the protected summary over them, then v2 and v3 of 2026-02-20."""
    _materialize(instance, io_manager, [NUMBERS], span=("2026-02-01", END))
    _materialize(instance, io_manager, ["window_summary"], partition=END)
    v1 = _metadata(instance, NUMBERS, "2026-02-20")["dagster/uri"]
    uris = [v1]
    for version in ("2", "3"):
        tags = {"test/version": version}
        _materialize(instance, io_manager, [NUMBERS], partition="2026-02-20", tags=tags)
        uris.append(_metadata(instance, NUMBERS, "2026-02-20")["dagster/uri"])
    return uris


def test_retention_keeps_current_and_referenced_versions(instance, gcs_bucket, gcs_client):
    io_manager = _io(gcs_bucket)
    v1, v2, v3 = _history(instance, io_manager)
    store = io_manager.store()
    later = datetime.now(UTC) + timedelta(days=2)

    young = apply_retention(store, instance, timedelta(days=30), protected=[SUMMARY], now=later)
    assert young.removed == [] and young.younger_than_cutoff > 0

    dry = apply_retention(store, instance, timedelta(days=1), [SUMMARY], dry_run=True, now=later)
    assert [r["uri"] for r in dry.removed] == [v2]
    assert store.get(v2.split("/", 3)[3].removeprefix("lake/")) is not None

    report = apply_retention(store, instance, timedelta(days=1), protected=[SUMMARY], now=later)
    assert [r["uri"] for r in report.removed] == [v2]
    kept = {k["uri"]: k["reason"] for k in report.kept}
    assert kept[v1] == f"read by {SUMMARY.to_user_string()} {END}"
    assert kept[v3] == "current version of its partition"
    assert len(kept) == 29 + 1 + 1  # the window's 29 reads, the summary itself, v3
    names = {b.name for b in gcs_client.list_blobs(gcs_bucket)}
    assert v2.removeprefix(f"gs://{gcs_bucket}/") not in names
    assert v1.removeprefix(f"gs://{gcs_bucket}/") in names
    # Without protection, the referenced v1 goes too; current versions never do.
    unprotected = apply_retention(store, instance, timedelta(days=1), protected=[], now=later)
    assert [r["uri"] for r in unprotected.removed] == [v1]


def _run_job(instance, io_manager, protect: str, raise_on_error: bool = True):
    """The retention job as launched from the UI, protecting ``protect``, age 0."""
    config = {"older_than": "0m", "protected_assets": [protect]}
    return retention_job.execute_in_process(
        instance=instance,
        resources={"lake_io_manager": io_manager},
        run_config={"ops": {"remove_old_versions": {"config": config}}},
        raise_on_error=raise_on_error,
    )


def test_retention_job_reports_what_it_removed(instance, gcs_bucket):
    io_manager = _io(gcs_bucket)
    _history(instance, io_manager)
    result = _run_job(instance, io_manager, protect="window_summary")
    assert result.success
    output = next(e for e in result.all_events if e.is_successful_output)
    meta = output.event_specific_data.metadata
    assert meta["removed"].value == 1
    assert meta["report"].value["removed"][0]["uri"].endswith(".parquet")


def test_cli_dry_run_on_the_local_deployment(instance, platform_home, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(instance.root_directory))
    io_manager = LocalParquetIOManager(root=str(platform_home.storage))
    _history(instance, io_manager)
    args = ["--older-than", "0m", "--dry-run", "--protect", "window_summary"]
    assert retention_main([*args, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True
    assert len(report["removed"]) == 1
    assert all(pl.read_parquet(p).height for p in platform_home.storage.rglob("*.parquet"))
    capsys.readouterr()
    assert retention_main(args) == 0
    out = capsys.readouterr()
    assert out.err == "" and len(out.out.splitlines()) == 1, out
    assert "would remove 1 object(s)" in out.out and "(dry run: nothing deleted)" in out.out


def test_a_misspelled_protected_asset_removes_nothing(instance, platform_home, monkeypatch, capsys):
    """A typo protected nothing: the versions it meant to keep were removed (exit 0)."""
    monkeypatch.setenv("DAGSTER_HOME", str(instance.root_directory))
    io_manager = LocalParquetIOManager(root=str(platform_home.storage))
    _history(instance, io_manager)
    before = sorted(platform_home.storage.rglob("*.parquet"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        retention_main(["--older-than", "0m", "--protect", "window_sumary"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "--protect: no asset window_sumary (did you mean window_summary?)" in err
    assert sorted(platform_home.storage.rglob("*.parquet")) == before
    # The job refuses it too (launchpad config), before removing anything.
    result = _run_job(instance, io_manager, protect="window_sumary", raise_on_error=False)
    assert not result.success
    assert sorted(platform_home.storage.rglob("*.parquet")) == before


def test_ages_are_read_or_refused_clearly():
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    with pytest.raises(ValueError, match="use e.g. 30d"):
        parse_age("thirty days")
    for unusable in ("-5d", "99999999d", "inf", "nan"):
        with pytest.raises(ValueError, match="must be from 0 to 36600 days"):
            parse_age(unusable)
    assert parse_age("36600d") == timedelta(days=36600)
