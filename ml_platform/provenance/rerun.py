"""Re-running one recorded materialization on a scratch instance with pinned inputs.

The live definitions' resources are initialized and used read only; the asset runs with
``dg.materialize`` on an ephemeral instance whose IO managers serve the recorded versions
(``provenance.pinned``) and write to a scratch folder. ``provenance.reproduce`` judges the
result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_platform.provenance.pinned import PinnedIOManager, PinnedLanding


@dataclass
class Live:
    """The definitions' own resources, initialized, used read only."""

    resources: dict[str, Any]
    by_key: dict[str, Any]
    by_asset: dict[str, Any]


@contextmanager
def live_resources(defs: dg.Definitions) -> Iterator[Live]:
    graph = defs.resolve_asset_graph()
    manager_keys = {n.key.to_user_string(): n.io_manager_key for n in graph.asset_nodes}
    wanted = {
        k: defs.resources[k] for k in {*manager_keys.values(), "landing"} if k in defs.resources
    }
    with dg.build_resources(wanted) as built:
        resources = {k: getattr(built, k) for k in wanted}
        yield Live(
            resources=resources,
            by_key={k: resources[k] for k in set(manager_keys.values()) if k in resources},
            by_asset={a: resources[k] for a, k in manager_keys.items() if k in resources},
        )


@dataclass
class Rerun:
    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance
    managers: dict[str, PinnedIOManager]
    scratch: str
    record: Any = None


def rerun(defs, graph, assets_def, instance, record, root, pins, live, landing, scratch) -> Rerun:
    resources: dict[str, Any] = {
        key: PinnedIOManager(pins, live.by_asset, manager, scratch)
        for key, manager in live.by_key.items()
    }
    managers = dict(resources)
    # A landing zone that cannot be written to; only the raw asset reads it.
    resources["landing"] = landing or PinnedLanding(live.resources.get("landing"), "", [])
    sandbox = scratch_instance(instance, pins)
    result = dg.materialize(
        # The definitions' own (unbound) assets: their resources are the pinned ones.
        assets=list(defs.assets or []),
        selection=dg.AssetSelection.assets(*assets_def.keys),
        partition_key=root.partition,
        instance=sandbox,
        resources=resources,
        run_config={
            **recorded_run_config(instance, assets_def, record),
            "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        },
        tags={"ml_platform/reproduces": str(root.storage_id)},
        raise_on_error=False,
    )
    run = Rerun(result, sandbox, managers, scratch)
    records = sandbox.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(root.asset),
            asset_partitions=[root.partition] if root.partition else None,
        ),
        limit=1,
    ).records
    run.record = records[0] if records else None
    return run


def scratch_instance(live: dg.DagsterInstance, pins) -> dg.DagsterInstance:
    """An in-memory instance that also answers lookups of the pinned versions' own events.

    A step may look up the materialization of a version it read by that version's storage id
    (price_quotes reads the promotion its champion version names): such a lookup, and only
    such a lookup, is answered from the live instance, read only. Every other read and every
    write (runs, events) stays on the scratch instance.
    """
    scratch = dg.DagsterInstance.ephemeral()
    pinned: dict[dg.AssetKey, set[int]] = {
        dg.AssetKey.from_user_string(asset): {p.read["storage_id"] for p in by_part.values()}
        for asset, by_part in pins.items()
    }
    own = scratch.fetch_materializations

    def fetch_materializations(records_filter, limit, cursor=None, ascending=False):
        if (
            isinstance(records_filter, dg.AssetRecordsFilter)
            and records_filter.storage_ids
            and set(records_filter.storage_ids) <= pinned.get(records_filter.asset_key, set())
        ):
            return live.fetch_materializations(records_filter, limit, cursor, ascending)
        return own(records_filter, limit, cursor, ascending)

    scratch.fetch_materializations = fetch_materializations
    return scratch


def recorded_run_config(instance, assets_def, record) -> dict:
    """The op config the recorded run used (hyperparameters), else the recorded metadata's."""
    op = assets_def.node_def.name
    dagster_run = instance.get_run_by_id(record.run_id)
    ops = (dagster_run.run_config or {}).get("ops", {}) if dagster_run else {}
    if op in ops:
        return {"ops": {op: ops[op]}}
    params = record.asset_materialization.metadata.get("hyperparameters")
    if params is not None:
        return {"ops": {op: {"config": params.value}}}
    return {}
