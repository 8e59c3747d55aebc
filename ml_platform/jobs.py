"""Jobs: named selections that sensors, schedules and the CLI launch."""

from __future__ import annotations

import dagster as dg

from ml_platform.assets.raw import RAW_SHIPMENTS

# The sensor runs raw only; automation conditions carry clean and features along.
ingest_job = dg.define_asset_job(
    "ingest_shipments",
    selection=dg.AssetSelection.assets(RAW_SHIPMENTS),
    description="Reads one day's completed landing-zone drop into raw/shipments.",
)

# raw -> clean -> features for a partition range, in one run per backfill.
data_pipeline_job = dg.define_asset_job(
    "data_pipeline",
    selection=dg.AssetSelection.groups("raw", "clean", "features"),
    description="The data half of the graph: raw, clean (and rejects) and features.",
)
