"""Values for the official dagster chart: its schema, the platform's requirements, no secrets."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from ml_platform.execution import (
    K8S_SERVICE_ACCOUNT,
    PLATFORM_ENV_SECRET,
    POSTGRES_PASSWORD_SECRET,
)
from ml_platform_tests.k8s.conftest import HELM_DIR

SCHEMA_PATH = HELM_DIR / "values" / "schema" / "dagster-chart-1.13.values.subset.schema.json"
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
GSA_EMAIL = re.compile(
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)

Values = tuple[str, dict[str, Any]]


def schema_errors(values: dict[str, Any]) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


def test_values_match_the_official_chart_schema(chart_values: Values) -> None:
    _, values = chart_values
    assert schema_errors(values) == []


def test_schema_catches_a_misspelled_key(chart_values: Values) -> None:
    _, values = chart_values
    broken = copy.deepcopy(values)
    broken["dagsterWebserver"]["enableReadonly"] = broken["dagsterWebserver"].pop("enableReadOnly")
    assert any("enableReadonly" in error for error in schema_errors(broken))


# --- what the platform requires of a deployment -------------------------------------------


def test_postgres_is_external_with_the_password_only_in_an_existing_secret(
    chart_values: Values,
) -> None:
    _, values = chart_values
    pg = values["postgresql"]
    assert pg["enabled"] is False, "the chart must not deploy its own database"
    assert values["generatePostgresqlPasswordSecret"] is False, "the chart must not create a Secret"
    assert values["global"]["postgresqlSecretName"] == POSTGRES_PASSWORD_SECRET
    assert pg["postgresqlPassword"] == "", "the password belongs in the Secret, not in values"
    assert pg["postgresqlHost"] and pg["postgresqlDatabase"] and pg["postgresqlUsername"]
    # SQLAlchemy 2.1 would pick psycopg 3 for a plain postgresql:// URL.
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"


def test_runs_launch_as_kubernetes_jobs(chart_values: Values) -> None:
    _, values = chart_values
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    config = launcher["config"]["k8sRunLauncher"]
    assert {"name": PLATFORM_ENV_SECRET} in config["envSecrets"]
    assert_resources(config["resources"], "runLauncher")


def test_compute_logs_go_to_gcs(chart_values: Values) -> None:
    _, values = chart_values
    clm = values["computeLogManager"]
    assert clm["type"] == "GCSComputeLogManager"
    assert clm["config"]["gcsComputeLogManager"]["bucket"]


def test_analysts_get_a_read_only_webserver(chart_values: Values) -> None:
    _, values = chart_values
    assert values["dagsterWebserver"]["enableReadOnly"] is True


def test_service_accounts_use_workload_identity(chart_values: Values) -> None:
    _, values = chart_values
    user_sa = values["dagster-user-deployments"]["serviceAccount"]
    # Runs and steps run as the code location's service account; the executor names it too.
    assert user_sa["create"] is True and user_sa["name"] == K8S_SERVICE_ACCOUNT
    for where, sa in (("serviceAccount", values["serviceAccount"]), ("user deployments", user_sa)):
        assert GSA_EMAIL.match(sa["annotations"][WORKLOAD_IDENTITY]), where


def test_every_long_running_pod_has_requests_and_memory_limits(chart_values: Values) -> None:
    _, values = chart_values
    assert_resources(values["dagsterWebserver"]["resources"], "dagsterWebserver")
    assert_resources(values["dagsterDaemon"]["resources"], "dagsterDaemon")
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert_resources(deployment["resources"], deployment["name"])


def test_user_code_runs_the_image_as_its_non_root_user(chart_values: Values) -> None:
    from ml_platform_tests.k8s.test_dockerfile import parse_dockerfile

    _, values = chart_values
    uid = int(parse_dockerfile().runtime_user.split(":")[0])
    for deployment in values["dagster-user-deployments"]["deployments"]:
        pod = deployment["podSecurityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid
        container = deployment["securityContext"]
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"]["drop"] == ["ALL"]
        assert {"name": PLATFORM_ENV_SECRET} in deployment["envSecrets"]
        assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True


def test_backfills_are_limited(chart_values: Values) -> None:
    _, values = chart_values
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    runs = concurrency["runs"]
    assert 0 < runs["maxConcurrentRuns"] <= 20
    backfill = [t for t in runs["tagConcurrencyLimits"] if t["key"] == "dagster/backfill"]
    assert backfill and 0 < backfill[0]["limit"] < runs["maxConcurrentRuns"]
    assert concurrency["pools"]["defaultLimit"] >= 1
    # The queue that enforces them, explicitly: with runCoordinator disabled the official chart
    # writes SyncInMemoryRunCoordinator and every limit above goes unenforced.
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert values["dagsterDaemon"]["enabled"] is True
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    # Dagster rejects run limits, tag limits or the op-slot buffer in run_coordinator next to
    # `concurrency`; the chart omits the first two when unset and concurrency is enabled, and
    # null removes its default blockOpConcurrencyLimitedRuns.
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued.get("maxConcurrentRuns") is None
    assert not queued.get("tagConcurrencyLimits")
    assert (
        "blockOpConcurrencyLimitedRuns" in queued
        and queued["blockOpConcurrencyLimitedRuns"] is None
    )


def assert_resources(resources: dict[str, Any], where: str) -> None:
    assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
    assert resources["limits"]["memory"], where


# --- no secret literals ---------------------------------------------------------------------

SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret|token|credential|private[_-]?key|api[_-]?key|access[_-]?key)"
)
# Keys that name a Secret (a reference), never hold one.
REFERENCE_KEYS = {"postgresqlSecretName", "celeryConfigSecretName"}
SECRET_VALUE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key\"|AKIA[0-9A-Z]{16}|"
    r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"  # credentials in a URL
)


def secret_literals(node: Any, path: str = "") -> Iterator[str]:
    """Paths of values that look like secrets written in clear."""
    if isinstance(node, dict):
        # An env entry {name: X, value: V} names its key in `name`.
        if isinstance(node.get("name"), str) and "value" in node:
            if SECRET_KEY.search(node["name"]) and node["value"] not in ("", None):
                yield f"{path}/{node['name']}"
        for key, value in node.items():
            child = f"{path}/{key}"
            if (
                isinstance(value, str)
                and value
                and SECRET_KEY.search(str(key))
                and key not in REFERENCE_KEYS
            ):
                yield child
            yield from secret_literals(value, child)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from secret_literals(item, f"{path}/{i}")
    elif isinstance(node, str) and SECRET_VALUE.search(node):
        yield path


def test_values_hold_no_secret_literals(chart_values: Values) -> None:
    _, values = chart_values
    assert list(secret_literals(values)) == []


@pytest.mark.parametrize(
    "inject, expected",
    [
        (
            lambda v: v["postgresql"].update(postgresqlPassword="hunter2"),
            "/postgresql/postgresqlPassword",
        ),
        (
            lambda v: v["dagster-user-deployments"]["deployments"][0]["env"].append(
                {"name": "WAREHOUSE_PASSWORD", "value": "hunter2"}
            ),
            "/dagster-user-deployments/deployments/0/env/2/WAREHOUSE_PASSWORD",
        ),
        (
            lambda v: v["dagster-user-deployments"]["deployments"][0]["env"].append(
                {"name": "WAREHOUSE_DSN", "value": "postgresql://app:hunter2@db/warehouse"}
            ),
            "/dagster-user-deployments/deployments/0/env/2/value",
        ),
    ],
    ids=["password-key", "env-entry", "url-credentials"],
)
def test_the_secret_scan_finds_planted_secrets(chart_values: Values, inject, expected: str) -> None:
    _, values = chart_values
    planted = copy.deepcopy(values)
    inject(planted)
    assert expected in list(secret_literals(planted))
