"""Which days of a range a run would change: the rest is up to date and is not run again.

A day of an asset needs a run when it has no materialization; when its current one was
written by another code version; when an input partition it read has since been stored
with other content (``staleness.partition_reasons``); or, for raw, when the completed drop
is not the content it ingested. What a run of it changes needs a run too: the partitions of
the selected assets that read it (through their partition mappings: a clean day feeds the
28 feature days whose window holds it) and the assets computed in the same step. The CLI's
backfill, predict and demo plan their runs from this (``--force`` runs everything);
Dagster's own backfills from the UI run what they are asked to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import dagster as dg

from ml_platform.assets.raw import DROP_FINGERPRINT_KEY, RAW_SHIPMENTS
from ml_platform.landing.zone import DropUnreadableError
from ml_platform.provenance.staleness import partition_reasons
from ml_platform.provenance.summary import SOURCE_FILES_KEY
from ml_platform.storage.current import latest_storage_ids, records_by_storage_id


@dataclass(frozen=True)
class Redo:
    """A run to make: consecutive days that need the same assets, and why (the first day's)."""

    first: str
    last: str
    keys: tuple[dg.AssetKey, ...]
    why: str


def plan_redo(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    keys: list[dg.AssetKey],
    days: list[str],
    *,
    forced: set[tuple[dg.AssetKey, str]] = frozenset(),
    failed: set[tuple[dg.AssetKey, str]] = frozenset(),
) -> list[Redo]:
    """The runs that bring ``keys`` up to date over ``days``; none when all of it is.
    ``forced``: (asset, day) pairs to run whether or not they are up to date (--force).
    ``failed``: (asset, day) pairs a run just failed; they, and what reads them, are left
    out (they would fail the same way, or read nothing)."""
    graph = defs.resolve_asset_graph()
    selected = set(keys)
    needs: dict[str, dict[dg.AssetKey, str]] = {day: {} for day in days}
    forced = {(key, day) for key, day in forced if day in needs and key in selected}
    if len(forced) < len(keys) * len(days):
        _find_needs(instance, defs, graph, keys, days, needs)
    for key, day in forced:
        needs[day].setdefault(key, "--force")
    reach = _reach(defs, graph, selected)
    planned_days = set(days)
    # What reads a failed day is blocked whatever lies between (a failed raw day blocks the
    # feature days whose window reads its clean day, planned or not); what a run changes is
    # followed through the planned days only, the others being up to date.
    blocked = reach(dict.fromkeys(failed, ""), lambda day: days and day <= days[-1])
    wanted = reach(
        {(key, day): why for day, found in needs.items() for key, why in found.items()},
        planned_days.__contains__,
    )
    planned: dict[str, dict[dg.AssetKey, str]] = {day: {} for day in days}
    for (key, day), why in wanted.items():
        if day in planned and (key, day) not in blocked:
            planned[day][key] = why
    return _group(days, planned)


def _find_needs(instance, defs, graph, keys: list, days: list[str], needs: dict) -> None:
    """Fills ``needs`` with each (asset, day) that is not up to date, and why."""
    for key in keys:
        for day, reasons in partition_reasons(instance, graph, key, days).items():
            if reasons is None:
                needs[day][key] = f"{key.to_user_string()} {day} was never materialized"
            elif reasons:
                needs[day][key] = f"{key.to_user_string()} {day}: {reasons[0]['detail']}"
    if RAW_SHIPMENTS in keys:
        stored = [d for d in days if RAW_SHIPMENTS not in needs[d]]
        for day, why in changed_drops(instance, defs, stored).items():
            needs[day][RAW_SHIPMENTS] = why


def _group(days: list[str], needs: dict) -> list[Redo]:
    """Consecutive days that need the same assets, as one run each."""
    plan: list[Redo] = []
    for day in days:
        if not needs[day]:
            continue
        run_keys = tuple(sorted(needs[day], key=lambda k: k.to_user_string()))
        previous = plan[-1] if plan else None
        if previous and previous.keys == run_keys and _next_day(previous.last) == day:
            plan[-1] = Redo(previous.first, day, run_keys, previous.why)
        else:
            plan.append(Redo(day, day, run_keys, next(iter(needs[day].values()))))
    return plan


def _reach(defs: dg.Definitions, graph, selected: set):
    """A function from (asset, day) seeds (and why) and the days to follow to everything a
    run of them changes within ``selected``: the partitions of child assets that read a seed,
    and the assets computed in the same (unsplittable) step, transitively; seeds included."""

    @cache
    def reached(parent: dg.AssetKey, child: dg.AssetKey, day: str) -> tuple[str, ...]:
        parent_def = defs.resolve_assets_def(parent).partitions_def
        child_def = defs.resolve_assets_def(child).partitions_def
        mapping = defs.resolve_assets_def(child).get_partition_mapping(parent)
        if mapping is None:  # Dagster's default between two daily assets: the same day
            mapping = dg.TimeWindowPartitionMapping()
        subset = mapping.get_downstream_partitions_for_partitions(
            parent_def.subset_with_partition_keys([day]), parent_def, child_def
        )
        return tuple(subset.get_partition_keys())

    def reach(seeds: dict, within: Callable[[str], bool]) -> dict[tuple[dg.AssetKey, str], str]:
        found = dict(seeds)
        work = list(seeds)
        while work:
            key, day = work.pop()
            assets_def = defs.resolve_assets_def(key)
            touched = []
            if not assets_def.can_subset:
                touched += [(sibling, day) for sibling in sorted(assets_def.keys & selected)]
            for child in sorted(graph.get(key).child_keys & selected):
                touched += [(child, d) for d in reached(key, child, day) if within(d)]
            for pair in touched:
                if pair not in found:
                    found[pair] = f"{key.to_user_string()} {day} runs: {found[(key, day)]}"
                    work.append(pair)
        return found

    return reach


def changed_drops(instance: dg.DagsterInstance, defs: dg.Definitions, days: list[str]) -> dict:
    """Day -> why, for days whose completed drop is not the content raw ingested last. A drop
    that is gone, or being re-dropped (no marker yet), changes nothing raw holds; one that
    cannot be read does (raw's run then fails that day, naming the file)."""
    if not days:
        return {}
    ids = latest_storage_ids(instance, RAW_SHIPMENTS, set(days))
    ingested = {
        r.partition_key: r.asset_materialization.metadata
        for r in records_by_storage_id(instance, RAW_SHIPMENTS, list(ids.values()))
    }
    changed = {}
    with dg.build_resources({"landing": defs.resources["landing"]}) as resources:
        landing = resources.landing
        for day in days:
            metadata = ingested.get(day, {})
            try:
                if not landing.is_complete(day):
                    continue
                recorded = metadata.get(SOURCE_FILES_KEY)
                known = {f["uri"]: f for f in (recorded.value if recorded is not None else [])}
                same = DROP_FINGERPRINT_KEY in metadata and landing.fingerprint(day, known) == (
                    metadata[DROP_FINGERPRINT_KEY].value
                )
            except DropUnreadableError as e:
                if e.transient:  # the store failed, not the drop: say so rather than guess
                    raise
                changed[day] = f"raw/shipments {day}: the landed drop cannot be read ({e})"
                continue
            if not same:
                changed[day] = f"raw/shipments {day}: the landed drop changed since it was ingested"
    return changed


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def current_model_run(
    instance: dg.DagsterInstance, defs: dg.Definitions, week: str, hyperparameters: dict
) -> str | None:
    """The run of the week's latest model when training it again would make the same one:
    the same code version, feature partitions with the same content, the same hyperparameters
    (all of them, defaults included); else None."""
    from ml_platform.provenance.champion import (
        PRICE_MODEL_KEY,
        checks_passed,
        latest_model_materialization,
    )

    record = latest_model_materialization(instance, week)
    if record is None:
        return None
    graph = defs.resolve_asset_graph()
    if partition_reasons(instance, graph, PRICE_MODEL_KEY, [week])[week]:
        return None
    recorded = record.asset_materialization.metadata.get("hyperparameters")
    if recorded is None or recorded.value != hyperparameters:
        return None
    # Its not-worse-than-champion check compares with the model live then, which is not an
    # input: a model that failed its checks may pass them now, so it is trained again.
    return record.run_id if checks_passed(instance, record)[0] else None
