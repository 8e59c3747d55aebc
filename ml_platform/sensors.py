"""The landing-zone sensor: one run per completed drop whose content is not ingested yet."""

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ml_platform.assets.raw import DROP_FINGERPRINT_KEY, RAW_SHIPMENTS
from ml_platform.jobs import ingest_job
from ml_platform.landing.zone import DropUnreadableError, LandingZone
from ml_platform.partitions import daily_partitions

FINGERPRINT_TAG = "ml_platform/drop_fingerprint"
FINGERPRINT_METADATA = DROP_FINGERPRINT_KEY
RUN_KEY_TAG = "dagster/run_key"
# Bounds one tick's hashing work; the rest of a large first sighting follows next tick.
MAX_DROPS_PER_TICK = 100
# Dagster stores the cursor with every tick, skipped ones included (every 30 s): one entry per
# day ever ingested (its token, its sha256 fingerprint) made it grow without end, about 50 KB
# per tick after a year. A settled day (hashed, its run done, none failed) of a month that
# ended this many days ago is kept as 12 hex digits of its token's hash in its month's row
# instead: about 6 KB a year. Such a day whose token moves (a re-drop) is looked at again as
# any changed drop is; one whose drop is gone keeps its slot and costs nothing.
FOLD_MONTHS_AFTER_DAYS = 7
_SLOT = 12  # hex digits per day in a folded month's row: a missed re-drop is a 2^-48 chance
# The remembered fingerprint of a day unfolded by a re-drop: its earlier content is ingested.
FOLDED = "folded"


@dataclass
class Seen:
    """What the cursor remembers of one partition's drop."""

    token: str
    fingerprint: str | None
    # The run requested for this content while its outcome is unknown.
    run_key: str | None = None
    # Why that run did not succeed: the drop waits for a re-drop with other content.
    failure: str | None = None


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the landing zone; requests one raw/shipments run per completed drop whose "
        "content is not ingested yet. A failed drop waits for a re-drop with other content."
    ),
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    # Cursor: partition -> Seen, and month -> a row of its folded days' token hashes (see
    # FOLD_MONTHS_AFTER_DAYS). A tick stats each drop's folder and marker and hashes only the
    # drops whose token moved; a drop is remembered only once it has been hashed.
    seen, months = _load_cursor(context.cursor)
    _follow_up_runs(context.instance, seen)
    tokens = landing.completed_drops()
    folded, moved = _unfold_moved_days(months, tokens)
    for partition in moved:
        # Its content was ingested when it folded: a re-drop is new content unless raw holds
        # it, whatever an earlier run for that content did (as for a day never folded).
        seen[partition] = Seen(token="", fingerprint=FOLDED)
    changed = sorted(
        p for p, t in tokens.items() if p not in folded and not _handled(seen.get(p), t)
    )
    requests, notes, hashed = [], [], 0
    for partition in changed:
        if not daily_partitions.has_partition_key(partition):
            # Left out of the cursor: a drop dated ahead of the last partition is looked at
            # again every tick (no read) and ingested on the first tick its day exists.
            notes.append(f"not a daily partition (yet): {partition}")
            continue
        if hashed == MAX_DROPS_PER_TICK:
            notes.append("more changed drops than one tick hashes: the rest follow next tick")
            break
        hashed += 1
        try:
            fingerprint = landing.fingerprint(partition)
        except DropUnreadableError as e:
            # Left out of the cursor, so the next tick tries again.
            notes.append(f"unreadable, retried next tick: {partition} ({e})")
            continue
        seen[partition], request = _decide(
            context.instance, partition, tokens[partition], fingerprint, seen.get(partition)
        )
        requests.extend([request] if request else [])
    waiting = [f"{p} ({s.failure})" for p, s in sorted(seen.items()) if s.failure and p in tokens]
    if waiting:
        notes.append("waiting on a fix: " + "; ".join(waiting))
    skip = None
    if requests:  # a tick with requests has no skip reason: its problems go to the log
        for note in notes:
            context.log.warning(note)
    else:
        skip = "; ".join([f"no new or changed drops among {len(tokens)} completed", *notes])
    _fold_settled_days(seen, months, tokens, datetime.now(UTC).date())
    days = {p: list(vars(s).values()) for p, s in seen.items()}
    cursor = json.dumps({"days": days, "months": months})
    return dg.SensorResult(run_requests=requests, cursor=cursor, skip_reason=skip)


def _load_cursor(cursor: str | None) -> tuple[dict[str, Seen], dict[str, list[str]]]:
    data = json.loads(cursor or "{}")
    if "days" not in data:  # the flat partition -> entry cursor of earlier releases
        data = {"days": data, "months": {}}
    # A month row is a list of 31 slots; a row of another shape (the string rows main held
    # briefly) is dropped, and its days are looked at once more.
    months = {m: row for m, row in data["months"].items() if isinstance(row, list)}
    return {p: Seen(*entry) for p, entry in data["days"].items()}, months


def _slot(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:_SLOT]


def _unfold_moved_days(
    months: dict[str, list[str]], tokens: dict[str, str]
) -> tuple[set[str], set[str]]:
    """(folded days as they were, days whose token moved: unfolded).

    A folded day whose drop is not listed keeps its slot: a drop taken away for a re-drop, or a
    landing zone briefly unlisted, costs nothing; back with another token, it has moved.
    """
    folded, moved = set(), set()
    for month, row in months.items():
        for index, slot in enumerate(row):
            partition = f"{month}-{index + 1:02d}"
            if not slot or partition not in tokens:
                continue
            if _slot(tokens[partition]) == slot:
                folded.add(partition)
            else:  # re-dropped: looked at again, as any changed drop
                moved.add(partition)
                row[index] = ""
    for month in [m for m, row in months.items() if not any(row)]:
        del months[month]
    return folded, moved


def _fold_settled_days(
    seen: dict[str, Seen], months: dict[str, list[str]], tokens: dict[str, str], today: date
) -> None:
    """Move settled days of long-ended months from the day entries into their month's row."""
    for partition, entry in list(seen.items()):
        token = tokens.get(partition)
        if token is None or not _settled(entry, token):
            continue
        try:
            day = date.fromisoformat(partition)
        except ValueError:  # not a day's folder: never folded
            continue
        month_end = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
        if month_end + timedelta(days=FOLD_MONTHS_AFTER_DAYS) > today:
            continue
        months.setdefault(partition[:7], [""] * 31)[day.day - 1] = _slot(token)
        del seen[partition]


def _settled(entry: Seen | None, token: str) -> bool:
    """Hashed at this token, no run pending, no failure waiting on a fix."""
    return (
        entry is not None
        and _handled(entry, token)
        and entry.run_key is None
        and entry.failure is None
    )


def _handled(prev: Seen | None, token: str) -> bool:
    """Whether the drop with this token was hashed already."""
    # Older cursors held unhashed [token, None] entries for drops dated ahead of the last
    # partition; those count as new, or the drops would stay hidden.
    return prev is not None and prev.token == token and prev.fingerprint is not None


def _decide(
    instance: dg.DagsterInstance, partition: str, token: str, fingerprint: str, prev: Seen | None
) -> tuple[Seen, dg.RunRequest | None]:
    """What to remember of a drop whose token moved, and the run it needs, if any."""
    if _materialized_fingerprint(instance, partition) == fingerprint:
        return Seen(token, fingerprint), None
    if prev is not None and prev.fingerprint == fingerprint:
        # Same content (a touch, an identical re-drop): its request or failure still stands.
        return replace(prev, token=token), None
    if prev is None or prev.fingerprint is None:
        # No memory of this partition (first sighting, reset cursor): the runs have one.
        run = _last_run(instance, partition, fingerprint)
        if run is not None and not run.is_finished:
            return Seen(token, fingerprint, run_key=run.tags.get(RUN_KEY_TAG)), None
        if run is not None and run.status != dg.DagsterRunStatus.SUCCESS:
            return Seen(token, fingerprint, failure=_failure(instance, run)), None
    # The token is part of the key: each drop gets its own run, even one returning to
    # content ingested before, while a re-evaluated tick repeats the same key.
    run_key = f"{partition}:{fingerprint[:16]}:{token}"
    request = dg.RunRequest(
        run_key=run_key, partition_key=partition, tags={FINGERPRINT_TAG: fingerprint}
    )
    return Seen(token, fingerprint, run_key=run_key), request


def _follow_up_runs(instance: dg.DagsterInstance, seen: dict[str, Seen]) -> None:
    """Learn how requested runs ended; a failed drop stops waiting once its content is in."""
    for partition, s in seen.items():
        if s.failure:
            if _materialized_fingerprint(instance, partition) == s.fingerprint:
                s.failure = None  # ingested by other means (a manual re-execution, a backfill)
            continue
        if s.run_key is None:
            continue
        runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: s.run_key}), limit=1)
        if runs and runs[0].is_finished:
            s.run_key = None
            if runs[0].status != dg.DagsterRunStatus.SUCCESS:
                s.failure = _failure(instance, runs[0])


def _last_run(instance: dg.DagsterInstance, partition: str, fingerprint: str):
    """The latest run that ingested (or tried to) this content into this partition."""
    tags = {FINGERPRINT_TAG: fingerprint, "dagster/partition": partition}
    runs = instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1)
    return runs[0] if runs else None


def _failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """'run <id> failed: <first step error>', short enough for a tick's skip reason."""
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
    ).records
    outcome = "failed" if run.status == dg.DagsterRunStatus.FAILURE else "canceled"
    why = "no step failed"
    if records:
        data = records[0].event_log_entry.dagster_event.step_failure_data
        user = data.user_failure_data
        why = (user.description if user and user.description else data.error.message) or why
    return f"run {run.run_id[:8]} {outcome}: {' '.join(why.split())[:300]}"


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
