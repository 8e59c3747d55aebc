"""The provenance commands of `ml-platform`: lineage, impact, stale, last-training, champion, explain.

Each returns a JSON-ready dict (``--format json``) and renders it as readable text otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ml_platform.provenance.champion import CHAMPION_KEY, PRICE_MODEL_KEY, current_champion
from ml_platform.provenance.impact import impact, starts_for_file, starts_for_partition
from ml_platform.provenance.lineage import Lineage, Node, attach_checks, backward, node_from_record
from ml_platform.provenance.staleness import stale_partitions
from ml_platform.provenance.summary import partition_ranges

PREDICTIONS_KEY = dg.AssetKey(["predictions", "price_quotes"])
FEATURES = "features/shipment_features"


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "?"


# -- lineage -------------------------------------------------------------------------------
def lineage_text(lineage: Lineage) -> str:
    lines: list[str] = []
    seen: set[int] = set()

    def walk(storage_id: int, prefix: str, last: bool, top: bool) -> None:
        node = lineage.nodes[storage_id]
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(f"{prefix}{branch}{_headline(node)}")
        child_prefix = prefix + ("" if top else ("   " if last else "│  "))
        if storage_id in seen:
            lines[-1] += "  (expanded above)"
            return
        seen.add(storage_id)
        for detail in _details(node):
            lines.append(f"{child_prefix}   {detail}")
        children = [(e["asset"], i) for e in node.inputs for i in e["storage_ids"]]
        unresolved = [(e["asset"], r) for e in node.inputs for r in e.get("unresolved", [])]
        for k, (_, child) in enumerate(children):
            walk(child, child_prefix, k == len(children) - 1 and not unresolved, False)
        for asset, read in unresolved:
            lines.append(f"{child_prefix}└─ {asset} {read['partition']}: read not resolved")

    walk(lineage.root, "", True, True)
    return "\n".join(lines)


def _headline(n: Node) -> str:
    part = f" {n.partition}" if n.partition else ""
    return f"{n.asset}{part}  [{n.status}]  run {n.run_id[:8]}  #{n.storage_id}"


def _details(n: Node) -> list[str]:
    out = [
        f"at {when(n.timestamp)}  code v{n.code_version}  data {str(n.data_version)[:16]}"
        + (f"  rows {n.rows}" if n.rows is not None else "")
    ]
    if n.uri:
        out.append(f"uri {n.uri}" + (f"  sha256 {n.sha256[:16]}…" if n.sha256 else ""))
    if n.status_detail:
        out.append(f"stored version: {n.status_detail}")
    if n.checks:
        out.append(
            "checks: "
            + ", ".join(f"{c['check']} {'passed' if c['passed'] else 'FAILED'}" for c in n.checks)
        )
    promotion = n.extra.get("promotion")
    if promotion:
        out.append(
            f"promotion: model week {promotion['model_week']} run {promotion['model_run_id'][:8]}"
            f" by {promotion['promoted_by']} ({promotion['reason']})"
        )
    for f in n.source_files:
        out.append(
            f"source file {f['uri']}  gen {f['generation']}  {f['size']} B  sha256 {f['sha256'][:16]}…"
        )
    return out


def shipment_row(lineage: Lineage, verifier, shipment_id: str) -> dict:
    """One prediction row and the feature values it was scored from, from the versions read."""
    root = lineage.node(lineage.root)
    quotes = verifier.load(root).filter(pl.col("shipment_id") == shipment_id)
    if quotes.is_empty():
        raise LookupError(
            f"shipment {shipment_id} is not in {root.ref} (materialization {root.storage_id})"
        )
    features_ids = [i for e in root.inputs if e["asset"] == FEATURES for i in e["storage_ids"]]
    features = pl.concat(
        [verifier.load(lineage.node(i)) for i in features_ids], how="diagonal"
    ).filter(pl.col("shipment_id") == shipment_id)
    return {
        "prediction": quotes.to_dicts()[0],
        "features": features.to_dicts()[0] if features.height else None,
        "features_storage_ids": features_ids,
    }


# -- impact --------------------------------------------------------------------------------
def run_impact(instance, graph, asset: str | None, partition: str | None, file: str | None):
    if file:
        starts = starts_for_file(instance, file)
        if not starts:
            raise LookupError(f"no raw materialization lists the source file {file}")
    else:
        key = dg.AssetKey.from_user_string(asset)
        starts = starts_for_partition(instance, key, partition)
        if not starts:
            raise LookupError(f"{asset} {partition or ''} has no materialization")
    return [i.as_dict() for i in impact(instance, graph, starts)]


def impact_text(items: list[dict]) -> str:
    lines = [
        f"{len(items)} materializations used it ({sum(i['superseded'] for i in items)} superseded since):"
    ]
    for i in items:
        part = f" {i['partition']}" if i["partition"] else ""
        state = "superseded" if i["superseded"] else "CURRENT"
        lines.append(
            f"  {state:<10} {i['asset']}{part}  #{i['storage_id']}  run {i['run_id'][:8]}  {when(i['timestamp'])}"
        )
    return "\n".join(lines)


# -- stale ---------------------------------------------------------------------------------
def run_stale(instance, graph, defs=None) -> list[dict]:
    """Stale partitions and why; with ``defs``, also raw days whose landed drop changed
    since it was ingested (what `ml-platform backfill` would re-ingest)."""
    items = [s.as_dict() for s in stale_partitions(instance, graph)]
    if defs is None:
        return items
    from ml_platform.assets.raw import RAW_SHIPMENTS
    from ml_platform.provenance.staleness import latest_records
    from ml_platform.provenance.up_to_date import changed_drops

    current = latest_records(instance, graph.get(RAW_SHIPMENTS))
    reported = {(i["asset"], i["partition"]) for i in items}
    raw = RAW_SHIPMENTS.to_user_string()
    drops = [
        {
            "asset": raw,
            "partition": day,
            "storage_id": current[day].storage_id,
            "run_id": current[day].run_id,
            "reasons": [{"kind": "landed drop", "detail": why}],
        }
        for day, why in sorted(changed_drops(instance, defs, sorted(current)).items())
        if (raw, day) not in reported
    ]
    return drops + items


def stale_text(items: list[dict]) -> str:
    if not items:
        return "nothing is stale"
    lines = [f"{len(items)} stale partitions:"]
    for s in items:
        part = f" {s['partition']}" if s["partition"] else ""
        lines.append(f"  {s['asset']}{part}  (#{s['storage_id']})")
        for r in s["reasons"]:
            lines.append(f"      {r['kind']}: {r['detail']}")
    return "\n".join(lines)


def backfill_stale(instance, graph, items: list[dict]) -> str | None:
    """File one asset backfill of exactly the stale partitions; its id (None: nothing to do)."""
    from ml_platform.backfills import file_backfill

    if not items:
        return None
    partitions: dict[dg.AssetKey, set[str]] = {}
    unpartitioned: set[dg.AssetKey] = set()
    for s in items:
        key = dg.AssetKey.from_user_string(s["asset"])
        if s["partition"] is None:
            unpartitioned.add(key)
        else:
            partitions.setdefault(key, set()).add(s["partition"])
    return file_backfill(
        instance,
        graph,
        partitions,
        unpartitioned=unpartitioned,
        title="ml-platform stale --backfill",
        description=f"{len(items)} stale partitions",
    )


# -- everyday questions --------------------------------------------------------------------
def last_training(instance) -> dict:
    """The latest stored model's results, and the last training run when that is another
    one (a run that failed before storing a model is still the last training run)."""
    records = instance.fetch_materializations(PRICE_MODEL_KEY, limit=1).records
    run = last_training_run(instance)
    if not records and run is None:
        raise LookupError("no price model has been trained yet: ml-platform train --week W")
    latest = _run_summary(instance, run) if run is not None else None
    if not records:
        return {"last_run": latest, "model": None}
    model = _model_summary(instance, records[0])
    if latest is not None and latest["run_id"] != model["run_id"]:
        return {**model, "last_run": latest}
    return model


# How far back among the instance's runs the last training run is looked for.
RECENT_RUNS = 200


def last_training_run(instance):
    """The newest run that set out to train a price model (any job, any outcome)."""
    for run in instance.get_runs(limit=RECENT_RUNS):
        if run.job_name == "train_price_model" or PRICE_MODEL_KEY in (run.asset_selection or ()):
            return run
    return None


def _run_summary(instance, run) -> dict:
    summary = {
        "run_id": run.run_id,
        "status": run.status.value,
        "week": run.tags.get("dagster/partition"),
    }
    if run.status == dg.DagsterRunStatus.FAILURE:
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
        ).records
        if records:
            error = records[0].event_log_entry.dagster_event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            summary["failure"] = (error.message if error else "").strip().splitlines()[0]
    return summary


def _model_summary(instance, record) -> dict:
    node = node_from_record(record)
    attach_checks(instance, [node])
    meta = record.asset_materialization.metadata
    keys = (
        "holdout_mape",
        "holdout_mae",
        "holdout_r2",
        "baseline_mape",
        "rows_train",
        "rows_holdout",
    )
    run = instance.get_run_by_id(record.run_id)
    return {
        "week": record.partition_key,
        "run_id": record.run_id,
        "run_status": run.status.value if run else None,
        "storage_id": record.storage_id,
        "at": when(record.timestamp),
        "metrics": {k: meta[k].value for k in keys if k in meta},
        "hyperparameters": meta["hyperparameters"].value if "hyperparameters" in meta else None,
        "training_window": node.extra.get("training_window"),
        "checks": node.checks,
        "artifact": {"uri": node.uri, "sha256": node.sha256},
    }


def champion_info(instance) -> dict:
    live = current_champion(instance)
    if live is None:
        raise LookupError("no model has been promoted yet: ml-platform promote --week W")
    return live


def explain(instance, day: str, verifier=None) -> dict:
    """Which model and which input data made a day's predictions, and how to re-run them."""
    lineage = backward(instance, PREDICTIONS_KEY, day, verifier=verifier)
    root = lineage.node(lineage.root)
    champions = lineage.by_asset(CHAMPION_KEY.to_user_string())
    if len(champions) != 1 or "promotion" not in champions[0].extra:
        raise LookupError(
            f"the quotes of {day} (run {root.run_id}) name no resolvable champion record, so "
            "which model made them cannot be said; see `ml-platform lineage "
            f"{PREDICTIONS_KEY.to_user_string()} --partition {day}`"
        )
    champion = champions[0]
    promotion = champion.extra["promotion"]
    live = current_champion(instance)

    def versions(asset: str) -> dict:
        nodes = lineage.by_asset(asset)
        return {
            "partitions": partition_ranges([n.partition for n in nodes]),
            "materializations": len(nodes),
            "runs": sorted({n.run_id for n in nodes}),
        }

    still_live = bool(live and live["model_sha256"] == promotion["model_sha256"])
    # Quoting again with the same model: that exact version live (by storage id: the week may
    # have been retrained since), then the day forced (its quotes are otherwise up to date).
    rerun = [f"ml-platform predict --date {day} --force"]
    if not still_live:
        rerun.insert(
            0,
            f"ml-platform promote --model {promotion['model_storage_id']} "
            f"--reason 'reproduce {day}'",
        )
    return {
        "predictions": {
            "partition": day,
            "storage_id": root.storage_id,
            "run_id": root.run_id,
            "at": when(root.timestamp),
        },
        "model": {
            "week": promotion["model_week"],
            "run_id": promotion["model_run_id"],
            "storage_id": promotion["model_storage_id"],
            "uri": promotion["model_uri"],
            "sha256": promotion["model_sha256"],
        },
        "champion": {
            "storage_id": champion.storage_id,
            "run_id": champion.run_id,
            "promoted_at": promotion.get("promoted_at"),
        },
        "still_live": still_live,
        "inputs": {a: versions(a) for a in (FEATURES, "clean/shipments", "raw/shipments")},
        "raw_files": sorted(
            {f["uri"] for n in lineage.by_asset("raw/shipments") for f in n.source_files}
        ),
        "unverified_or_changed": sorted(
            n.ref for n in lineage.nodes.values() if n.status not in ("verified", "unverified")
        ),
        "rerun": rerun,
        # The same run pinned to the recorded model and features, in scratch: nothing live
        # changes, and the result is compared with the stored quotes.
        "reproduce": f"ml-platform reproduce {PREDICTIONS_KEY.to_user_string()} --partition {day}",
    }


def as_text(value) -> str:
    """An answer for people: one ``key: value`` a line, nested by indentation (JSON with
    --format json)."""
    import yaml

    # A round trip through JSON turns dates and ids into plain values YAML prints as such.
    plain = json.loads(json.dumps(value, default=str))
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100).rstrip()
