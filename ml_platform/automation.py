"""Automation conditions used by the asset graph."""

from __future__ import annotations

import dagster as dg


def deps_blocking_checks_passed() -> dg.AutomationCondition:
    """No dependency partition this partition reads has failed a blocking check.

    What ``AutomationCondition.all_deps_blocking_checks_passed()`` promises, built so that it
    holds here:

    - ``all_deps_match`` maps the matching dependency partitions down, so with a window mapping
      (features read 29 clean days) one passing day would let a feature day through even when
      another day of its window failed. Negating ``any_deps_match`` of a failure blocks a
      feature day when *any* day of its window failed.
    - Its ``will_be_requested()`` is asked of the check, which is evaluated inside its asset's
      step and never requested on its own; here the requested *asset* stands in for its checks
      (when they fail in that run the asset stores nothing: ml_platform.checks.gated).
    - A check that failed on the current materialization blocks; one never evaluated on it
      (data stored before the checks targeted their materialization) does not.
    """
    failed = dg.AutomationCondition.any_checks_match(
        dg.AutomationCondition.check_failed(), blocking_only=True
    ).with_label("blocking_check_failed")
    return (
        ~dg.AutomationCondition.any_deps_match(failed & ~dg.AutomationCondition.will_be_requested())
    ).with_label("all_deps_blocking_checks_passed")


def follows_upstream() -> dg.AutomationCondition:
    """Dagster's eager(), for every partition rather than only the latest time window.

    A re-dropped day from last month must refresh that day's clean table and the feature
    days whose trailing window includes it, not only today's. Never on a dependency partition
    whose blocking checks did not pass on its current materialization.
    """
    return (
        dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window())
        & deps_blocking_checks_passed()
    ).with_label("follows_upstream")
