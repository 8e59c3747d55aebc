"""Deployment settings, read from environment variables in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DEPLOYMENTS = ("local", "prod")
DEFAULT_START_DATE = date(2026, 1, 1)
# `ml-platform demo` records its first day here, so a local home's daily partitions begin where
# its data begins (ML_PLATFORM_START_DATE still overrides it).
START_DATE_FILE = "start_date"


@dataclass(frozen=True)
class Settings:
    deployment: str
    home: Path
    start_date: date
    # Expected rows in one daily drop, and how many rows one backfill run should hold:
    # together they size backfill chunks (memory grows with rows per run, not range length).
    rows_per_day: int = 200_000
    backfill_rows_per_run: int = 1_000_000

    @property
    def backfill_days_per_run(self) -> int:
        """Days of data one backfill run holds: about ``backfill_rows_per_run`` rows."""
        return max(1, self.backfill_rows_per_run // self.rows_per_day)

    @property
    def landing_root(self) -> Path:
        return Path(os.environ.get("ML_PLATFORM_LANDING_ROOT", self.home / "landing"))

    @property
    def storage_root(self) -> Path:
        return Path(os.environ.get("ML_PLATFORM_STORAGE_ROOT", self.home / "storage"))

    @property
    def sql_memory_limit(self) -> str:
        """What `ml-platform sql` keeps in memory before DuckDB spills to disk (read when the
        command runs, so a bad value fails it alone)."""
        return _sql_memory("ML_PLATFORM_SQL_MEMORY_LIMIT", "2GB")

    @property
    def sql_scratch(self) -> Path:
        """Where `ml-platform sql` copies stored objects and spills (see analytics/scratch.py)."""
        return Path(os.environ.get("ML_PLATFORM_SQL_SCRATCH", self.home / "sql-scratch"))

    @property
    def quarantine_root(self) -> Path:
        return Path(os.environ.get("ML_PLATFORM_QUARANTINE_ROOT", self.home / "quarantine"))


def load_settings() -> Settings:
    """Read ML_PLATFORM_* variables; defaults give the embedded local deployment."""
    deployment = os.environ.get("ML_PLATFORM_DEPLOYMENT", "local")
    if deployment not in DEPLOYMENTS:
        raise ValueError(
            f"ML_PLATFORM_DEPLOYMENT={deployment!r} is not one of {', '.join(DEPLOYMENTS)}"
        )
    home = Path(os.environ.get("ML_PLATFORM_HOME", Path.cwd() / ".ml_platform")).absolute()
    start = _start_date(deployment, home)
    return Settings(
        deployment=deployment,
        home=home,
        start_date=start,
        rows_per_day=_positive_int("ML_PLATFORM_ROWS_PER_DAY", 200_000),
        backfill_rows_per_run=_positive_int("ML_PLATFORM_BACKFILL_ROWS_PER_RUN", 1_000_000),
    )


def _start_date(deployment: str, home: Path) -> date:
    """ML_PLATFORM_START_DATE, else (local) the demo's recorded first day, else 2026-01-01."""
    text = os.environ.get("ML_PLATFORM_START_DATE")
    source = f"ML_PLATFORM_START_DATE={text!r}"
    if text is None and deployment == "local":
        record = home / START_DATE_FILE
        text = record.read_text().strip() if record.is_file() else None
        source = f"{record} ({text!r})"
    if not text:
        return DEFAULT_START_DATE
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"{source} is not a day written YYYY-MM-DD ({e})") from None


def _positive_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r} must be a positive whole number")
    return int(text)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([KMGT])(i?))?B", re.IGNORECASE)
_SMALLEST_SQL_MEMORY = 64 * 10**6  # DuckDB needs room for its buffers and a query's state


def _sql_memory(name: str, default: str) -> str:
    """A DuckDB memory limit (512MB, 4GB, 2GiB ...) of at least 64MB."""
    text = os.environ.get(name, default).strip()
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{name}={text!r} must be a size such as 512MB or 4GB")
    number, unit, binary = match.groups()
    power = "KMGT".index(unit.upper()) + 1 if unit else 0
    size = float(number) * (1024 if binary else 1000) ** power
    if size < _SMALLEST_SQL_MEMORY:
        raise ValueError(f"{name}={text!r} is too small: DuckDB needs at least 64MB")
    return text
