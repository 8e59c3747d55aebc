"""Automation conditions used by the asset graph."""

from __future__ import annotations

import dagster as dg


def follows_upstream() -> dg.AutomationCondition:
    """Dagster's eager(), for every partition rather than only the latest time window.

    A re-dropped day from last month must refresh that day's clean table and the feature
    days whose trailing window includes it, not only today's.
    """
    return (
        dg.AutomationCondition.eager()
        .without(dg.AutomationCondition.in_latest_time_window())
        .with_label("follows_upstream")
    )
