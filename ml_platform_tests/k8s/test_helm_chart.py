"""The platform's own chart: helm lint, helm template, every manifest against Kubernetes schemas."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dagster_k8s.utils import get_common_labels

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
        ("NetworkPolicy", "ml-platform-webserver"),
        ("NetworkPolicy", "ml-platform-webserver-read-only"),
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


# Pods as the official chart and dagster-k8s label them (release `dagster`).
WEBSERVER = {"app.kubernetes.io/instance": "dagster", "component": "dagster-webserver"}
READ_ONLY_WEBSERVER = {
    "app.kubernetes.io/instance": "dagster",
    "component": "dagster-webserver-read-only",
}
CODE_SERVER = {
    "app.kubernetes.io/instance": "dagster",
    "component": "user-deployments",
    "deployment": "ml-platform",
}
DAEMON = {"app.kubernetes.io/instance": "dagster", "component": "dagster-daemon"}
# A run pod: dagster-k8s' common labels plus its component (construct_dagster_k8s_job).
RUN_POD = {**get_common_labels(), "app.kubernetes.io/component": "run_worker"}
OPERATOR_TOOL = {"ml-platform/webserver-client": "true"}
LOAD_BALANCER = "35.191.4.2"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


def _peer_admits(peer: dict[str, Any], source: dict[str, str] | str) -> bool:
    import ipaddress

    if isinstance(source, str):
        block = peer.get("ipBlock")
        return bool(block) and ipaddress.ip_address(source) in ipaddress.ip_network(block["cidr"])
    # A podSelector without a namespaceSelector means pods of the policy's own namespace.
    return "podSelector" in peer and _matches(peer["podSelector"], source)


def admitted(policies: list[dict[str, Any]], pod: dict[str, str], source: Any) -> bool:
    """Kubernetes' ingress rule: allowed when no policy selects the pod, or one rule admits."""
    selecting = [p for p in policies if _matches(p["spec"]["podSelector"], pod)]
    if not selecting:
        return True
    rules = [rule for p in selecting for rule in p["spec"].get("ingress", [])]
    return any(
        "from" not in rule or any(_peer_admits(peer, source) for peer in rule["from"])
        for rule in rules
    )


@pytest.mark.parametrize("env", sorted(ENV_VALUES))
def test_only_operators_reach_the_full_webserver(helm: Path, env: str) -> None:
    """Run pods execute user code in this namespace: they may read, but never launch or wipe."""
    policies = [m for m in render(helm, env) if m["kind"] == "NetworkPolicy"]
    assert not admitted(policies, WEBSERVER, RUN_POD)
    assert not admitted(policies, WEBSERVER, LOAD_BALANCER)
    assert admitted(policies, WEBSERVER, OPERATOR_TOOL)
    assert admitted(policies, READ_ONLY_WEBSERVER, RUN_POD)
    assert admitted(policies, READ_ONLY_WEBSERVER, LOAD_BALANCER)
    assert not admitted(policies, CODE_SERVER, RUN_POD)
    assert admitted(policies, CODE_SERVER, WEBSERVER)
    assert admitted(policies, CODE_SERVER, DAEMON)


def test_operator_sources_for_the_full_webserver_are_configurable(helm: Path) -> None:
    cidr = "10.8.0.0/28"
    policies = [
        m
        for m in render(
            helm,
            "prod",
            "--set-json",
            f'networkPolicy.webserver.ingressFrom=[{{"ipBlock":{{"cidr":"{cidr}"}}}}]',
        )
        if m["kind"] == "NetworkPolicy"
    ]
    assert admitted(policies, WEBSERVER, "10.8.0.3")
    assert not admitted(policies, WEBSERVER, LOAD_BALANCER)
    assert not admitted(policies, READ_ONLY_WEBSERVER, "10.8.0.3")
