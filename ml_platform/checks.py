"""Blocking asset checks evaluated inside the asset step, one result per partition.

Dagster plans a check execution per partition when a run covers a partition range, but an
``AssetCheckResult`` from a range run records one unpartitioned result, which leaves every
planned partition "planned" forever. Yielding one partition-scoped ``AssetCheckEvaluation``
per partition closes each plan and shows per-day status in the UI. Checking in the asset
step also avoids re-reading the data the step has just written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import dagster as dg
import pandera.polars as pa
import polars as pl

ALL_PARTITIONS = "*"


def evaluations(
    context: dg.AssetExecutionContext,
    spec: dg.AssetCheckSpec,
    failures: Mapping[str, dict],
    metadata: Mapping[str, dict] | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One evaluation per partition of the run: failed where ``failures`` names it (or all, with "*").

    Ends with the check's own (empty) output, which Dagster requires of every check spec.
    """
    for partition in context.partition_keys:
        failure = failures.get(partition) or failures.get(ALL_PARTITIONS)
        meta = dict((metadata or {}).get(partition, {}))
        if failure:
            meta.update(failure)
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=failure is None,
            metadata={k: _metadata_value(v) for k, v in meta.items()},
            partition=partition,
            blocking=spec.blocking,
            severity=severity,
        )
    output_name = context.assets_def.get_output_name_for_asset_check_key(spec.key)
    yield dg.Output(None, output_name=output_name)


def contract_failures(
    schema: pa.DataFrameSchema, df: pl.DataFrame, partition_column: str
) -> dict[str, dict]:
    """Partition -> the pandera failures of its rows; frame-level failures fail every partition."""
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases.select("index", "column", "check", "failure_case")
        failures: dict[str, dict] = {}
        frame_level = cases.filter(pl.col("index").is_null())
        if frame_level.height:
            failures[ALL_PARTITIONS] = {"failures": frame_level.head(20).to_dicts()}
        partitions = df.select(pl.col(partition_column).cast(pl.Utf8).alias("partition"))
        rows = cases.filter(pl.col("index").is_not_null()).join(
            partitions.with_row_index("index").with_columns(pl.col("index").cast(pl.Int32)),
            on="index",
        )
        for (partition,), group in rows.group_by("partition"):
            failures[partition] = {"failures": group.drop("partition").head(20).to_dicts()}
        return failures
    return {}


def _metadata_value(value):
    if isinstance(value, (list, dict)):
        return dg.MetadataValue.json(value)
    return value
