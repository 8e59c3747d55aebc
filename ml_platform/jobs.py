"""Jobs: named selections that sensors, schedules and the CLI launch."""

from __future__ import annotations

import dagster as dg

from ml_platform.assets.predictions import PREDICTIONS_KEY, QUALITY_KEY
from ml_platform.assets.raw import RAW_SHIPMENTS
from ml_platform.provenance.champion import CHAMPION_KEY, PRICE_MODEL_KEY

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

# The CLI's model commands are thin shells over these jobs (ml_platform/cli/models.py).
train_job = dg.define_asset_job(
    "train_price_model",
    selection=dg.AssetSelection.assets(PRICE_MODEL_KEY),
    description="Trains one week's price model (hyperparameters in the launchpad config).",
)
promote_job = dg.define_asset_job(
    "promote_champion",
    selection=dg.AssetSelection.assets(CHAMPION_KEY),
    description="Makes a model week live (or rolls back to one); config: week, reason.",
)
predict_job = dg.define_asset_job(
    "predict_prices",
    selection=dg.AssetSelection.assets(PREDICTIONS_KEY, QUALITY_KEY),
    description="Scores days with the live champion and measures the quotes' quality.",
)
