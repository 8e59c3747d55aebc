"""Dagster's private names the tests use, in one place.

The tests build what Dagster builds from the platform's configuration (instance refs, run
launcher pod specs, sensor ticks, stale status) with these; Dagster has no public API for
them in 1.13. ``ml_platform_tests/test_dagster_internals.py`` imports this module, so an
upgrade that moves one fails there, by name, before the tests that use it.
"""

from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.executor.init import InitExecutorContext
from dagster._core.instance.config import ConcurrencyConfig, dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.loader import LoadingContextForTest
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.storage.compute_log_manager import ComputeLogManager
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._serdes import ConfigurableClassData

__all__ = [
    "CachingStaleStatusResolver",
    "ComputeLogManager",
    "ConcurrencyConfig",
    "ConfigurableClassData",
    "DagsterInvalidConfigError",
    "InMemoryJob",
    "InitExecutorContext",
    "InstanceRef",
    "InstigatorState",
    "InstigatorStatus",
    "InstigatorType",
    "LoadingContextForTest",
    "QueuedRunCoordinator",
    "RegisteredCodeLocationOrigin",
    "RemoteInstigatorOrigin",
    "RemoteRepositoryOrigin",
    "ResolvedRunConfig",
    "SensorInstigatorData",
    "StaleStatus",
    "TickData",
    "TickStatus",
    "dagster_instance_config",
    "process_config",
    "resolve_to_config_type",
]
