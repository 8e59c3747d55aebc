"""ml_platform: partitioned data and model assets on Dagster, with exact provenance."""

import warnings

# The platform deliberately uses Dagster features still marked beta (per-output data
# versions, backfill policies, partition mappings that tolerate days before the start).
warnings.filterwarnings("ignore", message=r".*is currently in beta.*")
