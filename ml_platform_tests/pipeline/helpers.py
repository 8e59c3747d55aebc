"""Helpers that drive the real sensor and real runs on a real instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from ml_platform.rerun_passed_days import contiguous_ranges
from ml_platform.sensors import landing_zone_sensor
from ml_platform.storage.current import current_versions
from ml_platform.storage.parquet_io_manager import version_dict

# The data half's assets, as the tests materialize them.
DATA_ASSETS = [
    "raw/shipments",
    "clean/shipments",
    "clean/shipments_rejected",
    "features/shipment_features",
]


class SensorDriver:
    """Evaluates the landing sensor tick after tick, carrying its cursor like the daemon does."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, landing=None) -> None:
        self.defs = defs
        self.instance = instance
        self.landing = landing or defs.resources["landing"]
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        # Opened as a context manager, like the daemon does: resources with nested resources
        # (the GCS landing zone's GCSResource) are initialized as generators.
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"landing": self.landing},
            definitions=self.defs,
        ) as context:
            data = landing_zone_sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return list(data.run_requests or [])

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Execute a requested run in process, on the instance, as the run launcher would."""
        job = self.defs.resolve_job_def(request.job_name or "ingest_shipments")
        return job.execute_in_process(
            instance=self.instance,
            partition_key=request.partition_key,
            tags={**request.tags, "dagster/run_key": request.run_key or ""},
            raise_on_error=False,
        )


def run_range(
    defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, first: str, last: str
) -> dg.ExecuteInProcessResult:
    """One run of a job over a partition range: a single-run backfill."""
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
        raise_on_error=False,
    )


def current_version(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dict:
    """The partition's current stored version: the one its latest materialization names."""
    (version,) = current_versions(instance, dg.AssetKey.from_user_string(asset), [partition])
    return version_dict(version)


def current_frame(
    storage: Path, instance: dg.DagsterInstance, asset: str, partition: str | None
) -> pl.DataFrame:
    return pl.read_parquet(storage / current_version(instance, asset, partition)["key"])


def latest_materialization(
    instance: dg.DagsterInstance, asset: str, partition: str
) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(asset), asset_partitions=[partition]
        ),
        limit=1,
    ).records
    assert records, f"{asset} {partition} was never materialized"
    return records[0].asset_materialization


def run_failure_message(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's error, its causes, and a dg.Failure's description."""
    parts = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        error = event.step_failure_data.error
        while error is not None:
            parts.append(error.message)
            error = error.cause
        parts.append(str(event.step_failure_data.user_failure_data))
    return "\n".join(parts)


class AutomationDriver:
    """Evaluates the real automation conditions tick after tick and runs what they request."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs = defs
        self.instance = instance
        self.cursor = None

    def tick(self) -> dict[str, list[str]]:
        """Requested partitions per asset, executed as one run per asset and contiguous range."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        graph = self.defs.resolve_asset_graph()
        requested: dict[str, list[str]] = {}
        for key in graph.toposorted_asset_keys:
            partitions = sorted(p for p in result.get_requested_partitions(key) if p)
            if partitions:
                requested[key.to_user_string()] = partitions
        # Like the daemon: assets requested for the same partitions share one run per range.
        by_partitions: dict[tuple[str, ...], list[dg.AssetKey]] = {}
        for asset, partitions in requested.items():
            by_partitions.setdefault(tuple(partitions), []).append(
                dg.AssetKey.from_user_string(asset)
            )
        for partitions, keys in by_partitions.items():
            for first, last in contiguous_ranges(list(partitions)):
                self._materialize_range(keys, first, last)
        return requested

    def _materialize_range(self, keys: list[dg.AssetKey], first: str, last: str) -> None:
        job = dg.define_asset_job("automation_run", selection=keys)
        resolved = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job])).resolve_job_def(
            job.name
        )
        result = resolved.execute_in_process(
            instance=self.instance,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            raise_on_error=False,
        )
        assert result.success, run_failure_message(result)


class Platform:
    """Drives the platform's own jobs and CLI-equivalent materializations on one instance."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance = defs, instance

    def run(self, selection: list[str], *, partition=None, first=None, last=None, config=None):
        job = dg.define_asset_job(
            "test_run", selection=[dg.AssetKey.from_user_string(s) for s in selection]
        )
        resolved = dg.Definitions.merge(self.defs, dg.Definitions(jobs=[job])).resolve_job_def(
            "test_run"
        )
        tags = {}
        if first:
            tags = {
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            }
        return resolved.execute_in_process(
            instance=self.instance,
            partition_key=partition,
            tags=tags,
            run_config=config or {},
            raise_on_error=False,
        )

    def train(self, week: str, **params):
        config = {"ops": {"models__price_model": {"config": params}}} if params else None
        return self.run(["models/price_model"], partition=week, config=config)

    def promote(self, week: str | None = None, reason: str = "", by: str = "manual"):
        cfg = {"promoted_by": by, "reason": reason or "test"}
        if week:
            cfg["week"] = week
        elif not reason:
            cfg = {}
        return self.run(["models/champion"], config={"ops": {"models__champion": {"config": cfg}}})

    def predict(self, first: str, last: str):
        return self.run(
            ["predictions/price_quotes", "monitoring/prediction_quality"], first=first, last=last
        )
