"""Every use of Dagster's private modules, in one place.

Dagster has no public API for these (checked against 1.13): filing an asset backfill of an
explicit set of partitions, as the UI's backfill dialog does; naming the materialization an
asset check evaluation is about (an ``AssetCheckEvaluation`` argument whose type is not
exported); and the SQLite storage classes the local instance's pooled storage extends
(ml_platform/instance_storage.py). ``ml_platform_tests/test_dagster_internals.py`` exercises each exactly as the
platform uses it, so an upgrade that moves or changes one fails there, by name, instead of
at run time.
"""

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckTarget,
)
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.event_log.schema import AssetKeyTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._core.utils import make_new_backfill_id

__all__ = [
    "AssetKeyTable",
    "AssetGraphSubset",
    "CheckTarget",
    "DagsterSqliteStorage",
    "INDEX_SHARD_NAME",
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "PartitionBackfill",
    "SqliteEventLogStorage",
    "SqliteRunStorage",
    "SqliteScheduleStorage",
    "_event_logs_directory",
    "_runs_directory",
    "_schedule_directory",
    "create_db_conn_string",
    "make_new_backfill_id",
]
