"""Retention: remove stored versions older than an age, unless something still needs them.

Kept regardless of age:
- every partition's current version (the object its latest materialization names);
- every object the provenance of a protected asset's current materializations names,
  followed transitively through ``ml_platform/inputs`` (the live champion model and the
  current predictions by default), so any live prediction stays traceable to its bytes;
- when the champion is protected: every model a promotion ever made live (each one a
  rollback can still restore: rollback walks back through the promotion history), and,
  transitively, every stored version its provenance names.

Why our own: Dagster has no notion of the versions an IO manager keeps, and a bucket
lifecycle rule cannot know which old versions provenance still references.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from ml_platform.provenance.champion import CHAMPION_KEY, PRICE_MODEL_KEY
from ml_platform.provenance.reads import INPUTS_METADATA_KEY
from ml_platform.storage.current import latest_storage_ids, records_by_storage_id
from ml_platform.storage.object_store import ObjectStore

DEFAULT_PROTECTED_ASSETS = ("models/champion", "predictions/price_quotes")


@dataclass
class RetentionReport:
    cutoff: str
    dry_run: bool
    removed: list[dict] = field(default_factory=list)
    # Old enough to remove, kept because something needs them: uri -> why.
    kept: list[dict] = field(default_factory=list)
    younger_than_cutoff: int = 0

    @property
    def removed_bytes(self) -> int:
        return sum(r["size"] for r in self.removed)

    def as_dict(self) -> dict:
        return {**asdict(self), "removed_bytes": self.removed_bytes}


# An age beyond this keeps everything anyway; larger ones put the cutoff before year 1.
MAX_AGE = timedelta(days=100 * 366)


def parse_age(text: str) -> timedelta:
    """'30d', '12h', '90m' or a plain number of days, from 0 to 100 years."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    text = text.strip().lower()
    unit = units[text[-1]] if text[-1:] in units else "days"
    number = text[:-1] if text[-1:] in units else text
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"cannot read age {text!r}: use e.g. 30d, 12h or 90m") from None
    if not 0 <= amount <= MAX_AGE / timedelta(**{unit: 1}):
        raise ValueError(f"age {text!r}: must be from 0 to {MAX_AGE.days} days")
    return timedelta(**{unit: amount})


def unknown_assets(instance: dg.DagsterInstance, assets: list[str]) -> list[str]:
    """Protected assets, other than the defaults, that the instance has never materialized:
    a misspelled name would protect nothing, and retention would remove what it meant."""
    known = {key.to_user_string() for key in instance.get_asset_keys()}
    return [a for a in assets if a not in known and a not in DEFAULT_PROTECTED_ASSETS]


def referenced_uris(instance: dg.DagsterInstance, protected: list[dg.AssetKey]) -> dict[str, str]:
    """URI -> reason, for everything the current materializations of protected assets name."""
    reasons: dict[str, str] = {}
    frontier: dict[dg.AssetKey, set[int]] = {
        key: _current_storage_ids(instance, key) for key in protected
    }
    if CHAMPION_KEY in protected:
        promoted = _promoted_models(instance)
        frontier.setdefault(PRICE_MODEL_KEY, set()).update(promoted)
        for record in records_by_storage_id(instance, PRICE_MODEL_KEY, sorted(promoted)):
            uri = record.asset_materialization.metadata.get("dagster/uri")
            if uri is not None:
                reasons[uri.value] = (
                    f"model {PRICE_MODEL_KEY.to_user_string()} {record.partition_key} "
                    f"(materialization {record.storage_id}) was live once: a rollback target"
                )
    seen: set[int] = set()
    while frontier:
        next_frontier: dict[dg.AssetKey, set[int]] = defaultdict(set)
        for asset_key, storage_ids in frontier.items():
            ids = sorted(storage_ids - seen)
            if not ids:
                continue
            seen.update(ids)
            for record in records_by_storage_id(instance, asset_key, ids):
                mat = record.asset_materialization
                where = f"{asset_key.to_user_string()}" + (
                    f" {mat.partition}" if mat.partition else ""
                )
                uri = mat.metadata.get("dagster/uri")
                if uri is not None:
                    reasons.setdefault(uri.value, f"stored version of {where}")
                inputs = mat.metadata.get(INPUTS_METADATA_KEY)
                for entry in inputs.value if inputs is not None else []:
                    upstream = dg.AssetKey.from_user_string(entry["asset"])
                    for read in entry["partitions"]:
                        reasons.setdefault(read["uri"], f"read by {where}")
                        if read.get("storage_id") is not None:
                            next_frontier[upstream].add(read["storage_id"])
        frontier = dict(next_frontier)
    return reasons


def _promoted_models(instance: dg.DagsterInstance) -> set[int]:
    """Storage ids of every price_model materialization a promotion has made live."""
    from ml_platform.provenance.champion import champion_history

    return {
        h["model_storage_id"]
        for h in champion_history(instance)
        if h.get("model_storage_id") is not None
    }


def _current_storage_ids(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[int]:
    ids = set(latest_storage_ids(instance, key).values())
    latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1)
    ids.update(r.storage_id for r in latest.records)
    return ids


def current_uris(instance: dg.DagsterInstance) -> set[str]:
    """The URI of every partition's current version, of every asset the instance knows."""
    uris: set[str] = set()
    for key in instance.get_asset_keys():
        for record in records_by_storage_id(
            instance, key, sorted(_current_storage_ids(instance, key))
        ):
            uri = record.asset_materialization.metadata.get("dagster/uri")
            if uri is not None:
                uris.add(uri.value)
    return uris


def apply_retention(
    store: ObjectStore,
    instance: dg.DagsterInstance,
    older_than: timedelta,
    protected: list[dg.AssetKey] | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RetentionReport:
    """Remove unneeded versions older than ``older_than``; report removed and kept objects."""
    if protected is None:
        protected = [dg.AssetKey.from_user_string(k) for k in DEFAULT_PROTECTED_ASSETS]
    cutoff = (now or datetime.now(UTC)) - older_than
    report = RetentionReport(cutoff=cutoff.isoformat(), dry_run=dry_run)
    objects = list(store.list_objects())
    # Events are read after listing: a version that became current meanwhile is younger
    # than any sensible cutoff, so it is kept by age.
    current = current_uris(instance)
    referenced = referenced_uris(instance, protected)
    for obj in objects:
        if obj.updated > cutoff:
            report.younger_than_cutoff += 1
            continue
        if obj.uri in current:
            report.kept.append({"uri": obj.uri, "reason": "current version of its partition"})
            continue
        if obj.uri in referenced:
            report.kept.append({"uri": obj.uri, "reason": referenced[obj.uri]})
            continue
        if not dry_run:
            store.delete(obj.key)
        report.removed.append(
            {"uri": obj.uri, "size": obj.size, "updated": obj.updated.isoformat()}
        )
    return report
