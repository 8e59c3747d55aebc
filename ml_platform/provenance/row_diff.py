"""Row-level differences between a recorded partition and a re-computed one."""

from __future__ import annotations

from typing import Any

import polars as pl

# Columns that identify a row, tried in order; rows are matched on all columns otherwise.
KEY_COLUMNS = ("shipment_id",)
SHOWN_ROWS = 5


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
