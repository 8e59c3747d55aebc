"""Re-execute one recorded materialization from exactly what it read, and compare.

The asset's real AssetsDefinition runs with ``dg.materialize`` on an ephemeral scratch
instance. Its IO managers are replaced by pinned ones (``provenance.pinned``): each input is
the stored version the materialization's ``ml_platform/inputs`` record names, loaded through
the live IO manager's own loader and checked against its recorded sha256; each output goes to
a scratch folder. Raw drops are re-read from the recorded source files, byte-checked. The
run's config is the recorded run's. A step that looks up a pinned version's own event by
storage id (quotes read their champion's promotion) gets it from the live instance, read only.
Nothing is written to the live instance, lake, landing zone or warehouse (the re-run itself:
ml_platform/provenance/rerun.py).

The result is identical when the re-computed partition has the recorded content hash (same
rows, same order, same schema). Models are compared by their holdout metrics and by the
artifact: skops artifacts are zip files with timestamps and object ids in member names, so
two fits of the same model are never byte-identical; their predictions on every row of the
pinned training window are compared bit for bit instead.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    inputs_summary,
    pinned_landing,
    pins_for,
)
from ml_platform.provenance.rerun import Rerun, live_resources, rerun
from ml_platform.provenance.row_diff import diff_frames
from ml_platform.provenance.verify import StorageVerifier

IDENTICAL, DIFFERENT, IMPOSSIBLE = "identical", "different", "impossible"
# Assets whose step reads live instance state beyond its inputs: not re-executable in isolation.
NOT_REPRODUCIBLE = {
    "models/champion": "it reads the live promotion log from the instance, not from inputs",
}
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
    if scratch_dir is not None and (problem := unusable_folder(scratch_dir)):
        out.reason = f"the scratch folder {scratch_dir} {problem}"
        return out
    with ExitStack() as stack:
        live = stack.enter_context(live_resources(defs))
        scratch = scratch_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="ml-platform-reproduce-")
        )
        try:
            pins = pins_for(instance, record, live)
            out.inputs = inputs_summary(instance, pins)
            landing = pinned_landing(live, record, root)
            run = rerun(
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


def unusable_folder(path: str) -> str | None:
    """Why ``path`` cannot hold the re-run's output (created if missing), else None: a
    re-run failing to write there would otherwise be judged a different result."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "exists and is not a folder"
    except OSError as e:
        return f"cannot be created: {e.strerror}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "is not writable"
    return None


# -- the verdict -----------------------------------------------------------------------------
def _judge(out: Reproduction, run: Rerun, root: Node, record, live, pins) -> None:
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


def _judge_frame(out: Reproduction, run: Rerun, root: Node, node: Node, live) -> None:
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


def _scratch_bytes(run: Rerun, node: Node) -> bytes:
    manager = next(iter(run.managers.values()))
    data = manager.store().scratch.get(node.object_key)
    if data is None:
        raise PinError(f"the scratch output {node.uri} is missing")
    return data


def _judge_model(out: Reproduction, run: Rerun, root: Node, node: Node, record, live, pins) -> None:
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
