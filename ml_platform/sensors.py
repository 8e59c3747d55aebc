"""The landing-zone sensor: one run per completed drop, and one more per changed re-drop."""

import json

import dagster as dg

from ml_platform.assets.raw import RAW_SHIPMENTS
from ml_platform.jobs import ingest_job
from ml_platform.landing.zone import LandingZone
from ml_platform.partitions import daily_partitions

FINGERPRINT_TAG = "ml_platform/drop_fingerprint"
FINGERPRINT_METADATA = "ml_platform/drop_fingerprint"
# Bounds one tick's hashing work; the rest of a large first sighting follows next tick.
MAX_DROPS_PER_TICK = 100


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the landing zone; requests one raw/shipments run per completed drop, and "
        "one more only when a re-drop changes the drop's content."
    ),
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    # Cursor: partition -> [change token, content fingerprint]. A tick stats each drop's
    # folder and marker and hashes only the drops whose token moved.
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    tokens = landing.completed_drops()
    changed = sorted(p for p, token in tokens.items() if seen.get(p, [None])[0] != token)
    valid = set(daily_partitions.get_partition_keys())
    requests = []
    for partition in changed[:MAX_DROPS_PER_TICK]:
        if partition not in valid:
            context.log.warning(f"ignoring {landing.describe()}/{partition}: not a daily partition")
            seen[partition] = [tokens[partition], None]
            continue
        fingerprint = landing.fingerprint(partition)
        already = seen.get(partition, [None, None])[1] == fingerprint or (
            _materialized_fingerprint(context.instance, partition) == fingerprint
        )
        seen[partition] = [tokens[partition], fingerprint]
        if already:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{partition}:{fingerprint[:16]}",
                partition_key=partition,
                tags={FINGERPRINT_TAG: fingerprint},
            )
        )
    skip = None if requests else f"no new or changed drops among {len(tokens)} completed"
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen), skip_reason=skip)


def _materialized_fingerprint(instance: dg.DagsterInstance, partition: str) -> str | None:
    """The drop fingerprint of the partition's latest raw materialization, if any.

    Keeps a drop that was already ingested (by a backfill, or before the cursor was reset)
    from being processed twice.
    """
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_SHIPMENTS, asset_partitions=[partition]), limit=1
    )
    if not result.records:
        return None
    entry = result.records[0].asset_materialization.metadata.get(FINGERPRINT_METADATA)
    return entry.value if entry is not None else None
