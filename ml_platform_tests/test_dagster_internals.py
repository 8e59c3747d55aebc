"""The private Dagster APIs the platform uses (ml_platform/dagster_internals.py), as it uses them.

If this fails after a Dagster upgrade, the named API moved or changed: adapt
ml_platform/dagster_internals.py and its users before anything else.
"""

import dagster as dg

from ml_platform.backfills import file_backfill
from ml_platform.dagster_internals import CheckTarget

daily = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=daily)
def days() -> None: ...


@dg.asset
def summary() -> None: ...


def test_a_backfill_of_exact_partitions_is_filed_for_the_daemon(instance):
    graph = dg.Definitions(assets=[days, summary]).resolve_asset_graph()
    backfill_id = file_backfill(
        instance,
        graph,
        {days.key: ["2026-01-02", "2026-01-05"]},
        unpartitioned=[summary.key],
        title="exact",
    )
    backfill = instance.get_backfill(backfill_id)
    assert backfill.title == "exact"
    subset = backfill.asset_backfill_data.target_subset
    assert set(subset.get_partitions_subset(days.key).get_partition_keys()) == {
        "2026-01-02",
        "2026-01-05",
    }
    assert subset.non_partitioned_asset_keys == {summary.key}


def test_a_check_evaluation_names_its_target_materialization(instance):
    evaluation = dg.AssetCheckEvaluation(
        asset_key=days.key,
        check_name="c",
        passed=True,
        partition="2026-01-01",
        target_materialization_data=CheckTarget(storage_id=7, run_id="r", timestamp=1.0),
    )
    assert evaluation.target_materialization_data.storage_id == 7


def test_the_sqlite_storage_internals_the_pooled_storage_overrides(tmp_path):
    """ml_platform/instance_storage.py replaces _connect and the event log it builds."""
    from ml_platform.dagster_internals import (
        INDEX_SHARD_NAME,
        DagsterSqliteStorage,
        SqliteEventLogStorage,
    )

    storage = DagsterSqliteStorage(str(tmp_path))
    events = storage._event_log_storage  # noqa: SLF001
    assert isinstance(events, SqliteEventLogStorage)
    names = ("_connect", "_initdb", "conn_string_for_shard", "path_for_shard", "_base_dir")
    for name in names + ("has_table", "_has_asset_key_col_on_connection", "get_all_run_ids"):
        assert hasattr(events, name), name
    assert events.path_for_shard(INDEX_SHARD_NAME).endswith("index.db")
    assert isinstance(events._initialized_dbs, set)  # noqa: SLF001
    assert hasattr(events._db_lock, "acquire")  # noqa: SLF001
    with events._connect("index") as conn:  # noqa: SLF001 - a transaction, as overridden
        assert conn.in_transaction()


def test_the_sqlite_storage_constructor_the_pooled_storage_replaces(tmp_path, monkeypatch):
    """PooledSqliteStorage sets the attributes Dagster's own constructor sets, to storages of
    the same classes on the same databases, from the private helpers it imports."""
    from ml_platform.dagster_internals import DagsterSqliteStorage
    from ml_platform.instance_storage import PooledSqliteStorage

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    plain = DagsterSqliteStorage(str(tmp_path / "home"))
    ours = PooledSqliteStorage(str(tmp_path / "home"))  # opens what Dagster created, directly
    assert vars(ours).keys() == vars(plain).keys()
    for name in ("_run_storage", "_schedule_storage"):
        assert type(getattr(ours, name)) is type(getattr(plain, name)), name
    assert ours._run_storage._conn_string == plain._run_storage._conn_string  # noqa: SLF001
    assert ours._schedule_storage._conn_string == plain._schedule_storage._conn_string  # noqa: SLF001
    assert ours.event_log_storage._base_dir == plain.event_log_storage._base_dir  # noqa: SLF001


def test_the_private_names_the_tests_use_still_exist():
    """Imported here first: a Dagster upgrade that moved one fails by name, in one place."""
    import ml_platform_tests.dagster_internals as test_internals

    assert [n for n in test_internals.__all__ if getattr(test_internals, n, None) is None] == []


def test_private_dagster_modules_are_imported_in_these_two_modules_only():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    allowed = {
        root / "ml_platform" / "dagster_internals.py",
        Path(__file__).with_name("dagster_internals.py"),
    }
    private = re.compile(r"^\s*(from|import)\s+dagster\._", re.M)
    offenders = [
        str(path.relative_to(root))
        for folder in ("ml_platform", "ml_platform_tests", "bench", "scripts")
        for path in (root / folder).rglob("*.py")
        if path not in allowed and private.search(path.read_text())
    ]
    assert offenders == []
