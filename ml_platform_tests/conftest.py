"""Shared fixtures live in ml_platform_tests/fixtures, one module per real service."""

pytest_plugins = [
    "ml_platform_tests.fixtures.dagster",
    "ml_platform_tests.fixtures.postgres",
    "ml_platform_tests.fixtures.gcs",
]
