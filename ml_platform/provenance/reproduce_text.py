"""A reproduction's verdict as a short human report."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ml_platform.provenance.row_diff import SHOWN_ROWS

if TYPE_CHECKING:
    from ml_platform.provenance.reproduce import Reproduction


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
