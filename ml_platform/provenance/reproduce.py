"""Re-execute one recorded materialization from exactly what it read, and compare.

The asset's real AssetsDefinition runs with ``dg.materialize`` on an ephemeral scratch
instance. Its IO managers are replaced by pinned ones (``provenance.pinned``): each input is
the stored version the materialization's ``ml_platform/inputs`` record names, loaded through
the live IO manager's own loader and checked against its recorded sha256; each output goes to
a scratch folder. Raw drops are re-read from the recorded source files, byte-checked. The
run's config is the recorded run's. A step that looks up a pinned version's own event by
storage id (quotes read their champion's promotion) gets it from the live instance, read only.
Nothing is written to the live instance, lake, landing zone or warehouse.

The result is identical when the re-computed partition has the recorded content hash (same
rows, same order, same schema). Models are compared by their holdout metrics and by the
artifact: skops artifacts are zip files with timestamps and object ids in member names, so
two fits of the same model are never byte-identical; their predictions on every row of the
pinned training window are compared bit for bit instead.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from ml_platform.models.artifacts import ArtifactError
from ml_platform.provenance.lineage import (
    CODE_VERSION_TAG,
    LineageError,
    Node,
    node_from_record,
    root_record,
)
from ml_platform.provenance.pinned import (
    PinError,
    PinnedIOManager,
    PinnedLanding,
    PinnedVersion,
    check_available,
)
from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.provenance.verify import StorageVerifier
from ml_platform.storage.current import CurrentVersion, latest_storage_ids, records_by_storage_id

IDENTICAL, DIFFERENT, IMPOSSIBLE = "identical", "different", "impossible"
# Assets whose step reads live instance state beyond its inputs: not re-executable in isolation.
NOT_REPRODUCIBLE = {
    "models/champion": "it reads the live promotion log from the instance, not from inputs",
}
KEY_COLUMNS = ("shipment_id",)
MODEL_METRICS = (
    "rows_train",
    "rows_holdout",
    "holdout_mae",
    "holdout_mape",
    "holdout_r2",
    "baseline_mae",
    "baseline_mape",
    "baseline_r2",
)
SHOWN_ROWS = 5


@dataclass
class Reproduction:
    """What a re-execution found; ``status`` is identical, different or impossible."""

    asset: str
    partition: str | None
    storage_id: int | None
    run_id: str | None
    status: str = IMPOSSIBLE
    reason: str = ""
    likely_causes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    code_version: dict = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    recorded: dict = field(default_factory=dict)
    reproduced: dict = field(default_factory=dict)
    diff: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return self.status == IDENTICAL

    def as_dict(self) -> dict:
        return asdict(self)


def reproduce(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition: str | None = None,
    storage_id: int | None = None,
    scratch_dir: str | None = None,
) -> Reproduction:
    """Re-execute one materialization pinned to its recorded inputs; never raises for the
    expected problems (no record, missing versions, changed files, failing code)."""
    out = Reproduction(asset_key.to_user_string(), partition, storage_id, None)
    try:
        record = root_record(instance, asset_key, partition, storage_id)
    except LineageError as e:
        out.reason = str(e)
        return out
    root = node_from_record(record)
    out.partition, out.storage_id, out.run_id = root.partition, root.storage_id, root.run_id
    out.recorded = _recorded_summary(root, record)
    graph = defs.resolve_asset_graph()
    if out.asset in NOT_REPRODUCIBLE:
        out.reason = (
            f"{out.asset} cannot be re-executed in isolation: {NOT_REPRODUCIBLE[out.asset]}"
        )
        return out
    if not graph.has(asset_key) or not graph.get(asset_key).is_materializable:
        out.reason = f"{out.asset} is not a materializable asset of these definitions"
        return out
    assets_def = graph.assets_def_for_key(asset_key)
    current_code = assets_def.code_versions_by_key.get(asset_key)
    out.code_version = {"recorded": root.code_version, "current": current_code}
    with ExitStack() as stack:
        live = stack.enter_context(_live_resources(defs))
        scratch = scratch_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="ml-platform-reproduce-")
        )
        try:
            pins = _pins(instance, record, live)
            out.inputs = _inputs_summary(instance, pins)
            landing = _pinned_landing(live, record, root)
            run = _rerun(
                defs, graph, assets_def, instance, record, root, pins, live, landing, scratch
            )
        except PinError as e:
            out.reason = str(e)
            out.likely_causes = _missing_causes(str(e))
            return out
        try:
            _judge(out, run, root, record, live, pins)
        except (PinError, ArtifactError, OSError, LookupError) as e:
            out.status, out.reason = IMPOSSIBLE, f"cannot compare: {e}"
    return out


# -- what was read ---------------------------------------------------------------------------
def _pins(instance, record, live) -> dict[str, dict[str | None, PinnedVersion]]:
    """Every recorded read, resolved to its materialization and checked to still be stored."""
    meta = record.asset_materialization.metadata
    entries = meta[INPUTS_METADATA_KEY].value if INPUTS_METADATA_KEY in meta else []
    pins: dict[str, dict[str | None, PinnedVersion]] = {}
    for entry in entries:
        asset = entry["asset"]
        key = dg.AssetKey.from_user_string(asset)
        reads = entry["partitions"]
        unresolved = [r for r in reads if r.get("storage_id") is None]
        if unresolved:
            raise PinError(
                f"{asset} {unresolved[0].get('partition')}: the recorded read names no "
                "materialization, so its exact version cannot be found"
            )
        by_id = {
            r.storage_id: r
            for r in records_by_storage_id(instance, key, [r["storage_id"] for r in reads])
        }
        pins[asset] = {}
        for read in reads:
            rec = by_id.get(read["storage_id"])
            version = _version(key, rec) if rec is not None else None
            pin = PinnedVersion(asset, read, version)
            manager = live.by_asset.get(asset)
            if manager is None:
                raise PinError(f"{pin.where}: no IO manager is known for {asset}")
            check_available(pin, manager)
            pins[asset][read.get("partition")] = pin
    return pins


def _version(key: dg.AssetKey, record) -> CurrentVersion:
    mat = record.asset_materialization
    return CurrentVersion(
        asset_key=key,
        partition=mat.partition,
        storage_id=record.storage_id,
        run_id=record.run_id,
        data_version=(mat.tags or {}).get("dagster/data_version"),
        metadata={k: v.value for k, v in mat.metadata.items()},
    )


def _pinned_landing(live, record, root: Node) -> PinnedLanding | None:
    if not root.source_files:
        return None
    landing = live.resources.get("landing")
    if landing is None:
        raise PinError("the definitions have no landing zone to re-read the source files from")
    pinned = PinnedLanding(landing, root.partition, root.source_files)
    pinned.check()
    return pinned


def _inputs_summary(instance, pins) -> list[dict]:
    """Each pinned version, and whether it is still its partition's current one."""
    rows = []
    for asset, by_partition in pins.items():
        key = dg.AssetKey.from_user_string(asset)
        partitions = {p for p in by_partition if p is not None}
        latest = latest_storage_ids(instance, key, partitions) if partitions else {}
        if None in by_partition:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key), limit=1
            ).records
            latest[None] = records[0].storage_id if records else None
        for part, pin in sorted(by_partition.items(), key=lambda kv: str(kv[0])):
            rows.append(
                {
                    "asset": asset,
                    "partition": part,
                    "storage_id": pin.read.get("storage_id"),
                    "run_id": pin.read.get("run_id"),
                    "content_hash": pin.read.get("content_hash"),
                    "current": latest.get(part) == pin.read.get("storage_id"),
                }
            )
    return rows


# -- the re-run ------------------------------------------------------------------------------
@dataclass
class _Live:
    """The definitions' own resources, initialized, used read only."""

    resources: dict[str, Any]
    by_key: dict[str, Any]
    by_asset: dict[str, Any]


@contextmanager
def _live_resources(defs: dg.Definitions) -> Iterator[_Live]:
    graph = defs.resolve_asset_graph()
    manager_keys = {n.key.to_user_string(): n.io_manager_key for n in graph.asset_nodes}
    wanted = {
        k: defs.resources[k] for k in {*manager_keys.values(), "landing"} if k in defs.resources
    }
    with dg.build_resources(wanted) as built:
        resources = {k: getattr(built, k) for k in wanted}
        yield _Live(
            resources=resources,
            by_key={k: resources[k] for k in set(manager_keys.values()) if k in resources},
            by_asset={a: resources[k] for a, k in manager_keys.items() if k in resources},
        )


@dataclass
class _Run:
    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance
    managers: dict[str, PinnedIOManager]
    scratch: str
    record: Any = None


def _rerun(defs, graph, assets_def, instance, record, root, pins, live, landing, scratch) -> _Run:
    resources: dict[str, Any] = {
        key: PinnedIOManager(pins, live.by_asset, manager, scratch)
        for key, manager in live.by_key.items()
    }
    managers = dict(resources)
    # A landing zone that cannot be written to; only the raw asset reads it.
    resources["landing"] = landing or PinnedLanding(live.resources.get("landing"), "", [])
    scratch_instance = _scratch_instance(instance, pins)
    result = dg.materialize(
        # The definitions' own (unbound) assets: their resources are the pinned ones.
        assets=list(defs.assets or []),
        selection=dg.AssetSelection.assets(*assets_def.keys),
        partition_key=root.partition,
        instance=scratch_instance,
        resources=resources,
        run_config={
            **_recorded_run_config(instance, assets_def, record),
            "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        },
        tags={"ml_platform/reproduces": str(root.storage_id)},
        raise_on_error=False,
    )
    run = _Run(result, scratch_instance, managers, scratch)
    records = scratch_instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(root.asset),
            asset_partitions=[root.partition] if root.partition else None,
        ),
        limit=1,
    ).records
    run.record = records[0] if records else None
    return run


def _scratch_instance(live: dg.DagsterInstance, pins) -> dg.DagsterInstance:
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


def _recorded_run_config(instance, assets_def, record) -> dict:
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


# -- the verdict -----------------------------------------------------------------------------
def _judge(out: Reproduction, run: _Run, root: Node, record, live, pins) -> None:
    missing = [u for m in run.managers.values() for u in m.store().missing]
    if run.record is None:
        failure = _failure(run.result)
        if missing:
            out.reason = f"stored version {missing[0]} no longer exists (retention?)"
            out.likely_causes = ["a missing stored version (retention)"]
            return
        if "PinError" in failure or not failure:
            out.reason = failure or "the re-run produced no materialization"
            return
        out.status = DIFFERENT
        out.reason = f"the re-run failed: {_one_line(failure)}"
        out.likely_causes = _code_causes(out, record)
        return
    node = node_from_record(run.record)
    out.reproduced = _recorded_summary(node, run.record)
    out.reproduced["scratch_uri"] = node.uri
    read_ids = sorted(i for e in node.inputs for i in e["storage_ids"])
    recorded_ids = sorted(i for e in root.inputs for i in e["storage_ids"])
    if read_ids != recorded_ids:  # a guard on the pinning itself
        out.reason = "the re-run read other versions than the recorded ones"
        return
    if root.extra.get("training_window") is not None or _is_model(record):
        _judge_model(out, run, root, node, record, live, pins)
    else:
        _judge_frame(out, run, root, node, live)
    if not out.identical:
        out.likely_causes = _code_causes(out, record)
    elif out.code_version.get("recorded") != out.code_version.get("current"):
        out.notes.append(
            f"identical although the code version changed "
            f"({out.code_version.get('recorded')} -> {out.code_version.get('current')})"
        )


def _is_model(record) -> bool:
    return "ml_platform/feature_columns" in record.asset_materialization.metadata


def _judge_frame(out: Reproduction, run: _Run, root: Node, node: Node, live) -> None:
    if root.content_hash and root.content_hash == node.content_hash:
        out.status = IDENTICAL
        out.reason = f"{node.rows} rows, content hash {node.content_hash} as recorded"
        if root.sha256 and root.sha256 != node.sha256:
            out.notes.append("same rows; the Parquet bytes differ (encoder or library version)")
        return
    out.status = DIFFERENT
    out.reason = (
        f"content hash {node.content_hash} ({node.rows} rows) differs from the recorded "
        f"{root.content_hash} ({root.rows} rows)"
    )
    try:
        recorded = StorageVerifier(live.by_asset).load(root)
    except Exception as e:  # noqa: BLE001 (any loader error just means no row diff)
        out.notes.append(f"no row diff: the recorded version cannot be loaded ({e})")
        return
    reproduced = pl.read_parquet(_scratch_bytes(run, node))
    out.diff = diff_frames(recorded, reproduced)


def _scratch_bytes(run: _Run, node: Node) -> bytes:
    manager = next(iter(run.managers.values()))
    data = manager.store().scratch.get(node.object_key)
    if data is None:
        raise PinError(f"the scratch output {node.uri} is missing")
    return data


def _judge_model(out: Reproduction, run: _Run, root: Node, node: Node, record, live, pins) -> None:
    from ml_platform.models.artifacts import load_model
    from ml_platform.models.training import predict

    recorded_meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    new_meta = {k: v.value for k, v in run.record.asset_materialization.metadata.items()}
    metrics = {
        m: {"recorded": recorded_meta.get(m), "reproduced": new_meta.get(m)}
        for m in MODEL_METRICS
        if m in recorded_meta or m in new_meta
    }
    differing = [m for m, v in metrics.items() if v["recorded"] != v["reproduced"]]
    out.model = {"metrics": metrics, "differing_metrics": differing}
    recorded_libs = recorded_meta.get("library_versions") or {}
    current_libs = new_meta.get("library_versions") or {}
    out.model["library_versions"] = {"recorded": recorded_libs, "current": current_libs}
    if root.sha256 == node.sha256:
        out.model["artifact"] = "bitwise identical"
        artifact_same = True
    else:
        # skops writes zip timestamps and object-id member names: never byte-stable.
        manager = live.by_asset[root.asset]
        old = load_model(manager.store().get(root.object_key), root.sha256, root.uri)
        new = load_model(_scratch_bytes(run, node), node.sha256, node.uri)
        features = _pinned_window(pins, live)
        a, b = predict(old, features), predict(new, features)
        artifact_same = bool(len(a) == len(b) and (a == b).all())
        out.model["artifact"] = (
            "bytes differ (skops artifacts embed zip timestamps and object ids, so bitwise "
            "identity is impossible); predictions on all "
            f"{features.height} rows of the pinned training window are "
            + ("bitwise equal" if artifact_same else "NOT equal")
        )
        out.model["predictions_compared"] = features.height
        if not artifact_same:
            diff = (abs(a - b) > 0).sum()
            out.model["predictions_differing"] = int(diff)
    out.notes.append(
        "the not_worse_than_champion check was not re-evaluated: it reads the live champion"
    )
    if not differing and artifact_same:
        out.status = IDENTICAL
        out.reason = (
            f"holdout metrics identical (MAPE {recorded_meta.get('holdout_mape')}); "
            + out.model["artifact"].split(";")[-1].strip()
            if root.sha256 != node.sha256
            else "artifact bitwise identical"
        )
        return
    out.status = DIFFERENT
    parts = [f"{m} {metrics[m]['recorded']} -> {metrics[m]['reproduced']}" for m in differing]
    if not artifact_same:
        parts.append(f"predictions differ on {out.model.get('predictions_differing')} rows")
    out.reason = "; ".join(parts)


def _pinned_window(pins, live) -> pl.DataFrame:
    from ml_platform.assets.features import FEATURES_KEY

    asset = FEATURES_KEY.to_user_string()
    versions = [p.version for _, p in sorted(pins[asset].items(), key=lambda kv: str(kv[0]))]
    return live.by_asset[asset]._scan(versions).collect()


def _code_causes(out: Reproduction, record) -> list[str]:
    causes = []
    code = out.code_version
    if code.get("recorded") != code.get("current"):
        causes.append(
            f"changed code version: {out.asset} was materialized with code version "
            f"{code.get('recorded')}, the current code is version {code.get('current')}"
        )
    libs = out.model.get("library_versions") if out.model else None
    if libs:
        changed = {
            name: f"{libs['recorded'].get(name)} -> {libs['current'].get(name)}"
            for name in sorted(set(libs["recorded"]) | set(libs["current"]))
            if libs["recorded"].get(name) != libs["current"].get(name)
        }
        if changed:
            causes.append(
                "changed library versions: " + ", ".join(f"{k} {v}" for k, v in changed.items())
            )
    if not causes:
        causes.append(
            f"same code version ({code.get('current')})"
            + (" and library versions" if libs else "")
            + ": the code changed without a code-version bump, or the step is not deterministic"
        )
    return causes


def _missing_causes(reason: str) -> list[str]:
    if "no longer exists" in reason or "retention" in reason:
        return ["a missing stored version (retention)"]
    if "landed file" in reason:
        return ["the landed source file was re-dropped or removed"]
    return []


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step's error (and its causes) in one line each."""
    parts = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        error = event.step_failure_data.error
        user = event.step_failure_data.user_failure_data
        if user is not None and user.description:
            parts.append(user.description)
            continue
        while error is not None:
            parts.append(f"{error.cls_name}: {error.message.strip()}")
            error = error.cause
    return "\n".join(parts)


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _recorded_summary(node: Node, record) -> dict:
    return {
        "storage_id": node.storage_id,
        "run_id": node.run_id,
        "code_version": (record.asset_materialization.tags or {}).get(CODE_VERSION_TAG),
        "rows": node.rows,
        "content_hash": node.content_hash,
        "sha256": node.sha256,
        "uri": node.uri,
    }


# -- row diffs -------------------------------------------------------------------------------
def diff_frames(recorded: pl.DataFrame, reproduced: pl.DataFrame, limit: int = SHOWN_ROWS) -> dict:
    """Schema changes, rows only on one side and rows whose values changed (first few of each)."""
    old_schema, new_schema = dict(recorded.schema), dict(reproduced.schema)
    diff: dict[str, Any] = {
        "rows": {"recorded": recorded.height, "reproduced": reproduced.height},
        "columns_removed": [c for c in old_schema if c not in new_schema],
        "columns_added": [c for c in new_schema if c not in old_schema],
        "columns_retyped": {
            c: f"{old_schema[c]} -> {new_schema[c]}"
            for c in old_schema
            if c in new_schema and old_schema[c] != new_schema[c]
        },
    }
    common = [c for c in old_schema if new_schema.get(c) == old_schema[c]]
    key = next(
        (
            k
            for k in KEY_COLUMNS
            if k in common and recorded[k].is_unique().all() and reproduced[k].is_unique().all()
        ),
        None,
    )
    old, new = recorded.select(common), reproduced.select(common)
    on = [key] if key else common
    only_old = old.join(new, on=on, how="anti", nulls_equal=True)
    only_new = new.join(old, on=on, how="anti", nulls_equal=True)
    diff["key"] = key
    diff["only_in_recorded"] = {"count": only_old.height, "first": _rows(only_old, limit)}
    diff["only_in_reproduced"] = {"count": only_new.height, "first": _rows(only_new, limit)}
    if key:
        both = old.join(new, on=key, how="inner", suffix="__new")
        value_cols = [c for c in common if c != key]
        masks = {c: ~pl.col(c).eq_missing(pl.col(f"{c}__new")) for c in value_cols}
        changed = both.filter(pl.any_horizontal(*masks.values())) if masks else both.clear()
        first = []
        for row in changed.head(limit).iter_rows(named=True):
            first.append(
                {
                    key: _plain(row[key]),
                    "changed": {
                        c: {"recorded": _plain(row[c]), "reproduced": _plain(row[f"{c}__new"])}
                        for c in value_cols
                        if not _same(row[c], row[f"{c}__new"])
                    },
                }
            )
        diff["changed"] = {"count": changed.height, "first": first}
        if changed.height:
            counts = changed.select([m.sum().alias(c) for c, m in masks.items()]).row(0, named=True)
            diff["changed"]["columns"] = {c: n for c, n in counts.items() if n}
    if not only_old.height and not only_new.height and not diff.get("changed", {}).get("count"):
        diff["note"] = (
            "the same rows in a different order"
            if old_schema == new_schema
            else "every row is identical in the columns both versions have"
        )
    return diff


def _same(a, b) -> bool:
    return a == b or (a != a and b != b)  # NaN equals NaN here


def _plain(value):
    return value if isinstance(value, int | float | str | bool | type(None)) else str(value)


def _rows(frame: pl.DataFrame, limit: int) -> list[dict]:
    return [{k: _plain(v) for k, v in r.items()} for r in frame.head(limit).iter_rows(named=True)]


# -- text ------------------------------------------------------------------------------------
def as_text(r: Reproduction) -> str:
    part = f" {r.partition}" if r.partition else ""
    head = f"{r.asset}{part}"
    if r.storage_id is not None:
        head += f" (materialization #{r.storage_id}, run {str(r.run_id)[:8]})"
    lines = [f"{head}: {r.status.upper()}", f"  {r.reason}"]
    if r.code_version:
        lines.append(
            f"  code version: recorded {r.code_version.get('recorded')}, "
            f"current {r.code_version.get('current')}"
        )
    if r.inputs:
        old = [i for i in r.inputs if not i["current"]]
        lines.append(
            f"  pinned to {len(r.inputs)} recorded input version(s)"
            + (f", {len(old)} no longer current:" if old else ", all still current")
        )
        for i in old[:SHOWN_ROWS]:
            lines.append(
                f"    {i['asset']} {i['partition'] or ''} #{i['storage_id']} "
                f"(run {str(i['run_id'])[:8]})"
            )
    if r.model:
        if r.model.get("artifact"):
            lines.append(f"  artifact: {r.model['artifact']}")
        for m in r.model.get("differing_metrics", []):
            v = r.model["metrics"][m]
            lines.append(f"  {m}: recorded {v['recorded']}, reproduced {v['reproduced']}")
    if r.diff:
        d = r.diff
        for label, k in (("removed", "columns_removed"), ("added", "columns_added")):
            if d.get(k):
                lines.append(f"  columns {label}: {', '.join(d[k])}")
        for c, t in d.get("columns_retyped", {}).items():
            lines.append(f"  column {c}: {t}")
        for side in ("only_in_recorded", "only_in_reproduced"):
            if d[side]["count"]:
                lines.append(f"  {d[side]['count']} row(s) {side.replace('_', ' ')}, first:")
                lines.extend(f"    {json.dumps(row, default=str)}" for row in d[side]["first"])
        changed = d.get("changed", {})
        if changed.get("count"):
            cols = ", ".join(f"{c} ({n})" for c, n in changed.get("columns", {}).items())
            lines.append(f"  {changed['count']} row(s) changed by {d['key']}; columns: {cols}")
            for row in changed["first"]:
                lines.append(f"    {json.dumps(row, default=str)}")
        if d.get("note"):
            lines.append(f"  {d['note']}")
    if r.likely_causes:
        lines.append("  likely cause: " + "; ".join(r.likely_causes))
    lines.extend(f"  note: {n}" for n in r.notes)
    return "\n".join(lines)
