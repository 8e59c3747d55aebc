"""dev: the Dagster UI, daemon and code server on this repository's workspace."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ml_platform.cli.home import REPO_ROOT


def add_parsers(commands) -> None:
    dev = commands.add_parser("dev", help="start the Dagster UI and daemon (dagster dev)")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=run_dev)


def run_dev(args: argparse.Namespace) -> int:
    """Replace this process with `dagster dev` on the repo's workspace."""
    from ml_platform.settings import load_settings

    # The UI's processes find the platform's folders by ML_PLATFORM_HOME, not by their cwd;
    # starting in DAGSTER_HOME keeps Dagster from warning about the repo's dagster.yaml.
    os.environ["ML_PLATFORM_HOME"] = str(load_settings().home)
    os.chdir(os.environ["DAGSTER_HOME"])
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    cmd = [
        dagster,
        "dev",
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(args.port),
    ]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n{' '.join(cmd)}", flush=True)
    os.execv(cmd[0], cmd)
    return 0
