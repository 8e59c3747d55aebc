"""Dagster's official chart at the pinned release, rendered with helm/values: what GKE would get.

The chart is not in this repository and CI cannot download it (no package registry ships it),
so this module is not part of the suite (its name is not test_*.py): run it where a copy is
present with ``scripts/check_official_chart`` (``DAGSTER_CHART=<dir or .tgz>``, or
``.cache/dagster-chart/dagster-1.13.27.tgz`` from ``helm pull dagster/dagster --version 1.13.27
-d .cache/dagster-chart``). Without a copy it fails, saying how to get one. ``helm template`` applies the
chart's own values.schema.json, so rendering at all checks our values against the real schema.

That schema ``$ref``s Kubernetes definitions by URL (raw.githubusercontent.com,
kubernetesjsonschema.dev), which helm fetches while rendering. So the check renders a copy of
the chart whose references point at the definitions ``kubernetes_validate`` ships for
``KUBERNETES_VERSION`` instead: it runs offline, and checks our values against the Kubernetes
release GKE runs rather than the 1.18/1.19 ones the chart names.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ml_platform.devtools.helm import (
    DAGSTER_CHART_VERSION,
    chart_metadata,
    official_dagster_chart,
    offline_copy,
)
from ml_platform_tests.k8s.conftest import (
    KUBERNETES_VERSION,
    PROD_INSTANCE_ENV,
    VALUES_FILES,
    class_config,
    load_yaml,
)

RELEASE = "dagster"
NAMESPACE = "ml-platform"
CHART = official_dagster_chart()

if CHART is None:
    raise pytest.UsageError(
        f"official dagster chart {DAGSTER_CHART_VERSION} not present: set DAGSTER_CHART or run "
        f"`helm pull dagster/dagster --version {DAGSTER_CHART_VERSION} -d .cache/dagster-chart`"
    )

Manifests = list[dict[str, Any]]


@functools.cache
def offline_chart() -> Path:
    """CHART, copied so that it renders offline (see the module docstring)."""
    return offline_copy(CHART, KUBERNETES_VERSION, Path(tempfile.mkdtemp(prefix="dagster-chart-")))


@functools.cache
def render(helm: Path, env: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [str(helm), "template", RELEASE, str(offline_chart()), "--namespace", NAMESPACE,
         "--kube-version", KUBERNETES_VERSION, "-f", str(VALUES_FILES[env])],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=sorted(VALUES_FILES), ids=lambda env: f"dagster-{env}")
def rendered(request: pytest.FixtureRequest, helm: Path) -> tuple[str, Manifests]:
    return request.param, list(render(helm, request.param))


def by_kind(manifests: Manifests, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def instance_yaml(manifests: Manifests) -> dict[str, Any]:
    config_map = by_kind(manifests, "ConfigMap")[f"{RELEASE}-instance"]
    return yaml.safe_load(config_map["data"]["dagster.yaml"])


def test_the_chart_is_the_pinned_release() -> None:
    assert CHART is not None
    assert str(chart_metadata(CHART)["version"]) == DAGSTER_CHART_VERSION
    for path in VALUES_FILES.values():
        assert f"--version {DAGSTER_CHART_VERSION}" in path.read_text()


def test_instance_queues_runs_within_the_promised_limits(rendered: tuple[str, Manifests]) -> None:
    env, manifests = rendered
    values = load_yaml(VALUES_FILES[env])["concurrency"]
    instance = instance_yaml(manifests)
    coordinator = instance["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    # Limits only in `concurrency`: Dagster rejects them in both places.
    for key in (
        "max_concurrent_runs",
        "tag_concurrency_limits",
        "block_op_concurrency_limited_runs",
    ):
        assert key not in (coordinator.get("config") or {}), key
    runs = instance["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == values["runs"]["maxConcurrentRuns"]
    assert runs["tag_concurrency_limits"] == values["runs"]["tagConcurrencyLimits"]
    pools = instance["concurrency"]["pools"]
    assert pools["default_limit"] == values["pools"]["defaultLimit"]
    assert pools["granularity"] == values["pools"]["granularity"]


def test_instance_launches_k8s_jobs_stores_in_postgres_and_logs_to_gcs(
    rendered: tuple[str, Manifests],
) -> None:
    env, manifests = rendered
    values = load_yaml(VALUES_FILES[env])
    instance = instance_yaml(manifests)
    launcher = instance["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
    assert launcher["config"]["postgres_password_secret"] == "ml-platform-postgresql"
    assert launcher["config"]["env_secrets"] == ["ml-platform-env"]
    # Older charts write run/event/schedule storages, newer ones `storage.postgres`.
    storages = (
        [instance["storage"]["postgres"]]
        if "storage" in instance
        else [instance[k]["config"] for k in ("run_storage", "event_log_storage")]
    )
    for storage in storages:
        db = storage["postgres_db"]
        assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}, "password only from the Secret"
        assert db["hostname"] == values["postgresql"]["postgresqlHost"]
        assert db["scheme"] == "postgresql+psycopg2"
    logs = instance["compute_logs"]
    assert logs["class"] == "GCSComputeLogManager"
    bucket = values["computeLogManager"]["config"]["gcsComputeLogManager"]["bucket"]
    assert logs["config"]["bucket"] == bucket


def test_dagster_accepts_the_rendered_instance(
    rendered: tuple[str, Manifests], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every class the chart writes loads through Dagster and accepts the config it gets."""
    from ml_platform_tests.dagster_internals import InstanceRef

    _, manifests = rendered
    for name, value in PROD_INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(manifests)))
    ref = InstanceRef.from_dir(str(tmp_path))
    classes = (
        ref.run_storage_data,
        ref.event_storage_data,
        ref.schedule_storage_data,
        ref.run_launcher_data,
        ref.run_coordinator_data,
        ref.scheduler_data,
        ref.compute_logs_data,
    )
    for data in classes:
        class_config(data)  # importable, and its config valid for it
    loaded = {data.class_name for data in classes}
    assert {"QueuedRunCoordinator", "K8sRunLauncher", "GCSComputeLogManager"} <= loaded
    # The queue itself, built as the daemon builds it (it needs no service to start).
    assert type(ref.run_coordinator).__name__ == "QueuedRunCoordinator"


def test_deployments_and_services_have_the_documented_names(
    rendered: tuple[str, Manifests],
) -> None:
    _, manifests = rendered
    deployments = set(by_kind(manifests, "Deployment"))
    assert deployments == {
        f"{RELEASE}-dagster-webserver",
        f"{RELEASE}-dagster-webserver-read-only",
        f"{RELEASE}-daemon",
        f"{RELEASE}-dagster-user-deployments-ml-platform",
    }
    services = set(by_kind(manifests, "Service"))
    # helm/README.md's port-forward commands use these.
    assert {f"{RELEASE}-dagster-webserver", f"{RELEASE}-dagster-webserver-read-only"} <= services
    assert "ml-platform" in services  # the code server's gRPC service, by deployment name


def test_our_budgets_and_policies_select_the_rendered_pods(
    rendered: tuple[str, Manifests], helm: Path
) -> None:
    """Every selector in helm/ml-platform matches pods the official chart really creates."""
    from ml_platform_tests.k8s.test_helm_chart import render as render_platform

    env, manifests = rendered
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in by_kind(manifests, "Deployment").items()
    }

    def selected(selector: dict[str, Any]) -> set[str]:
        def matches(labels: dict[str, str]) -> bool:
            if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
                return False
            return all(
                labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])
            )

        return {name for name, labels in pods.items() if matches(labels)}

    platform = render_platform(helm, env)
    budgets = by_kind(platform, "PodDisruptionBudget")
    assert selected(budgets["ml-platform-code-server"]["spec"]["selector"]) == {
        f"{RELEASE}-dagster-user-deployments-ml-platform"
    }
    for name, budget in budgets.items():
        if "webserver" in name:
            assert selected(budget["spec"]["selector"]) == {name.replace("ml-platform", RELEASE)}
    policies = by_kind(platform, "NetworkPolicy")
    for name in ("webserver", "webserver-read-only"):
        policy = policies[f"ml-platform-{name}"]
        assert selected(policy["spec"]["podSelector"]) == {f"{RELEASE}-dagster-{name}"}


def test_every_rendered_manifest_is_valid_kubernetes(rendered: tuple[str, Manifests]) -> None:
    _, manifests = rendered
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_chart_schema_rejects_a_misspelled_key(helm: Path, tmp_path: Path) -> None:
    """The chart's own values.schema.json is applied (stricter than our subset where it differs)."""
    values = load_yaml(VALUES_FILES["prod"])
    values["dagsterWebserver"]["enableReadonly"] = values["dagsterWebserver"].pop("enableReadOnly")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [str(helm), "template", RELEASE, str(offline_chart()), "-f", str(broken)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "enableReadonly" in result.stderr
