"""Which days of a range a run would change: the rest is up to date and is not run again.

A day of an asset needs a run when it has no materialization; when its current one was
written by another code version; when an input partition it read has since been stored
with other content (``staleness.partition_reasons``); or, for raw, when the landed drop's
content is not the one it ingested. Everything downstream of such an asset in the same
selection runs with it, since its input is about to change. The CLI's backfill, predict and
demo plan their runs from this (``--force`` runs everything); Dagster's own backfills from
the UI run what they are asked to.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ml_platform.assets.raw import RAW_SHIPMENTS
from ml_platform.provenance.staleness import partition_reasons
from ml_platform.sensors import FINGERPRINT_METADATA
from ml_platform.storage.current import latest_storage_ids, records_by_storage_id


@dataclass(frozen=True)
class Redo:
    """A run to make: consecutive days that need the same assets, and why (the first day's)."""

    first: str
    last: str
    keys: tuple[dg.AssetKey, ...]
    why: str


def plan_redo(
    instance: dg.DagsterInstance, defs: dg.Definitions, keys: list[dg.AssetKey], days: list[str]
) -> list[Redo]:
    """The runs that bring ``keys`` up to date over ``days``; none when all of it is."""
    graph = defs.resolve_asset_graph()
    needs: dict[str, dict[dg.AssetKey, str]] = {day: {} for day in days}
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
    plan: list[Redo] = []
    for day in days:
        if not needs[day]:
            continue
        run_keys = _with_downstream(defs, graph, set(needs[day]), set(keys))
        why = next(iter(needs[day].values()))
        previous = plan[-1] if plan else None
        if previous and previous.keys == run_keys and _next_day(previous.last) == day:
            plan[-1] = Redo(previous.first, day, run_keys, previous.why)
        else:
            plan.append(Redo(day, day, run_keys, why))
    return plan


def changed_drops(instance: dg.DagsterInstance, defs: dg.Definitions, days: list[str]) -> dict:
    """Day -> why, for days whose completed drop is not the content raw ingested last. A drop
    that is gone, or being re-dropped (no marker yet), changes nothing raw holds."""
    if not days:
        return {}
    ids = latest_storage_ids(instance, RAW_SHIPMENTS, set(days))
    ingested = {
        r.partition_key: r.asset_materialization.metadata.get(FINGERPRINT_METADATA)
        for r in records_by_storage_id(instance, RAW_SHIPMENTS, list(ids.values()))
    }
    changed = {}
    with dg.build_resources({"landing": defs.resources["landing"]}) as resources:
        landing = resources.landing
        for day in days:
            stored = ingested.get(day)
            if not landing.is_complete(day):
                continue
            if stored is None or stored.value != landing.fingerprint(day):
                changed[day] = f"raw/shipments {day}: the landed drop changed since it was ingested"
    return changed


def _with_downstream(defs, graph, keys: set, selected: set) -> tuple[dg.AssetKey, ...]:
    """``keys``, the selected assets downstream of them, and the assets computed in the same
    step as any of those (a step that cannot be split runs whole)."""
    downstream = dg.AssetSelection.assets(*keys).downstream().resolve(graph) & selected
    whole = set(downstream)
    for key in downstream:
        assets_def = defs.resolve_assets_def(key)
        if not assets_def.can_subset:
            whole |= set(assets_def.keys) & selected
    return tuple(sorted(whole, key=lambda k: k.to_user_string()))


def _next_day(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()
