"""Data that fails a blocking check is never stored: the previous good version stays current.

A good day is re-dropped with 40 % bad rows (row_count_sanity allows 20 %). The clean run fails
with one line per failed partition, every check evaluation of the run is recorded per partition
(none left "planned"), nothing is materialized (a range run is all or nothing), features built
afterwards read the good version, and the next automation evaluation requests nothing downstream.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from ml_platform.demo.generator import GeneratorConfig, generate_drops, write_drop
from ml_platform_tests.pipeline.helpers import (
    latest_materialization,
    run_failure_message,
    run_range,
)

FIRST, DAY, LAST = "2026-01-01", "2026-01-02", "2026-01-03"
DAYS = [FIRST, DAY, LAST]
GOOD = GeneratorConfig(rows_per_day=300, files_per_drop=1, bad_row_share=0.02)
FIXED = GeneratorConfig(rows_per_day=300, files_per_drop=1, bad_row_share=0.05)
BAD = GeneratorConfig(rows_per_day=300, files_per_drop=1, bad_row_share=0.4)
CLEAN = dg.AssetKey(["clean", "shipments"])
FEATURES = dg.AssetKey(["features", "shipment_features"])
CHECKS = ("schema_contract", "row_count_sanity")
CLEAN_ASSETS = ["clean/shipments", "clean/shipments_rejected"]


def _storage_ids(instance, asset: str) -> dict[str, int]:
    key = dg.AssetKey.from_user_string(asset)
    return {
        day: instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
        )
        .records[0]
        .storage_id
        for day in DAYS
    }


def _hashes(instance, asset: str) -> dict[str, str]:
    return {
        day: latest_materialization(instance, asset, day).metadata["ml_platform/content_hash"].value
        for day in DAYS
    }


def _check_records(instance, asset_key: dg.AssetKey, run_id: str) -> dict[str, dict[str, str]]:
    """check name -> partition -> status, for one run's executions of the asset's checks."""
    out = {}
    for name in CHECKS:
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(asset_key, name), limit=100
        )
        out[name] = {h.partition: h.status.value for h in history if h.run_id == run_id}
    return out


def _requested(defs, instance, cursor):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    requested = {
        key.to_user_string(): sorted(p for p in result.get_requested_partitions(key) if p)
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if result.get_requested_partitions(key)
    }
    return requested, result.cursor


def _run(defs, instance, keys: list[str], partitions: list[str]):
    job = dg.define_asset_job(
        "blocking_test", selection=[dg.AssetKey.from_user_string(k) for k in keys]
    )
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
    return resolved.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": partitions[0],
            "dagster/asset_partition_range_end": partitions[-1],
        },
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    from ml_platform_tests.fixtures.dagster import PlatformHome, local_platform

    home = PlatformHome(tmp_path_factory.mktemp("blocking") / "home")
    with local_platform(home.root) as (defs, instance):
        generate_drops(home.landing, date(2026, 1, 1), 3, GOOD)
        assert run_range(defs, instance, "data_pipeline", FIRST, LAST).success
        good = {
            "clean": _storage_ids(instance, "clean/shipments"),
            "features": _hashes(instance, "features/shipment_features"),
        }
        _, cursor = _requested(defs, instance, None)  # the daemon's baseline tick

        # The bad re-drop arrives and the sensor's raw run reads it.
        write_drop(home.landing, date.fromisoformat(DAY), BAD)
        assert run_range(defs, instance, "ingest_shipments", DAY, DAY).success

        # A backfill of clean and features over the whole range: all or nothing.
        range_run = _run(defs, instance, [*CLEAN_ASSETS, "features/shipment_features"], DAYS)

        # Automation sees the changed raw day: it runs clean (which fails) and the features.
        tick, cursor = _requested(defs, instance, cursor)
        runs = {
            asset: _run(defs, instance, keys, tick[asset]) if asset in tick else None
            for asset, keys in (
                ("clean/shipments", CLEAN_ASSETS),
                ("features/shipment_features", ["features/shipment_features"]),
            )
        }
        after, cursor = _requested(defs, instance, cursor)
        clean_after_failures = _storage_ids(instance, "clean/shipments")
        features_after_failures = _hashes(instance, "features/shipment_features")

        # A changed neighbour day is stored; the feature day whose window also holds the
        # failed day must wait for it.
        write_drop(home.landing, date.fromisoformat(LAST), FIXED)
        assert _run(defs, instance, ["raw/shipments", *CLEAN_ASSETS], [LAST]).success
        neighbour, cursor = _requested(defs, instance, cursor)

        # A corrected re-drop passes its checks and flows downstream again.
        write_drop(home.landing, date.fromisoformat(DAY), FIXED)
        fixed_run = _run(defs, instance, ["raw/shipments", *CLEAN_ASSETS], [DAY])
        fixed, cursor = _requested(defs, instance, cursor)
        yield {
            "defs": defs,
            "instance": instance,
            "good": good,
            "range_run": range_run,
            "tick": tick,
            "runs": runs,
            "after": after,
            "clean_after_failures": clean_after_failures,
            "features_after_failures": features_after_failures,
            "neighbour": neighbour,
            "fixed_run": fixed_run,
            "fixed": fixed,
        }


def test_a_range_run_with_a_failed_blocking_check_fails_naming_each_partition(story):
    result = story["range_run"]
    assert not result.success
    message = run_failure_message(result)
    lines = [line for line in message.splitlines() if line.startswith(DAY)]
    assert any("clean/shipments row_count_sanity" in line for line in lines), message
    assert not any(line.startswith((FIRST, LAST)) for line in message.splitlines()), message
    # Nothing was materialized in the failed run, for any partition of its range.
    instance = story["instance"]
    assert story["clean_after_failures"] == story["good"]["clean"]
    materialized = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    assert materialized == []


def test_every_check_evaluation_of_the_failed_run_is_recorded_per_partition(story):
    records = _check_records(story["instance"], CLEAN, story["range_run"].run_id)
    assert records["row_count_sanity"] == {
        FIRST: "SUCCEEDED",
        DAY: "FAILED",
        LAST: "SUCCEEDED",
    }
    assert records["schema_contract"] == dict.fromkeys(DAYS, "SUCCEEDED")


def test_the_previous_good_clean_version_stays_current(story):
    instance = story["instance"]
    assert story["clean_after_failures"] == story["good"]["clean"]
    clean_run = story["runs"]["clean/shipments"]
    assert clean_run is not None and not clean_run.success
    assert _check_records(instance, CLEAN, clean_run.run_id)["row_count_sanity"] == {DAY: "FAILED"}


def test_features_built_afterwards_read_the_good_version(story):
    features_run = story["runs"]["features/shipment_features"]
    assert features_run is not None and features_run.success
    assert story["features_after_failures"] == story["good"]["features"]


def test_automation_requests_nothing_downstream_of_the_failed_day(story):
    assert story["tick"]["clean/shipments"] == [DAY]
    assert story["after"] == {}
    # Features of LAST read the failed DAY too: not refreshed until DAY passes its checks.
    assert story["neighbour"] == {}


def test_a_corrected_redrop_passes_and_flows_downstream_again(story):
    assert story["fixed_run"].success
    records = _check_records(story["instance"], CLEAN, story["fixed_run"].run_id)
    assert records == {name: {DAY: "SUCCEEDED"} for name in CHECKS}
    # The checks passed on the current materialization, so the features follow it.
    assert story["fixed"] == {"features/shipment_features": [DAY, LAST]}
