"""Dagster's own storage on Postgres: runs, events and sensor cursors survive restarts.

Starts the real dagster-webserver and dagster-daemon against an instance configured by
deploy/prod/dagster.yaml's storage section (pointed at the test server through the
DAGSTER_PG_* variables), lets the sensor tick and its run finish, stops both processes,
starts them again and checks that everything is still there and the sensor resumes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_platform.devtools.postgres_server import free_port
from ml_platform_tests.processes import signals_as_from_a_terminal

ROOT = Path(__file__).resolve().parents[2]
PROD_YAML = ROOT / "deploy" / "prod" / "dagster.yaml"
LOCATION = "ml_platform_tests.postgres.storage_location"
BIN = Path(sys.executable).parent


def _dagster_home(tmp_path: Path) -> Path:
    prod = yaml.safe_load(PROD_YAML.read_text())
    # The instance sections this test exercises; launchers and compute logs stay local.
    config = {k: prod[k] for k in ("storage", "retention", "telemetry")}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


class Processes:
    """dagster-webserver and dagster-daemon, each in its own process group.

    Both load the code location from one gRPC code server started once (the test is about
    storage; two extra code servers per round would only double the start-up time).
    """

    def __init__(self, env: dict[str, str], port: int, logs: Path) -> None:
        self.env, self.port, self.logs = env, port, logs
        self.procs: list[subprocess.Popen] = []
        self.code_server: subprocess.Popen | None = None
        self.workspace = logs / "workspace.yaml"

    def start_code_server(self) -> None:
        port = free_port()
        self.workspace.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {
                            "grpc_server": {
                                "host": "127.0.0.1",
                                "port": port,
                                "location_name": "storage_location",
                            }
                        }
                    ]
                }
            )
        )
        cmd = [str(BIN / "dagster"), "api", "grpc", "-m", LOCATION, "-h", "127.0.0.1"]
        self.code_server = self._spawn("code-server", [*cmd, "-p", str(port)])
        _wait("the code server", lambda: _listening(port))

    def start(self, round_: int) -> None:
        workspace = ["-w", str(self.workspace)]
        self.procs = [
            self._spawn(f"daemon-{round_}", [str(BIN / "dagster-daemon"), "run", *workspace]),
            self._spawn(
                f"webserver-{round_}",
                [
                    str(BIN / "dagster-webserver"),
                    *workspace,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
            ),
        ]

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as log:
            return subprocess.Popen(
                cmd,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # stop() sends SIGTERM: not ignored, as in a suite run in the background.
                preexec_fn=signals_as_from_a_terminal,
            )

    def stop(self, code_server: bool = False) -> None:
        if code_server and self.code_server is not None:
            self.procs.append(self.code_server)
            self.code_server = None
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []

    def graphql(self, query: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        body = json.dumps({"query": query}).encode()
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}/graphql",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.loads(response.read())["data"]
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _wait(what: str, condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId status } } } }"


def _sensor_state(instance: dg.DagsterInstance):
    states = instance.all_instigator_state()
    return next((s for s in states if s.instigator_name == "counting_sensor"), None)


def _cursor(instance: dg.DagsterInstance) -> int:
    state = _sensor_state(instance)
    return int(state.instigator_data.cursor or 0) if state and state.instigator_data else 0


@pytest.mark.slow
def test_runs_events_and_sensor_cursors_survive_restarts(pg, tmp_path):
    home = _dagster_home(tmp_path)
    env = {
        **os.environ,
        **pg.env("DAGSTER_PG_"),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    processes = Processes(env, free_port(), tmp_path)
    os.environ.update(pg.env("DAGSTER_PG_"))  # for this process's view of the instance
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        processes.start_code_server()
        processes.start(1)
        run = _wait("the sensor's run to succeed", lambda: _successful_run(processes))
        processes.stop()
        cursor_before = _cursor(instance)
        events_before = len(instance.all_logs(run["runId"]))

        processes.start(2)
        restarted_at = time.time()
        runs = processes.graphql(RUNS_QUERY)["runsOrError"]["results"]
        assert runs == [run]  # the run is there, and the sensor did not ask again
        assert len(instance.all_logs(run["runId"])) == events_before
        assert instance.fetch_materializations(dg.AssetKey("heartbeat"), limit=1).records
        state = _wait("a tick after the restart", lambda: _tick_after(instance, restarted_at))
        assert state.cursor == str(cursor_before + 1)  # resumed from the stored cursor
    finally:
        processes.stop(code_server=True)
        for name in pg.env("DAGSTER_PG_"):
            os.environ.pop(name, None)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _successful_run(processes: Processes):
    runs = processes.graphql(RUNS_QUERY)["runsOrError"]["results"]
    return next((r for r in runs if r["status"] == "SUCCESS"), None)


def _tick_after(instance: dg.DagsterInstance, after: float):
    state = _sensor_state(instance)
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
    finished = [t for t in ticks if t.status.value != "STARTED"]
    return min(finished, key=lambda t: t.timestamp) if finished else None
