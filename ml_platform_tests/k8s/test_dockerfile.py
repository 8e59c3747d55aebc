"""The user-code Dockerfile, checked by parsing: CI has no container engine to build it."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache

import pytest

from ml_platform_tests.k8s.conftest import REPO, VALUES_FILES, load_yaml


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def runtime(self) -> Stage:
        return self.stages[-1]

    @property
    def runtime_user(self) -> str:
        users = self.runtime.all("USER")
        assert users, "the runtime stage never sets USER"
        return users[-1]

    def exec_form(self, keyword: str) -> list[str]:
        values = self.runtime.all(keyword)
        assert values, f"the runtime stage has no {keyword}"
        return json.loads(values[-1])


@cache
def parse_dockerfile() -> Dockerfile:
    """Instructions per stage, with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages)


def test_multi_stage_build_on_slim_python_3_11() -> None:
    dockerfile = parse_dockerfile()
    assert len(dockerfile.stages) >= 2
    assert dockerfile.runtime.base.startswith("python:3.11-slim")
    # The runtime stage takes only the built environment from the builder, no build tools.
    copies = dockerfile.runtime.all("COPY")
    assert copies and all(c.startswith("--from=builder") for c in copies)
    assert not any("uv" in run.split()[:3] for run in dockerfile.runtime.all("RUN"))


def test_dependencies_come_from_the_committed_lock() -> None:
    builder = parse_dockerfile().stages[0]
    syncs = [run for run in builder.all("RUN") if "uv sync" in run]
    assert syncs, "the builder never runs uv sync"
    for run in syncs:
        flags = shlex.split(run[run.index("uv sync") :])
        assert "--frozen" in flags and "--no-dev" in flags, run
    assert any("uv.lock" in copy for copy in builder.all("COPY"))


def test_runs_as_a_non_root_user() -> None:
    user = parse_dockerfile().runtime_user
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER {user}: use a numeric non-root uid"


def test_no_secrets_baked_into_the_image() -> None:
    dockerfile = parse_dockerfile()
    for stage in dockerfile.stages:
        for keyword, args in stage.instructions:
            if keyword in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"(?i)(password|secret|token|credential|api_?key)", args), args
            if keyword in ("COPY", "ADD"):
                assert not re.search(r"(?i)(\.env\b|credentials|\.json\b|\.pem\b|\.key\b)", args), (
                    args
                )
    env = " ".join(dockerfile.runtime.all("ENV"))
    assert "ML_PLATFORM_DEPLOYMENT=prod" in env


@pytest.mark.parametrize("env", sorted(VALUES_FILES))
def test_cmd_and_port_match_the_helm_values(env: str) -> None:
    """The image's own CMD is exactly what the official chart runs for the user deployment."""
    dockerfile = parse_dockerfile()
    deployment = load_yaml(VALUES_FILES[env])["dagster-user-deployments"]["deployments"][0]
    port = deployment["port"]
    assert dockerfile.runtime.all("EXPOSE") == [str(port)]
    # The chart's container args for codeServerArgs (dagster-user-deployments/deployment-user.yaml).
    chart_args = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", str(port)]
    assert dockerfile.exec_form("CMD") == chart_args + deployment["codeServerArgs"]
    assert not dockerfile.runtime.all("ENTRYPOINT"), (
        "the chart passes args; an ENTRYPOINT would prefix them"
    )


def test_the_cmd_serves_the_real_code_location(platform_home) -> None:
    """-m/-a in CMD name a module attribute that is the platform's Definitions."""
    import importlib

    import dagster as dg

    cmd = parse_dockerfile().exec_form("CMD")
    module = importlib.import_module(cmd[cmd.index("-m") + 1])
    assert isinstance(getattr(module, cmd[cmd.index("-a") + 1]), dg.Definitions)


def test_dockerignore_keeps_the_context_to_what_is_copied() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and line[0] != "#"
    ]
    assert lines[0] == "*" and "!uv.lock" in lines and "!ml_platform/" in lines
