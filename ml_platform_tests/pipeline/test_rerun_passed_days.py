"""A day that fails a blocking check no longer keeps the other days of its run missing.

The landing sensor ingests three drops one run each; the next automation tick finds all
three days ready and requests clean for them, which runs as one range run. Day 3's drop is
half bad rows, so its row-count check fails and the run stores nothing. The rerun sensor,
ticked on that failure, requests days 1 and 2 again without day 3; once they are stored,
automation builds their features.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from ml_platform.demo.generator import GeneratorConfig, write_drop
from ml_platform.rerun_passed_days import RERUN_OF_TAG, rerun_passed_days
from ml_platform_tests.pipeline.helpers import AutomationDriver, Platform, run_failure_message

RAW = dg.AssetKey(["raw", "shipments"])
CLEAN = dg.AssetKey(["clean", "shipments"])
REJECTED = dg.AssetKey(["clean", "shipments_rejected"])
FEATURES = dg.AssetKey(["features", "shipment_features"])
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def _range_run(defs, instance, selection: list, first: str, last: str):
    """One run of ``selection`` over first..last, as a backfill chunk or automation runs it."""
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=selection,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        raise_on_error=False,
    )


def _launch(defs, instance, request: dg.RunRequest):
    """The sensor's request run as the daemon would launch it."""
    return defs.resolve_job_def(rerun_passed_days.job_name).execute_in_process(
        instance=instance,
        asset_selection=list(request.asset_selection),
        tags={**request.tags, "dagster/run_key": request.run_key},
        raise_on_error=False,
    )


def _tick_rerun_sensor(defs, instance, failed_run_id: str, run_id: str | None = None):
    """The sensor on the failure of ``failed_run_id`` (as run ``run_id``, when given)."""
    run = instance.get_run_by_id(run_id or failed_run_id)
    (failure,) = instance.get_records_for_run(
        failed_run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    context = dg.build_run_status_sensor_context(
        sensor_name=rerun_passed_days.name,
        dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        repository_def=defs.get_repository_def(),
    ).for_run_failure()
    return rerun_passed_days(context)


def test_the_days_that_passed_are_run_again_alone(tmp_path):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path / "home"
    with local_platform(home) as (defs, instance):
        for day in DAYS:
            bad_share = 0.5 if day == DAYS[-1] else 0.0
            config = GeneratorConfig(rows_per_day=200, bad_row_share=bad_share)
            write_drop(home / "landing", date.fromisoformat(day), config)
        automation = AutomationDriver(defs, instance)
        automation.tick()  # the daemon's first evaluation: nothing to do yet
        p = Platform(defs, instance)
        for day in DAYS:  # the landing sensor: one raw run per drop
            assert p.run(["raw/shipments"], partition=day).success

        requested = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=automation.cursor
        )
        automation.cursor = requested.cursor
        assert sorted(requested.get_requested_partitions(CLEAN)) == DAYS
        # Raw again too, as a backfill of the data half would: its step stores all three days
        # before clean fails, so the rerun leaves it out.
        failed = _range_run(defs, instance, [RAW, CLEAN, REJECTED], DAYS[0], DAYS[-1])
        assert not failed.success
        assert f"{DAYS[-1]} clean/shipments row_count_sanity" in run_failure_message(failed)
        assert instance.get_materialized_partitions(CLEAN) == set()
        # Dagster's run retries (on in prod) would fail the same way: this run is not retried.
        tags = instance.get_run_by_id(failed.run_id).tags
        assert tags["dagster/retry_on_asset_or_op_failure"] == "false"
        assert automation.tick() == {}  # the daemon's next tick: the failure requests nothing

        # A run Dagster is about to retry (its worker died) is left to the retry.
        instance.add_run_tags(failed.run_id, {"dagster/will_retry": "true"})
        assert _tick_rerun_sensor(defs, instance, failed.run_id) is None
        instance.add_run_tags(failed.run_id, {"dagster/will_retry": "false"})

        (request,) = _tick_rerun_sensor(defs, instance, failed.run_id)
        assert sorted(request.asset_selection) == sorted([CLEAN, REJECTED])
        assert request.tags["dagster/asset_partition_range_start"] == DAYS[0]
        assert request.tags["dagster/asset_partition_range_end"] == DAYS[1]
        assert request.tags[RERUN_OF_TAG] == failed.run_id
        rerun = _launch(defs, instance, request)
        assert rerun.success, run_failure_message(rerun)
        assert instance.get_materialized_partitions(CLEAN) == set(DAYS[:2])
        # Once: had the rerun failed too, it would not be run again.
        assert _tick_rerun_sensor(defs, instance, failed.run_id, run_id=rerun.run_id) is None

        # Automation takes it from there; day 3 waits for a new drop.
        requested = automation.tick()
        assert requested.get("features/shipment_features") == DAYS[:2]
        assert instance.get_materialized_partitions(FEATURES) == set(DAYS[:2])

        # A range run that failed for another reason (day 3 has no clean data to read) is
        # left to whoever runs it: nothing is requested.
        other = _range_run(defs, instance, [FEATURES], DAYS[1], DAYS[2])
        assert not other.success
        # None, not a SkipReason: Dagster would end the tick there, before later failed runs.
        assert _tick_rerun_sensor(defs, instance, other.run_id) is None


def test_the_days_of_a_raw_range_whose_drops_were_read_are_run_again_alone(tmp_path):
    from ml_platform_tests.fixtures.dagster import local_platform

    home = tmp_path / "home"
    with local_platform(home) as (defs, instance):
        for day in DAYS:
            write_drop(home / "landing", date.fromisoformat(day), GeneratorConfig(rows_per_day=200))
        # Day 2's drop holds a file that cannot be read: the same on every attempt.
        (home / "landing" / "shipments" / DAYS[1] / "part-bad.parquet").write_bytes(b"not parquet")
        automation = AutomationDriver(defs, instance)
        automation.tick()  # the daemon's first evaluation: nothing to do yet

        failed = _range_run(defs, instance, [RAW], DAYS[0], DAYS[-1])
        assert not failed.success
        assert f"{DAYS[1]}/part-bad.parquet" in run_failure_message(failed)
        assert instance.get_materialized_partitions(RAW) == set()
        tags = instance.get_run_by_id(failed.run_id).tags
        assert tags["dagster/retry_on_asset_or_op_failure"] == "false"

        requests = _tick_rerun_sensor(defs, instance, failed.run_id)
        assert [
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in requests
        ] == [(DAYS[0], DAYS[0]), (DAYS[2], DAYS[2])]
        for request in requests:
            assert list(request.asset_selection) == [RAW]
            rerun = _launch(defs, instance, request)
            assert rerun.success, run_failure_message(rerun)
        assert instance.get_materialized_partitions(RAW) == {DAYS[0], DAYS[2]}

        # Automation builds clean for the two days; day 2 waits for a readable drop.
        requested = automation.tick()
        assert requested.get("clean/shipments") == [DAYS[0], DAYS[2]]
