"""ContentChanged's look-up: what changed since the previous tick, reading only what it needs.

Records are real materialization events on a real instance, reported as the IO managers
record them (a content hash per partition).
"""

from __future__ import annotations

import dagster as dg

from ml_platform.automation import CONTENT_HASH, _changed_partitions

KEY = dg.AssetKey(["clean", "shipments"])
DAY_1, DAY_2, DAY_3 = "2026-01-01", "2026-01-02", "2026-01-03"


def _materialize(instance, partition: str, content: str) -> int:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=KEY, partition=partition, metadata={CONTENT_HASH: content}
        )
    )
    return instance.fetch_materializations(KEY, limit=1).records[0].storage_id


def test_changed_since_the_previous_tick_by_content(instance):
    _materialize(instance, DAY_1, "a")
    _materialize(instance, DAY_2, "a")
    cutoff = _materialize(instance, DAY_3, "a")
    _materialize(instance, DAY_1, "b")  # changed
    _materialize(instance, DAY_2, "b")
    _materialize(instance, DAY_2, "a")  # back where it was: nothing downstream reads changed
    _materialize(instance, DAY_3, "a")  # the same content again
    changed = _changed_partitions(instance, KEY, [DAY_1, DAY_2, DAY_3], cutoff)
    assert changed == {DAY_1}


def test_a_partition_new_since_the_previous_tick_reads_no_history(instance, monkeypatch):
    for _ in range(40):  # a day rebuilt many times before the previous tick
        cutoff = _materialize(instance, DAY_1, "a")
    _materialize(instance, DAY_1, "a")
    _materialize(instance, DAY_2, "a")  # first materialized since the previous tick
    fetched = []
    fetch = instance.fetch_materializations

    def counting(*args, **kwargs):
        result = fetch(*args, **kwargs)
        fetched.extend(result.records)
        return result

    monkeypatch.setattr(instance, "fetch_materializations", counting)
    assert _changed_partitions(instance, KEY, [DAY_1, DAY_2], cutoff) == {DAY_2}
    assert len(fetched) <= 2 * 2 + 10 + 2, len(fetched)  # one page and one record more
