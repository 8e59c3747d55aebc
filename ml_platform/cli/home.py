"""Where the command finds the platform: DAGSTER_HOME and the landing zone defaults."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def with_default_landing(argv: list[str]) -> list[str]:
    if any(a.startswith("--landing-root") for a in argv) or any(
        a in ("-h", "--help") for a in argv
    ):
        return argv
    from ml_platform.settings import load_settings

    return ["--landing-root", str(load_settings().landing_root), *argv]


def use_platform_dagster_home() -> None:
    """DAGSTER_HOME defaults to <ML_PLATFORM_HOME>/dagster, seeded with the repo's dagster.yaml."""
    from ml_platform.settings import load_settings

    if "DAGSTER_HOME" not in os.environ:
        os.environ["DAGSTER_HOME"] = str(load_settings().home / "dagster")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    source = REPO_ROOT / "dagster.yaml"
    if source.is_file() and not (home / "dagster.yaml").exists():
        shutil.copyfile(source, home / "dagster.yaml")
    # Dagster's first-visit newsletter dialog would cover the UI for every analyst.
    (home / ".nux").mkdir(exist_ok=True)
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
