"""raw/shipments: every row of a day's completed drop, loosely typed, with its source file."""

import hashlib

import dagster as dg
import polars as pl

from ml_platform.failures import fail_partitions
from ml_platform.landing.reader import DropFileError, parse_drop_file
from ml_platform.landing.zone import (
    DropFile,
    DropUnreadableError,
    LandingZone,
    drop_fingerprint,
)
from ml_platform.partitions import daily_backfill_policy, daily_partitions
from ml_platform.provenance.summary import SOURCE_FILES_KEY
from ml_platform.storage.frames import content_hash
from ml_platform.transforms.shipments import raw_from_files

RAW_SHIPMENTS = dg.AssetKey(["raw", "shipments"])
# The drop's content identity (landing.zone.drop_fingerprint) of each stored day.
DROP_FINGERPRINT_KEY = "ml_platform/drop_fingerprint"


@dg.asset(
    key=RAW_SHIPMENTS,
    description=(
        "Every row of a day's completed landing-zone drop, all columns as text, with the "
        "source file's URI and sha256 and the row number in that file."
    ),
    group_name="raw",
    kinds={"polars", "parquet"},
    code_version="1",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill_policy,
    io_manager_key="lake_io_manager",
    metadata={"partition_expr": "partition_date"},
)
def raw_shipments(context: dg.AssetExecutionContext, landing: LandingZone) -> dg.Output:
    frames: list[pl.DataFrame] = []
    errors: list[str] = []
    failed: list[str] = []
    for partition in context.partition_keys:
        frame, problems = _read_drop(context, landing, partition)
        errors.extend(problems)
        if problems:
            failed.append(partition)
        elif frame is not None:
            frames.append(frame)
    if errors:
        # An unreadable file or an incomplete drop reads the same way next time (a store
        # failure that may pass raises instead, and is retried): not retried, and the other
        # days of a range are run again without these (rerun_passed_days, the CLI).
        fail_partitions(
            context,
            RAW_SHIPMENTS,
            failed,
            f"{len(errors)} problem(s) reading landed drops:\n" + "\n".join(errors),
            {"problems": dg.MetadataValue.json(errors)},
        )
    df = pl.concat(frames, how="diagonal")
    return dg.Output(df, data_version=dg.DataVersion(content_hash(df)))


def _read_drop(
    context: dg.AssetExecutionContext, landing: LandingZone, partition: str
) -> tuple[pl.DataFrame | None, list[str]]:
    """Parse every file of one drop; bad files are quarantined and reported, never skipped.

    A drop that cannot be listed or read is this day's problem too (the other days of a range
    go on); a store failure that may pass the next time raises, and the run is retried.
    """
    try:
        return _parse_drop(context, landing, partition)
    except DropUnreadableError as e:
        if e.transient:
            raise
        return None, [str(e)]


def _parse_drop(
    context: dg.AssetExecutionContext, landing: LandingZone, partition: str
) -> tuple[pl.DataFrame | None, list[str]]:
    where = f"{landing.describe()}/{partition}"
    if not landing.is_complete(partition):
        return None, [f"{where}: no complete drop (its _SUCCESS marker is missing)"]
    files = landing.list_files(partition)
    if not files:
        return None, [f"{where}: the drop is marked complete but holds no data files"]
    parsed, shas, problems = [], {}, []
    for file in files:
        try:
            data = landing.read(file)
        except DropUnreadableError as e:
            if e.transient:
                raise
            problems.append(str(e))  # and the other files are still read and reported
            continue
        shas[file.name] = hashlib.sha256(data).hexdigest()
        try:
            parsed.append((file.uri, shas[file.name], parse_drop_file(file, data)))
        except DropFileError as e:
            target = landing.quarantine(file, data, e.problem)
            problems.append(f"{e} (copied to quarantine: {target})")
    if problems:
        return None, problems
    frame = raw_from_files(parsed, partition)
    context.add_asset_metadata(_drop_metadata(files, shas, parsed, frame), partition_key=partition)
    return frame, []


def _drop_metadata(
    files: list[DropFile], shas: dict[str, str], parsed: list, frame: pl.DataFrame
) -> dict:
    return {
        DROP_FINGERPRINT_KEY: dg.MetadataValue.text(drop_fingerprint(files, shas)),
        SOURCE_FILES_KEY: dg.MetadataValue.json(
            [
                {
                    "uri": f.uri,
                    "size": f.size,
                    "generation": f.generation,
                    "sha256": shas[f.name],
                    "rows": df.height,
                }
                for f, (_, _, df) in zip(files, parsed, strict=True)
            ]
        ),
        "ml_platform/rows": dg.MetadataValue.int(frame.height),
    }
