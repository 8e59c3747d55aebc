"""dev: the Dagster UI, daemon and code server on this repository's workspace.

Runs ``dg dev`` (dagster-dg-cli, pinned with dagster), Dagster's current local dev command:
``dagster dev`` still works but warns that it is superseded by ``dg dev``. Given a
workspace file, ``dg dev`` starts the same webserver, daemon and code server, and on Ctrl-C
(SIGINT) or SIGTERM it stops all three before it exits.

``--read-only`` serves the analyst UI instead: ``dagster-webserver --read-only`` on the same
instance and workspace (no daemon; the operator UI's daemon keeps running things), on port 3001
by default so it runs beside the operator UI on 3000, as the Kubernetes values' read-only
webserver does. Everything can be browsed; nothing can be launched, re-executed, terminated
or switched on or off, in the UI or through its GraphQL API.
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
    dev.add_argument("--port", type=int, default=None, help="default 3000 (--read-only: 3001)")
    dev.add_argument(
        "--read-only",
        action="store_true",
        help="the analyst UI: a read-only webserver on the same instance (no daemon)",
    )
    dev.set_defaults(handler=run_dev)


def run_dev(args: argparse.Namespace) -> int:
    """Replace this process with `dg dev` (or the read-only webserver) on the repo's workspace."""
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
    workspace = ["-w", str(REPO_ROOT / "workspace.yaml"), "-h", "127.0.0.1"]
    if args.read_only:
        port = args.port or 3001
        cmd = [_tool("dagster-webserver"), *workspace, "-p", str(port), "--read-only"]
    else:
        cmd = [_tool("dg"), "dev", *workspace, "-p", str(args.port or 3000)]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}\n{' '.join(cmd)}", flush=True)
    os.execv(cmd[0], cmd)
    return 0


def _tool(name: str) -> str:
    """The executable next to this interpreter: the one of the locked environment."""
    path = str(Path(sys.executable).with_name(name))
    return path if Path(path).is_file() else shutil.which(name) or path
