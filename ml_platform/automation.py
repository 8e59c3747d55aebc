"""Automation conditions used by the asset graph.

Two of them are custom Python conditions (:class:`ContentChanged`,
:class:`AfterChampionTrainingWindow`). Dagster cannot serialize those to its daemon, so the
automation sensor must evaluate them in the code server (``use_user_code_server=True``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import dagster as dg

CONTENT_HASH = "ml_platform/content_hash"
TRAINING_WINDOW = "ml_platform/training_window"


class ContentChanged(dg.AutomationCondition):
    """True for partitions whose latest materialization holds content other than before.

    "Before" is the partition's latest materialization as of the previous evaluation (storage
    id at most the previous tick's ``max_storage_id``), compared by the per-partition content
    hash the IO managers record (``ml_platform/content_hash``). A partition with no earlier
    materialization, or without a recorded hash, counts as changed.

    Why not ``data_version_changed()``: a range run gives every partition of an output one
    ``dagster/data_version`` (the whole range's), so it cannot tell which day of a range
    changed. Comparing with what was current at the previous evaluation rather than with the
    previous materialization: two materializations between ticks that end where they started
    (A -> B -> A) change nothing downstream reads.

    Meant after ``newly_updated()`` (an AND narrows its candidates to the updated partitions):
    one query per asset fetches the newest records of just those partitions; a partition
    whose record from before the previous tick is not among them costs one more query for
    that record alone.
    """

    @property
    def name(self) -> str:
        return "content_changed"

    @property
    def description(self) -> str:
        return "Latest materialization's content hash differs from the previous evaluation's"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        cutoff = context.previous_max_storage_id
        if candidates.is_empty or cutoff is None or not isinstance(context.key, dg.AssetKey):
            return dg.AutomationResult(context=context, true_subset=candidates)
        instance = context.asset_graph_view.instance
        if not candidates.is_partitioned:
            changed = _changed_partitions(instance, context.key, [None], cutoff)
            return dg.AutomationResult(
                context=context,
                true_subset=candidates if changed else context.get_empty_subset(),
            )
        partitions = sorted(candidates.expensively_compute_partition_keys())
        changed = _changed_partitions(instance, context.key, partitions, cutoff)
        return dg.AutomationResult(
            context=context,
            true_subset=candidates.compute_intersection_with_partition_keys(changed),
        )


def _changed_partitions(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str | None], cutoff: int
) -> set[str | None]:
    wanted = set(partitions)
    latest: dict[str | None, str | None] = {}
    before: dict[str | None, str | None] = {}
    page = instance.fetch_materializations(
        _records_of(key, partitions), limit=2 * len(partitions) + 10
    )
    for record in page.records:
        partition = record.partition_key
        if partition not in wanted or partition in before:
            continue
        latest.setdefault(partition, _content(record))
        if record.storage_id <= cutoff:
            before[partition] = _content(record)
    if page.has_more:
        # The newest records did not reach back to the previous tick for these partitions
        # (materialized many times since, or for the first time): one query each for just
        # the record needed. Paging on instead read, for a partition new since the last
        # tick, every older record of every candidate, each with its inputs metadata.
        for partition in wanted - before.keys():
            if partition not in latest:
                newest = instance.fetch_materializations(_records_of(key, [partition]), limit=1)
                latest[partition] = _content(newest.records[0]) if newest.records else None
            older = instance.fetch_materializations(
                _records_of(key, [partition], before_storage_id=cutoff + 1), limit=1
            )
            if older.records:
                before[partition] = _content(older.records[0])
    return {p for p in wanted if latest.get(p) is None or p not in before or before[p] != latest[p]}


def _records_of(key: dg.AssetKey, partitions: list[str | None], **bounds) -> dg.AssetRecordsFilter:
    return dg.AssetRecordsFilter(
        asset_key=key, asset_partitions=None if partitions == [None] else partitions, **bounds
    )


def _content(record) -> str | None:
    value = record.asset_materialization.metadata.get(CONTENT_HASH)
    return value.value if value is not None else None


class AfterChampionTrainingWindow(dg.AutomationCondition):
    """True for days after the live champion's training window (false while there is none).

    The window is the one the champion's materialization records (``ml_platform/training_window``,
    copied from its price_model); older promotions without it fall back to the last day of the
    model's week.
    """

    @property
    def name(self) -> str:
        return "after_champion_training_window"

    @property
    def description(self) -> str:
        return "Day is after the live champion's training window"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        if candidates.is_empty or not candidates.is_partitioned:
            return dg.AutomationResult(context=context, true_subset=context.get_empty_subset())
        end = champion_training_window_end(context.asset_graph_view.instance)
        if end is None:
            return dg.AutomationResult(context=context, true_subset=context.get_empty_subset())
        after = _days_after(candidates.expensively_compute_partition_keys(), end)
        return dg.AutomationResult(
            context=context, true_subset=candidates.compute_intersection_with_partition_keys(after)
        )


def champion_training_window_end(instance: dg.DagsterInstance) -> date | None:
    """The last day the live champion was trained on, from its latest materialization."""
    from ml_platform.provenance.champion import CHAMPION_KEY, PROMOTION_METADATA

    records = instance.fetch_materializations(CHAMPION_KEY, limit=1).records
    if not records:
        return None
    meta = records[0].asset_materialization.metadata
    if TRAINING_WINDOW in meta:
        return date.fromisoformat(meta[TRAINING_WINDOW].value["last_day"])
    if PROMOTION_METADATA in meta:
        return date.fromisoformat(meta[PROMOTION_METADATA].value["model_week"]) + timedelta(days=6)
    return None


def _days_after(partitions: Iterable[str], end: date) -> set[str]:
    return {p for p in partitions if date.fromisoformat(p) > end}


def content_updated() -> dg.AutomationCondition:
    """Newly materialized with new content, by a run that did not also target the asset."""
    return (
        dg.AutomationCondition.newly_updated()
        & ~dg.AutomationCondition.executed_with_root_target()
        & ContentChanged()
    ).with_label("newly_updated_with_new_content")


def any_deps_changed() -> dg.AutomationCondition:
    """``any_deps_updated()``, counting only updates that changed a partition's content.

    ``will_be_requested()`` stays: a changed raw day cascades clean -> features -> quotes in
    one tick.
    """
    return dg.AutomationCondition.any_deps_match(
        content_updated() | dg.AutomationCondition.will_be_requested()
    ).with_label("any_deps_changed")


def deps_blocking_checks_passed() -> dg.AutomationCondition:
    """No dependency partition this partition reads has failed a blocking check.

    What ``AutomationCondition.all_deps_blocking_checks_passed()`` promises, built so that it
    holds here:

    - ``all_deps_match`` maps the matching dependency partitions down, so with a window mapping
      (features read 29 clean days) one passing day would let a feature day through even when
      another day of its window failed. Negating ``any_deps_match`` of a failure blocks a
      feature day when *any* day of its window failed.
    - Its ``will_be_requested()`` is asked of the check, which is evaluated inside its asset's
      step and never requested on its own; here the requested *asset* stands in for its checks
      (when they fail in that run the asset stores nothing: ml_platform.checks.gated).
    - A check that failed on the current materialization blocks; one never evaluated on it
      (data stored before the checks targeted their materialization) does not.
    """
    failed = dg.AutomationCondition.any_checks_match(
        dg.AutomationCondition.check_failed(), blocking_only=True
    ).with_label("blocking_check_failed")
    return (
        ~dg.AutomationCondition.any_deps_match(failed & ~dg.AutomationCondition.will_be_requested())
    ).with_label("all_deps_blocking_checks_passed")


def follows_upstream() -> dg.AutomationCondition:
    """Dagster's eager(), for every partition, on changed content, behind passed checks.

    A re-dropped day from last month must refresh that day's clean table and the feature
    days whose trailing window includes it, not only today's; a dependency re-materialized
    with identical content triggers nothing. Never on a dependency partition whose blocking
    checks failed.
    """
    return (
        (dg.AutomationCondition.newly_missing() | any_deps_changed()).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & deps_blocking_checks_passed()
    ).with_label("follows_upstream")
