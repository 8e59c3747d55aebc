"""Shared fixtures live in ml_platform_tests/fixtures, one module per real service."""

import os

# Tests run on fixed dates: the demo starts on this day instead of ending today (the UI tests,
# which need the most recent days, drop it for their own platform).
os.environ.setdefault("ML_PLATFORM_START_DATE", "2026-01-01")

pytest_plugins = [
    "ml_platform_tests.fixtures.dagster",
    "ml_platform_tests.fixtures.postgres",
    "ml_platform_tests.fixtures.gcs",
]
