"""Pruning Dagster's history: asset-less old runs go, provenance stays; ticks by retention:."""

import time

import dagster as dg
import pytest

from ml_platform.maintenance import DAY, PRUNED_UP_TO_TAG, prune_history, prune_history_job
from ml_platform_tests.dagster_internals import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
    SensorInstigatorData,
    TickData,
    TickStatus,
)


@dg.asset
def kept() -> int:
    return 1


@dg.op
def boom() -> None:
    raise RuntimeError("fails on purpose")


@dg.job
def failing_job():
    boom()


def _sensor_with_ticks(instance: dg.DagsterInstance, ages_days: list[float]) -> InstigatorState:
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("ml_platform"), "__repository__"),
        "landing_zone_sensor",
    )
    state = InstigatorState(
        origin, InstigatorType.SENSOR, InstigatorStatus.RUNNING, SensorInstigatorData(cursor="{}")
    )
    instance.add_instigator_state(state)
    for age in ages_days:
        instance.create_tick(
            TickData(
                instigator_origin_id=state.instigator_origin_id,
                instigator_name="landing_zone_sensor",
                instigator_type=InstigatorType.SENSOR,
                status=TickStatus.SKIPPED,
                timestamp=time.time() - age * DAY,
                selector_id=state.selector_id,
            )
        )
    return state


@pytest.mark.parametrize("storage", ["instance", "pg_instance"])  # SQLite and Postgres
def test_old_ticks_and_assetless_runs_go_runs_with_asset_events_stay(storage, request):
    instance = request.getfixturevalue(storage)
    state = _sensor_with_ticks(instance, [40, 35, 1])
    failed = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    materialized = dg.materialize([kept], instance=instance)
    # A month and a half later, with 30 days of runs and ticks kept:
    report = prune_history(instance, keep_runs_days=30, now=time.time() + 45 * DAY)
    assert instance.get_run_by_id(failed.run_id) is None
    assert not instance.get_records_for_run(failed.run_id).records  # its events went too
    assert instance.get_run_by_id(materialized.run_id) is not None
    assert instance.fetch_materializations(dg.AssetKey("kept"), limit=1).records
    assert (report.runs_deleted, report.runs_kept_for_provenance) == (1, 1)
    # Ticks are dagster.yaml's retention: setting's business (test_tick_retention.py).
    assert len(instance.get_ticks(state.instigator_origin_id, state.selector_id)) == 3


def test_the_job_prunes_with_its_configured_retention(instance):
    failed = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    result = prune_history_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"prune": {"config": {"keep_runs_days": 0}}}},
    )
    assert result.success
    assert instance.get_run_by_id(failed.run_id) is None
    assert instance.get_run_by_id(result.run_id) is not None  # not finished while it ran


def test_a_prune_looks_only_at_runs_since_the_previous_one(instance):
    materialized = dg.materialize([kept], instance=instance)
    config = {"ops": {"prune": {"config": {"keep_runs_days": 0}}}}
    first = prune_history_job.execute_in_process(instance=instance, run_config=config)
    cutoff = float(instance.get_run_by_id(first.run_id).tags[PRUNED_UP_TO_TAG])
    failed = failing_job.execute_in_process(instance=instance, raise_on_error=False)

    again = prune_history_job.execute_in_process(instance=instance, run_config=config)
    assert again.success
    assert instance.get_run_by_id(failed.run_id) is None
    assert instance.get_run_by_id(materialized.run_id) is not None
    # What the second prune looked at: the runs since the first one's cutoff, not the kept run.
    (logged,) = [
        e.user_message
        for e in instance.all_logs(again.run_id)
        if "pruned Dagster history" in e.user_message
    ]
    assert "runs_kept_for_provenance=0" in logged, logged
    report = prune_history(instance, keep_runs_days=0, since=cutoff)
    assert report.runs_kept_for_provenance == 0
    assert prune_history(instance, keep_runs_days=0).runs_kept_for_provenance == 1


def test_a_prune_goes_through_every_batch_deleting_as_it_goes(instance):
    failed = [
        failing_job.execute_in_process(instance=instance, raise_on_error=False).run_id
        for _ in range(5)
    ]
    materialized = dg.materialize([kept], instance=instance)
    failed.append(failing_job.execute_in_process(instance=instance, raise_on_error=False).run_id)
    report = prune_history(instance, keep_runs_days=0, batch=2)
    assert (report.runs_deleted, report.runs_kept_for_provenance) == (6, 1)
    assert all(instance.get_run_by_id(run_id) is None for run_id in failed)
    assert instance.get_run_by_id(materialized.run_id) is not None
