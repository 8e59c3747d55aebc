"""dev: the Dagster UI, daemon and code server on this repository's workspace.

Runs ``dg dev`` (dagster-dg-cli, pinned with dagster), Dagster's current local dev command:
``dagster dev`` still works but warns that it is superseded by ``dg dev``. Given a
workspace file, ``dg dev`` starts the same webserver, daemon and code server, and on Ctrl-C
(SIGINT) or SIGTERM it stops all three before it exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ml_platform.cli.home import REPO_ROOT


def add_parsers(commands) -> None:
    dev = commands.add_parser("dev", help="start the Dagster UI, daemon and code server (dg dev)")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(handler=run_dev)


def run_dev(args: argparse.Namespace) -> int:
    """Replace this process with `dg dev` on the repo's workspace."""
    from ml_platform.settings import load_settings

    # The UI's processes find the platform's folders by ML_PLATFORM_HOME, not by their cwd;
    # starting in DAGSTER_HOME keeps Dagster from warning about the repo's dagster.yaml.
    os.environ["ML_PLATFORM_HOME"] = str(load_settings().home)
    os.chdir(os.environ["DAGSTER_HOME"])
    # The one preview notice the code location triggers (partitioned asset checks) is for
    # the platform's developers, not for whoever starts the UI.
    os.environ.setdefault(
        "PYTHONWARNINGS", "ignore:Specifying a partitions_def on an AssetCheckSpec"
    )
    # The dg next to this interpreter: the one of the locked environment.
    dg = str(Path(sys.executable).with_name("dg"))
    if not Path(dg).is_file():
        dg = shutil.which("dg") or dg
    cmd = [
        dg,
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
