"""The platform's own chart: helm lint, helm template, every manifest against Kubernetes schemas."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ml_platform_tests.k8s.conftest import HELM_DIR, KUBERNETES_VERSION, VALUES_FILES, load_yaml

CHART = HELM_DIR / "ml-platform"
ENV_VALUES = {"prod": [], "dev": [CHART / "values-dev.yaml"]}


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)


def render(helm: Path, env: str, *extra: str) -> list[dict[str, Any]]:
    value_args = [arg for path in ENV_VALUES[env] for arg in ("-f", str(path))]
    result = run_helm(
        helm, "template", "ml-platform", str(CHART), "--namespace", "ml-platform",
        "--kube-version", KUBERNETES_VERSION, *value_args, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("env", sorted(ENV_VALUES))
def test_chart_lints_strictly(helm: Path, env: str) -> None:
    value_args = [arg for path in ENV_VALUES[env] for arg in ("-f", str(path))]
    result = run_helm(helm, "lint", str(CHART), "--strict", *value_args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("env", sorted(ENV_VALUES))
def test_every_rendered_manifest_is_valid_kubernetes(helm: Path, env: str) -> None:
    manifests = render(helm, env)
    assert manifests, "the chart rendered nothing"
    for manifest in manifests:
        # strict: unknown fields are errors too, not only wrong types.
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_validation_rejects_a_broken_manifest(helm: Path) -> None:
    """The schema check above can fail: a misspelled field is caught."""
    policy = next(m for m in render(helm, "prod") if m["kind"] == "NetworkPolicy")
    broken = copy.deepcopy(policy)
    broken["spec"]["policyType"] = broken["spec"].pop("policyTypes")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_prod_renders_policies_and_budgets_for_webservers_and_code_server(helm: Path) -> None:
    manifests = render(helm, "prod")
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in manifests)
    assert kinds == [
        ("NetworkPolicy", "ml-platform-code-server"),
        ("NetworkPolicy", "ml-platform-webservers"),
        ("PodDisruptionBudget", "ml-platform-code-server"),
        ("PodDisruptionBudget", "ml-platform-dagster-webserver"),
        ("PodDisruptionBudget", "ml-platform-dagster-webserver-read-only"),
    ]


def test_dev_has_no_budgets_that_would_block_node_drains(helm: Path) -> None:
    budgets = [m for m in render(helm, "dev") if m["kind"] == "PodDisruptionBudget"]
    # Only the code server's, which admits a disruption: a single replica can always be drained.
    assert [b["metadata"]["name"] for b in budgets] == ["ml-platform-code-server"]
    assert budgets[0]["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/instance": "dagster",
                "component": "user-deployments",
                "deployment": "ml-platform",
            }
        },
    }


@pytest.mark.parametrize("env", sorted(ENV_VALUES))
def test_code_server_budget_selects_the_user_deployment(helm: Path, env: str) -> None:
    """Same pod selector as the code-server policy: the labels the official subchart sets."""
    manifests = render(helm, env)
    budget = next(
        m
        for m in manifests
        if m["kind"] == "PodDisruptionBudget" and m["metadata"]["name"].endswith("code-server")
    )
    policy = next(
        m
        for m in manifests
        if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].endswith("code-server")
    )
    assert budget["spec"]["selector"] == policy["spec"]["podSelector"]


@pytest.mark.parametrize("env", sorted(ENV_VALUES))
def test_code_server_policy_matches_the_user_deployment(helm: Path, env: str) -> None:
    """The policy selects the pod and port the official chart's values actually create."""
    deployment = load_yaml(VALUES_FILES[env])["dagster-user-deployments"]["deployments"][0]
    policy = next(m for m in render(helm, env) if m["metadata"]["name"].endswith("code-server"))
    assert policy["spec"]["podSelector"]["matchLabels"]["deployment"] == deployment["name"]
    assert policy["spec"]["ingress"][0]["ports"] == [
        {"protocol": "TCP", "port": deployment["port"]}
    ]


def test_read_only_budget_follows_the_official_values() -> None:
    """A PDB for a read-only webserver that does not exist would select nothing."""
    chart_values = load_yaml(CHART / "values.yaml")
    prod = load_yaml(VALUES_FILES["prod"])
    assert (
        chart_values["podDisruptionBudget"]["readOnlyWebserver"]
        == prod["dagsterWebserver"]["enableReadOnly"]
    )


def test_chart_schema_rejects_bad_values(helm: Path) -> None:
    value_args = ("--set", "codeServer.port=http")
    result = run_helm(helm, "template", "ml-platform", str(CHART), *value_args)
    assert result.returncode != 0
    assert "codeServer" in result.stderr
