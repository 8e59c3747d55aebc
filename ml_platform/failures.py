"""Step failures that name the partitions that failed, and are not worth retrying.

A step over several days stores none of them when one fails (its output is atomic). When
the failure is deterministic (a blocking check on the data, an unreadable landed file), the
same run would fail the same way again, so the run is marked not to be retried by Dagster's
run retries (on in prod, for failures that may pass the next time), and the failure records
which partitions failed: the rerun_passed_days sensor runs the others again.
"""

from __future__ import annotations

from typing import NoReturn

import dagster as dg

# Dagster's per-run override of run_retries.retry_on_asset_or_op_failure.
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
# Failure metadata: {"asset": "<asset key>", "partitions": [the partitions that failed]}.
FAILED_PARTITIONS = "ml_platform/failed_partitions"


def no_retry(context: dg.AssetExecutionContext) -> None:
    """Marks the step's run not to be retried by Dagster's run retries."""
    context.instance.add_run_tags(context.run.run_id, {RETRY_ON_FAILURE_TAG: "false"})


def fail_partitions(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    partitions: list[str],
    description: str,
    metadata: dict | None = None,
) -> NoReturn:
    """Fails the step for ``partitions`` of ``asset_key``, deterministically (not retried)."""
    no_retry(context)
    failed = {"asset": asset_key.to_user_string(), "partitions": sorted(partitions)}
    raise dg.Failure(
        description=description,
        metadata={**(metadata or {}), FAILED_PARTITIONS: dg.MetadataValue.json(failed)},
        allow_retries=False,
    )


def failed_partitions(event: dg.DagsterEvent) -> tuple[dg.AssetKey, set[str]] | None:
    """The asset and partitions a step failure names (None: it names none)."""
    failure = event.step_failure_data.user_failure_data if event.is_step_failure else None
    value = failure.metadata.get(FAILED_PARTITIONS) if failure else None
    if value is None:
        return None
    data = value.value
    return dg.AssetKey.from_user_string(data["asset"]), set(data["partitions"])
