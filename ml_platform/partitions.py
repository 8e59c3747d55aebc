"""Partitions definitions shared by the asset graph."""

from __future__ import annotations

import dagster as dg

from ml_platform.settings import load_settings

# end_offset=1: today's drop is processed as soon as it is complete, not tomorrow.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=load_settings().start_date.isoformat(), end_offset=1
)

# Weekly model partitions start on Mondays (the first Monday on or after the start date).
weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date=load_settings().start_date.isoformat(), day_offset=1
)

# A weekly model trains on its own week of features and the weeks before it.
TRAINING_WEEKS = 4
training_window = dg.TimeWindowPartitionMapping(
    start_offset=-(TRAINING_WEEKS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)

# The 28 days before a partition plus the partition itself; days before the start date
# simply do not exist yet, which is not an error.
TRAILING_WINDOW_DAYS = 28
trailing_window = dg.TimeWindowPartitionMapping(
    start_offset=-TRAILING_WINDOW_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
)


# A backfill is split into runs of this many days; the run queue runs them concurrently,
# and on Kubernetes each is its own pod. A failed chunk is retried alone.
daily_backfill_policy = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=load_settings().backfill_days_per_run
)
