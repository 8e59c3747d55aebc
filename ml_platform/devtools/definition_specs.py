"""The code location's definitions as plain data, for a snapshot test and for review.

Every asset's partitions, dependencies and their mappings, backfill policy, automation
condition, checks, IO manager, pools and step pod tags; every job, sensor, schedule and
resource. ``ml_platform_tests/test_definition_specs.py`` compares it with a committed
snapshot, so a change to any of these shows in review as a diff, on purpose or not.

    uv run python -m ml_platform.devtools.definition_specs   # JSON, for this environment
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

# Added by Dagster from `kinds`, listed under their own name.
_KIND_TAG_PREFIX = "dagster/kind/"


def definition_specs(defs: dg.Definitions) -> dict[str, Any]:
    """What the Definitions declare, as JSON-ready data in a stable order."""
    graph = defs.resolve_asset_graph()
    return {
        "assets": {
            node.key.to_user_string(): _asset(node, graph)
            for node in sorted(graph.asset_nodes, key=lambda n: n.key.to_user_string())
        },
        "jobs": {
            job.name: _job(job)
            for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)
            if not job.name.startswith("__")  # Dagster's implicit asset job
        },
        "sensors": {
            s.name: {
                "type": type(s).__name__,
                "job": s.job_name if s.has_jobs else None,
                "minimum_interval_seconds": s.minimum_interval_seconds,
                "default_status": s.default_status.value,
            }
            for s in sorted(defs.sensors or [], key=lambda s: s.name)
        },
        "schedules": {
            s.name: {
                "cron": s.cron_schedule,
                "timezone": s.execution_timezone,
                "job": s.job_name,
                "default_status": s.default_status.value,
            }
            for s in sorted(defs.schedules or [], key=lambda s: s.name)
        },
        "resources": {key: type(value).__name__ for key, value in sorted(defs.resources.items())},
    }


def _asset(node, graph) -> dict[str, Any]:
    op_tags = dict(node.assets_def.op.tags) if node.is_executable else {}
    if "dagster-k8s/config" in op_tags:  # a JSON string: shown as its data
        op_tags["dagster-k8s/config"] = json.loads(op_tags["dagster-k8s/config"])
    return {
        "group": node.group_name,
        "kinds": sorted(node.kinds),
        "code_version": node.code_version,
        "partitions": _partitions(node.partitions_def),
        "deps": {
            parent.to_user_string(): _mapping(node.partition_mappings.get(parent))
            for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string())
        },
        "backfill_policy": repr(node.backfill_policy) if node.backfill_policy else None,
        "automation_condition": _condition_lines(node.automation_condition),
        "checks": {
            check.name: {"blocking": graph.get(check).blocking}
            for check in sorted(node.check_keys, key=lambda k: k.name)
        },
        "io_manager_key": node.io_manager_key,
        "pools": sorted(node.pools),
        "op_tags": op_tags,
        "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith(_KIND_TAG_PREFIX)},
        "owners": list(node.owners),
        "metadata_keys": sorted(node.metadata),
    }


def _partitions(partitions_def) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return {
            "type": type(partitions_def).__name__,
            "start": partitions_def.start.isoformat(),
            "cron": partitions_def.cron_schedule,
            "timezone": partitions_def.timezone,
            "end_offset": partitions_def.end_offset,
        }
    return {"type": type(partitions_def).__name__}


def _mapping(mapping) -> str:
    return "default" if mapping is None else repr(mapping)


def _condition_lines(condition, depth: int = 0) -> list[str] | None:
    """The condition's tree, one line per node: its name, and its label where it has one."""
    if condition is None:
        return None
    label = condition.get_label()
    lines = ["  " * depth + condition.name + (f"  [{label}]" if label else "")]
    for child in condition.children:
        lines += _condition_lines(child, depth + 1)
    return lines


def _job(job) -> dict[str, Any]:
    keys = job.asset_layer.executable_asset_keys if job.asset_layer else set()
    return {
        "assets": sorted(k.to_user_string() for k in keys),
        "executor": job.executor_def.name,
        "tags": dict(sorted(job.tags.items())),
    }


if __name__ == "__main__":
    from ml_platform.definitions import defs

    print(json.dumps(definition_specs(defs), indent=2))
