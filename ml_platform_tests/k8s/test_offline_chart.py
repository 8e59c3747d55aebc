"""Charts whose schemas reference Kubernetes definitions by URL render offline from a copy.

Dagster's official chart does (ml_platform_tests/k8s/official_chart_check.py renders it this
way by hand); here a small chart of the same shape, with a packaged subchart, is rendered in
CI, where no URL can be fetched.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import yaml

from ml_platform.devtools.helm import offline_copy
from ml_platform_tests.k8s.conftest import KUBERNETES_VERSION

# The two hosts Dagster's chart schemas name (parent and user-deployments subchart).
PROBE_REFS = {
    "parent": "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/"
    "_definitions.json#/definitions/io.k8s.api.core.v1.Probe",
    "sub": "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json#/definitions/"
    "io.k8s.api.core.v1.Probe",
}
TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Chart.Name }}-probe
data:
  probe: {{ .Values.probe | toJson | quote }}
"""


def _chart(root: Path, name: str, ref: str) -> Path:
    chart = root / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": name, "version": "1.0.0"})
    )
    (chart / "values.yaml").write_text(yaml.safe_dump({"probe": {"periodSeconds": 10}}))
    schema = {"type": "object", "properties": {"probe": {"$ref": ref}}}
    (chart / "values.schema.json").write_text(json.dumps(schema))
    (chart / "templates" / "configmap.yaml").write_text(TEMPLATE)
    return chart


def _packaged_parent(tmp_path: Path) -> Path:
    """parent-1.0.0.tgz holding charts/sub-1.0.0.tgz, as `helm package` and `helm pull` give."""
    parent = _chart(tmp_path / "src", "parent", PROBE_REFS["parent"])
    meta = yaml.safe_load((parent / "Chart.yaml").read_text())
    meta["dependencies"] = [{"name": "sub", "version": "1.0.0"}]
    (parent / "Chart.yaml").write_text(yaml.safe_dump(meta))
    sub = _chart(tmp_path / "src", "sub", PROBE_REFS["sub"])
    (parent / "charts").mkdir()
    with tarfile.open(parent / "charts" / "sub-1.0.0.tgz", "w:gz") as tar:
        tar.add(sub, arcname="sub")
    packaged = tmp_path / "parent-1.0.0.tgz"
    with tarfile.open(packaged, "w:gz") as tar:
        tar.add(parent, arcname="parent")
    return packaged


def _template(helm: Path, chart: Path, *values: Path) -> subprocess.CompletedProcess[str]:
    args = [arg for path in values for arg in ("-f", str(path))]
    return subprocess.run(
        [str(helm), "template", "r", str(chart), "--kube-version", KUBERNETES_VERSION, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_packaged_chart_with_remote_schema_refs_renders_offline(
    helm: Path, tmp_path: Path
) -> None:
    chart = offline_copy(_packaged_parent(tmp_path), KUBERNETES_VERSION, tmp_path / "work")

    for schema in chart.rglob("values.schema.json"):
        text = schema.read_text()
        assert "https://" not in text and "file://" in text, schema
    result = _template(helm, chart)
    assert result.returncode == 0, result.stderr
    names = {doc["metadata"]["name"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert names == {"parent-probe", "sub-probe"}


def test_the_copy_still_applies_the_schemas_kubernetes_definitions(
    helm: Path, tmp_path: Path
) -> None:
    chart = offline_copy(_packaged_parent(tmp_path), KUBERNETES_VERSION, tmp_path / "work")
    for scope, values in {
        "parent": {"probe": {"periodSeconds": "often"}},
        "sub": {"sub": {"probe": {"periodSeconds": "often"}}},
    }.items():
        path = tmp_path / f"bad-{scope}.yaml"
        path.write_text(yaml.safe_dump(values))
        result = _template(helm, chart, path)
        assert result.returncode != 0, scope
        assert "periodSeconds" in result.stderr, result.stderr
