"""The provenance of a materialization as readable Markdown, for the Dagster UI."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

PROVENANCE_MD_KEY = "ml_platform/provenance"


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


def inputs_markdown(record: list[dict]) -> str:
    """One section per upstream asset: partitions read, grouped by the run that wrote them."""
    if not record:
        return "No recorded inputs (a source asset: see `ml_platform/source_files`)."
    lines = [
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
