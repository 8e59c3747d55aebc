"""The provenance of a materialization as readable Markdown, for the Dagster UI."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

PROVENANCE_MD_KEY = "ml_platform/provenance"
# What a materialization was ultimately made from (raw drops and models), carried down the
# graph: each step merges its inputs' sources, so no step walks the lineage to summarize it.
SOURCES_KEY = "ml_platform/sources"
SOURCE_FILES_KEY = "ml_platform/source_files"
PROMOTION_KEY = "ml_platform/promotion"


def sources_of(partition: str | None, metadata: dict) -> dict:
    """The sources one upstream materialization stands for, from its own metadata."""
    carried = metadata.get(SOURCES_KEY) or {}
    sources = {"raw": dict(carried.get("raw", {})), "models": dict(carried.get("models", {}))}
    if SOURCE_FILES_KEY in metadata and partition is not None:
        sources["raw"][partition] = len(metadata[SOURCE_FILES_KEY])
    promotion = metadata.get(PROMOTION_KEY)
    if promotion:
        # A champion stands for its model only, not for the model's training data.
        sources["models"][promotion["model_sha256"]] = {
            "week": promotion["model_week"],
            "run_id": promotion["model_run_id"],
        }
    return sources


def merge_sources(many: list[dict]) -> dict:
    """The union of several inputs' sources (a raw day reached twice counts once)."""
    merged: dict = {"raw": {}, "models": {}}
    for sources in many:
        merged["raw"].update(sources.get("raw", {}))
        merged["models"].update(sources.get("models", {}))
    return merged


def sources_markdown(sources: dict, record: list[dict]) -> str:
    """One line first: which model, which feature days, which raw drops."""
    parts = []
    for sha, model in sorted(sources.get("models", {}).items(), key=lambda kv: kv[1]["week"]):
        parts.append(
            f"model week {model['week']} (run `{model['run_id'][:8]}`, sha256 `{sha[:12]}…`)"
        )
    for entry in record:
        if entry["asset"].startswith("features/"):
            days = partition_ranges([r["partition"] for r in entry["partitions"]])
            parts.append(f"features {days}")
    raw = sources.get("raw", {})
    if raw:
        parts.append(f"raw drops {partition_ranges(list(raw))}, {sum(raw.values())} landed file(s)")
    return "**Summary:** made from " + "; ".join(parts) if parts else ""


def partition_ranges(partitions: list[str | None]) -> str:
    """'2026-01-01..2026-01-28 (28), 2026-02-03': consecutive days compressed to ranges."""
    keys = sorted(p for p in partitions if p is not None)
    if not keys:
        return "unpartitioned"
    try:
        days = [date.fromisoformat(k) for k in keys]
    except ValueError:
        return ", ".join(keys)
    runs: list[list[date]] = [[days[0]]]
    for day in days[1:]:
        if day - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        r[0].isoformat() if len(r) == 1 else f"{r[0]}..{r[-1]} ({len(r)})" for r in runs
    )


def inputs_markdown(record: list[dict], sources: dict | None = None) -> str:
    """A one-line summary, then one section per upstream asset: partitions read, by run."""
    if not record:
        return "No recorded inputs (a source asset: see `ml_platform/source_files`)."
    summary = sources_markdown(sources or {}, record)
    lines = [summary, ""] if summary else []
    lines += [
        "**Made from** (exact stored versions read; `ml-platform lineage` expands the chain)",
        "",
    ]
    for entry in record:
        reads = entry["partitions"]
        lines.append(f"- `{entry['asset']}`: {partition_ranges([r['partition'] for r in reads])}")
        by_run: dict[str, list] = defaultdict(list)
        for read in reads:
            by_run[read["run_id"]].append(read)
        for run_id, group in sorted(by_run.items()):
            ids = sorted(r["storage_id"] for r in group if r.get("storage_id") is not None)
            where = partition_ranges([r["partition"] for r in group])
            sha = group[0]["sha256"][:12] if len(group) == 1 and group[0].get("sha256") else ""
            lines.append(
                f"  - run `{run_id}`: {where}"
                + (f", materialization {_ids(ids)}" if ids else ", not resolved to an event")
                + (f", sha256 `{sha}…`" if sha else "")
            )
    return "\n".join(lines)


def _ids(ids: list[int]) -> str:
    if len(ids) <= 3:
        return ", ".join(map(str, ids))
    return f"{ids[0]}..{ids[-1]} ({len(ids)})"
