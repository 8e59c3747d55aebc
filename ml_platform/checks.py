"""Asset checks evaluated inside the asset step, one result per partition; blocking ones gate.

Dagster plans a check execution per partition when a run covers a partition range, but an
``AssetCheckResult`` from a range run records one unpartitioned result, which leaves every
planned partition "planned" forever. Yielding one partition-scoped ``AssetCheckEvaluation``
per partition closes each plan and shows per-day status in the UI. Checking in the asset
step also avoids re-reading the data the step has just written.

Blocking checks really block (:func:`gated`): they are evaluated on the computed frames
*before* any output is yielded. When one fails, every evaluation of the run is recorded and the
step raises ``dg.Failure`` without yielding an ``Output``: the IO manager stores nothing and no
materialization event is written, so each partition's previous version stays the one
downstream reads, for the whole range of the run. (Dagster's own blocking-check handling fails
the step only after the outputs were stored and materialized.)

Each evaluation names a target materialization: Dagster counts a partition's check as passed
or failed only while its target is the partition's latest materialization, and that state is
what ``AutomationCondition.all_deps_blocking_checks_passed()`` reads. A successful run's
evaluations target the materializations it wrote. A failed run's evaluations target each
partition's current (previous, unchanged) materialization: partitions that passed keep a
passed state, so a failed range does not stall automation downstream of its good days, while
a failed partition shows failed and automation downstream of it waits until a good version
is stored. (With no target Dagster would clear the state: unknown, and blocking, for all.)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from ml_platform.dagster_internals import CheckTarget as Target
from ml_platform.failures import no_retry

if TYPE_CHECKING:
    import pandera.polars as pa

ALL_PARTITIONS = "*"


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict over a run: failures and figures per partition ("*" = every one)."""

    spec: dg.AssetCheckSpec
    failures: Mapping[str, dict]
    figures: Mapping[str, dict] = field(default_factory=dict)
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR

    def failure(self, partition: str) -> dict | None:
        return self.failures.get(partition) or self.failures.get(ALL_PARTITIONS)

    @property
    def blocks(self) -> bool:
        return self.spec.blocking and self.severity == dg.AssetCheckSeverity.ERROR


def gated(
    context: dg.AssetExecutionContext,
    outcomes: Iterable[CheckOutcome],
    outputs: Iterable[dg.Output],
    headline: str | None = None,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """The step's events: ``outputs`` and the checks' evaluations, unless a blocking check failed.

    On a blocking failure: every evaluation (all partitions, passed or failed) is yielded, then
    ``dg.Failure`` is raised naming, one line per partition, the check and its problem; no
    ``outputs`` are yielded, so nothing is stored or materialized.
    """
    outcomes = list(outcomes)
    problems = [
        f"{partition} {outcome.spec.asset_key.to_user_string()} {outcome.spec.name}: "
        f"{_problem(outcome.failure(partition))}"
        for partition in context.partition_keys
        for outcome in outcomes
        if outcome.blocks and outcome.failure(partition)
    ]
    if problems:
        for outcome in outcomes:
            yield from _evaluations(
                context, outcome, targets=_current_materializations(context, outcome)
            )
        lines = [headline] if headline else []
        lines.append(
            f"{len(problems)} blocking check failure(s); nothing was stored, the previous "
            "version of every partition of this run stays current:"
        )
        # The same data fails the same check: Dagster's run retries (on in prod, for failures
        # that may pass the next time) would repeat this run for nothing. The days that passed
        # are run again by the rerun_passed_days sensor instead.
        no_retry(context)
        raise dg.Failure(
            description="\n".join([*lines, *problems]),
            metadata={"failed_checks": dg.MetadataValue.json(problems)},
            allow_retries=False,
        )
    yield from outputs
    for outcome in outcomes:
        yield from _evaluations(
            context, outcome, targets=_current_materializations(context, outcome)
        )
        yield _check_output(context, outcome.spec)


def evaluations(
    context: dg.AssetExecutionContext,
    spec: dg.AssetCheckSpec,
    failures: Mapping[str, dict],
    metadata: Mapping[str, dict] | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One evaluation per partition of the run, yielded after the asset's output was stored.

    Each targets the materialization this run wrote for its partition. Ends with the check's
    own (empty) output, which Dagster requires of every check spec.
    """
    outcome = CheckOutcome(spec, failures, metadata or {}, severity)
    yield from _evaluations(context, outcome, targets=_current_materializations(context, outcome))
    yield _check_output(context, spec)


def _evaluations(
    context: dg.AssetExecutionContext,
    outcome: CheckOutcome,
    targets: Mapping[str | None, Target],
) -> Iterator[dg.AssetCheckEvaluation]:
    spec = outcome.spec
    for partition in context.partition_keys:
        failure = outcome.failure(partition)
        meta = dict(outcome.figures.get(partition, {}))
        if failure:
            meta.update(failure)
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=failure is None,
            metadata={k: _metadata_value(v) for k, v in meta.items()},
            partition=partition,
            target_materialization_data=targets.get(partition),
            blocking=spec.blocking,
            severity=outcome.severity,
        )


def _check_output(context: dg.AssetExecutionContext, spec: dg.AssetCheckSpec) -> dg.Output:
    return dg.Output(
        None, output_name=context.assets_def.get_output_name_for_asset_check_key(spec.key)
    )


def _current_materializations(
    context: dg.AssetExecutionContext, outcome: CheckOutcome
) -> dict[str | None, Target]:
    """Partition -> its latest materialization: two queries for the whole range.

    After the outputs were stored these are the ones this run wrote; in a failed run they are
    the previous versions, which stay current.
    """
    from ml_platform.storage.current import latest_storage_ids, records_by_storage_id

    key = outcome.spec.asset_key
    latest = latest_storage_ids(context.instance, key, set(context.partition_keys))
    records = records_by_storage_id(context.instance, key, list(latest.values()))
    return {
        r.partition_key: Target(storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp)
        for r in records
    }


def contract_failures(
    schema: pa.DataFrameSchema, df: pl.DataFrame, partition_column: str
) -> dict[str, dict]:
    """Partition -> the pandera failures of its rows; the frame is validated once.

    The check is per partition, so is its judgement: each failing row counts against its own
    partition, and rules over several rows are stated per partition in the schemas (ids
    unique within a day), so a day passes or fails alike alone, in a range or in any backfill
    chunk. Frame-level failures (a missing column, a wrong type) count against every
    partition. One validation, not one per partition: pandera's cost is mostly per check
    and call (about 35 ms a call here), not per row.
    """
    partitions = df.get_column(partition_column)  # cast to text per key, not per row
    keys = partitions.unique(maintain_order=True).cast(pl.Utf8).to_list()
    cases = _failure_cases(schema, df)
    if cases is None:
        return {}
    if not keys:  # no rows: only frame-level rules (columns, types) can fail
        return {ALL_PARTITIONS: _contract_failure(cases)}
    # Each failing row's partition, and its index within that partition (what it was when
    # every partition was validated alone, and what a reader of one partition sees).
    rows = pl.DataFrame(
        {
            "index": pl.int_range(df.height, dtype=pl.Int64, eager=True),
            "partition": partitions,
        }
    ).with_columns(row=pl.int_range(pl.len(), dtype=pl.Int64).over("partition"))
    cases = (
        cases.with_columns(pl.col("index").cast(pl.Int64))
        .join(rows, on="index", how="left", maintain_order="left")
        .with_columns(index=pl.col("row"), partition=pl.col("partition").cast(pl.Utf8))
        .drop("row")
    )
    failures = {}
    for key in keys:
        own = cases.filter(pl.col("partition").is_null() | (pl.col("partition") == key))
        if own.height:
            failures[key] = _contract_failure(own.drop("partition"))
    return failures


def _failure_cases(schema: pa.DataFrameSchema, df: pl.DataFrame) -> pl.DataFrame | None:
    """pandera's failure cases (index, column, check, failure_case), or None when all pass."""
    import pandera.polars as pa  # imported when a contract is first judged (see schemas)

    duplicates = [
        _duplicate_cases(df, subset, schema.name) for subset in _unique_subsets(schema, df)
    ]
    frame_level, column_level = pl.DataFrame(), pl.DataFrame()
    try:
        _without_uniqueness(schema).validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        found = err.failure_cases
        by_frame = pl.col("schema_context") == "DataFrameSchema"
        frame_level = found.filter(by_frame).select(_CASE_COLUMNS)
        column_level = found.filter(~by_frame).select(_CASE_COLUMNS)
    # In pandera's order: the frame's own rules (columns present, then uniqueness), then
    # each column's checks.
    cases = [c for c in [frame_level, *duplicates, column_level] if c.height]
    return pl.concat(cases, how="vertical_relaxed") if cases else None


# Joint uniqueness (a schema's ``unique=``) is judged here, not by pandera: pandera's polars
# backend hashes the key columns eagerly, then collects the whole frame again with a result
# column. On a 5-day chunk of clean rows (1M rows) that was 0.11 s of the contract's 0.15 s
# and 280 MB at the step's peak; a group-by over the key columns takes 45 ms and 130 MB, and
# the rows of a duplicate are looked up only when there is one.
_CASE_COLUMNS = ["index", "column", "check", "failure_case"]
_UNIQUENESS = "multiple_fields_uniqueness"  # pandera's name for the rule, kept for readers


def _unique_subsets(schema: pa.DataFrameSchema, df: pl.DataFrame) -> list[list[str]]:
    """The schema's jointly unique column sets, limited to columns the frame has (as pandera)."""
    if not _judged_here(schema):
        return []
    unique = schema.unique or []
    subsets = [unique] if all(isinstance(c, str) for c in unique) else unique
    present = [[c for c in subset if c in df.columns] for subset in subsets]
    return [subset for subset in present if subset]


def _duplicate_cases(df: pl.DataFrame, subset: list[str], schema_name: str | None) -> pl.DataFrame:
    """One case per row whose values in ``subset`` occur more than once, as pandera reports it.

    Every repeated row: pandera's polars backend reports all of them whatever a schema's
    ``report_duplicates`` says.
    """
    count = "__ml_platform_repeats"  # not a key column's name, whatever the schema's are
    repeated = df.lazy().group_by(subset).len(count).filter(pl.col(count) > 1).drop(count)
    repeated = repeated.collect()
    if not repeated.height:
        return pl.DataFrame()
    # nulls_equal: a null key repeats a null key, as in pandera (polars' is_duplicated)
    rows = df.with_row_index("index").join(
        repeated, on=subset, how="semi", nulls_equal=True, maintain_order="left"
    )
    return rows.select(
        pl.col("index").cast(pl.Int32),
        pl.lit(schema_name, pl.Utf8).alias("column"),  # pandera names the schema here
        pl.lit(_UNIQUENESS).alias("check"),
        pl.struct(pl.all().exclude("index")).struct.json_encode().alias("failure_case"),
    )


def _judged_here(schema: pa.DataFrameSchema) -> bool:
    """Whether the frame as given is what pandera would judge uniqueness on.

    A schema that coerces or filters columns judges the coerced frame; its uniqueness stays
    with pandera (none of the platform's contracts does either).
    """
    coerces = schema.coerce or any(getattr(c, "coerce", False) for c in schema.columns.values())
    return bool(schema.unique) and not coerces and schema.strict != "filter"


def _without_uniqueness(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """The same schema with no ``unique=`` rule (a shallow copy: microseconds per call)."""
    if not _judged_here(schema):
        return schema
    stripped = copy.copy(schema)
    stripped.unique = None
    return stripped


def _contract_failure(cases: pl.DataFrame) -> dict:
    broken = cases.select(
        pl.format("{}: {}", pl.col("column").fill_null("frame"), pl.col("check")).alias("rule")
    )["rule"].unique(maintain_order=True)
    return {
        "problem": f"{cases.height} contract failure(s): {', '.join(broken.head(5).to_list())}",
        "failures": cases.head(20).to_dicts(),
    }


def _problem(failure: dict | None) -> str:
    return str((failure or {}).get("problem", "failed"))


def _metadata_value(value):
    if isinstance(value, (list, dict)):
        return dg.MetadataValue.json(value)
    return value
