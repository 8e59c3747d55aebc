"""Synthetic freight-shipment drops for the landing zone.

Each day becomes ``{landing_root}/shipments/{YYYY-MM-DD}/`` holding ``part-{i:03d}.csv`` /
``part-{i:03d}.parquet`` files and, written last, a ``_SUCCESS`` JSON manifest. Prices follow a
known formula (``expected_price`` in ml_platform/demo/prices.py) so models trained on the data
can be checked against the truth, and options inject a GB demand shock and corrupt rows for
cleaning steps to catch. Cities and lanes: ml_platform/demo/geography.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ml_platform.demo.geography import CITIES
from ml_platform.demo.geography import lanes as demo_lanes
from ml_platform.demo.prices import (
    DEFAULT_SHOCK_FACTOR,
    DEFAULT_SHOCK_LANES,
    MODES,
    NOISE_SIGMA,
    price_expr,
)

DATASET = "shipments"
MARKER_NAME = "_SUCCESS"
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"

REQUIRED_COLUMNS: tuple[str, ...] = ("shipment_id", "price_eur", "weight_kg", "transport_mode")
BAD_ROW_KINDS: tuple[str, ...] = ("null", "negative_weight", "unknown_mode", "duplicate_id")
UNKNOWN_MODES: tuple[str, ...] = ("hovercraft", "zeppelin", "pneumatic_tube")

SCHEMA = pl.Schema(
    {
        "shipment_id": pl.String(),
        "booked_at": pl.Datetime("us", "UTC"),
        "origin_city": pl.String(),
        "origin_country": pl.String(),
        "destination_city": pl.String(),
        "destination_country": pl.String(),
        "distance_km": pl.Float64(),
        "weight_kg": pl.Float64(),
        "volume_m3": pl.Float64(),
        "transport_mode": pl.String(),
        "carrier": pl.String(),
        "price_eur": pl.Float64(),
    }
)


# Travelled distance per great-circle km: roads wind, ships go around continents.
ROUTE_FACTOR: Mapping[str, float] = {"road": 1.25, "rail": 1.2, "sea": 1.7, "air": 1.05}
# (median kg, log-sigma, min kg, max kg) of a consignment per mode.
WEIGHT_MODEL: Mapping[str, tuple[float, float, float, float]] = {
    "road": (2500.0, 1.1, 5.0, 24_000.0),
    "rail": (9000.0, 0.8, 200.0, 60_000.0),
    "sea": (7000.0, 0.9, 100.0, 28_000.0),
    "air": (150.0, 1.2, 0.5, 8000.0),
}
DENSITY_MEDIAN_KG_M3 = 220.0
DENSITY_SIGMA = 0.6

# Carriers per mode, most popular first; some forwarders serve several modes.
CARRIERS: Mapping[str, tuple[str, ...]] = {
    "road": (
        "EuroHaul Logistics",
        "TransAlpina Freight",
        "Meridian Logistics",
        "NordRoad Cargo",
        "Vistula Trucking",
        "Atlas Forwarding",
    ),
    "rail": ("RailCargo Connect", "Meridian Logistics", "Continental Rail Freight"),
    "sea": (
        "BlueWave Shipping",
        "Oceanic Container Lines",
        "Atlas Forwarding",
        "Meridian Logistics",
    ),
    "air": ("SkyBridge Air Cargo", "AeroFreight Global", "Atlas Forwarding", "Meridian Logistics"),
}


@dataclass(frozen=True)
class GeneratorConfig:
    rows_per_day: int = 20_000
    files_per_drop: int = 2
    seed: int = 7
    shock_date: date | None = None
    shock_factor: float = DEFAULT_SHOCK_FACTOR
    bad_row_share: float = 0.0

    def __post_init__(self) -> None:
        if self.rows_per_day < 1:
            raise ValueError("rows_per_day must be >= 1")
        if not 1 <= self.files_per_drop <= 999:
            raise ValueError("files_per_drop must be in [1, 999]")
        # Above 0.5 there may not be enough clean rows to copy duplicate ids from.
        if not 0.0 <= self.bad_row_share <= 0.5:
            raise ValueError("bad_row_share must be in [0, 0.5]")
        if self.shock_factor <= 0:
            raise ValueError("shock_factor must be > 0")


@dataclass(frozen=True)
class DropSummary:
    partition: date
    directory: Path
    files: tuple[Path, ...]
    marker: Path
    rows: int
    bad_rows: Mapping[str, int]


# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


def _day_rngs(day: date, seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for clean rows and corruption, so bad rows never shift clean data."""
    clean, bad = np.random.SeedSequence([seed, day.toordinal()]).spawn(2)
    return np.random.default_rng(clean), np.random.default_rng(bad)


def _booking_offsets_us(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sorted microseconds into the day, clustered around office hours."""
    day_us = 86_400 * 1_000_000
    office = rng.normal(13.5 * 3600e6, 3.0 * 3600e6, n)
    anytime = rng.uniform(0, day_us, n)
    offsets = np.where(rng.random(n) < 0.8, office, anytime)
    return np.sort(np.clip(offsets, 0, day_us - 1).astype(np.int64))


def _weights_kg(rng: np.random.Generator, mode_idx: np.ndarray) -> np.ndarray:
    params = np.array([WEIGHT_MODEL[m] for m in MODES])[mode_idx]
    raw = rng.lognormal(np.log(params[:, 0]), params[:, 1])
    return np.round(np.clip(raw, params[:, 2], params[:, 3]), 1)


def _carriers(rng: np.random.Generator, mode_idx: np.ndarray) -> pl.Series:
    names = sorted({c for carriers in CARRIERS.values() for c in carriers})
    out = np.empty(mode_idx.size, dtype=np.int64)
    for m, mode in enumerate(MODES):
        rows = np.flatnonzero(mode_idx == m)
        choices = np.array([names.index(c) for c in CARRIERS[mode]])
        share = 1.0 / np.arange(1, choices.size + 1)
        out[rows] = rng.choice(choices, size=rows.size, p=share / share.sum())
    return pl.Series(names, dtype=pl.String).gather(out)


def _shipment_ids(day: date, n: int) -> pl.Series:
    width = max(6, len(str(n)))
    numbers = pl.int_range(1, n + 1, eager=True).cast(pl.String).str.zfill(width)
    return (f"SHP-{day:%Y%m%d}-" + numbers).alias("shipment_id")


def _clean_rows(day: date, config: GeneratorConfig, rng: np.random.Generator) -> pl.DataFrame:
    n = config.rows_per_day
    lanes = demo_lanes(config.seed)
    lane = np.searchsorted(lanes.popularity_cdf, rng.random(n), side="right")
    mode_idx = (rng.random(n)[:, None] >= lanes.mode_cdf[lane]).sum(axis=1)
    route_factor = np.array([ROUTE_FACTOR[m] for m in MODES])[mode_idx]
    distance = np.round(lanes.great_circle_km[lane] * route_factor, 1)
    weight = _weights_kg(rng, mode_idx)
    density = rng.lognormal(np.log(DENSITY_MEDIAN_KG_M3), DENSITY_SIGMA, n)
    volume = np.maximum(np.round(weight / density, 3), 0.001)
    carrier = _carriers(rng, mode_idx)
    noise = rng.lognormal(0.0, NOISE_SIGMA, n)
    offsets = _booking_offsets_us(rng, n)

    city = pl.Series([c.name for c in CITIES], dtype=pl.String)
    country = pl.Series([c.country for c in CITIES], dtype=pl.String)
    origin, destination = lanes.origin[lane], lanes.destination[lane]
    midnight_us = (day.toordinal() - date(1970, 1, 1).toordinal()) * 86_400 * 1_000_000
    frame = pl.DataFrame(
        {
            "shipment_id": _shipment_ids(day, n),
            "booked_at": pl.Series(offsets + midnight_us).cast(pl.Datetime("us", "UTC")),
            "origin_city": city.gather(origin),
            "origin_country": country.gather(origin),
            "destination_city": city.gather(destination),
            "destination_country": country.gather(destination),
            "distance_km": distance,
            "weight_kg": weight,
            "volume_m3": volume,
            "transport_mode": pl.Series(MODES, dtype=pl.String).gather(mode_idx),
            "carrier": carrier,
            "_noise": noise,
            "_lane_factor": lanes.factor[lane],
        }
    )
    price = price_expr(
        pl.col("_noise"),
        pl.col("_lane_factor"),
        config.shock_date,
        config.shock_factor,
        DEFAULT_SHOCK_LANES,
    )
    return frame.with_columns(price_eur=price.round(2)).drop("_noise", "_lane_factor")


def _split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def _inject_bad_rows(
    frame: pl.DataFrame, share: float, rng: np.random.Generator
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Corrupt ``share`` of the rows, one defect per row, spread evenly over BAD_ROW_KINDS."""
    n = frame.height
    counts = dict(
        zip(BAD_ROW_KINDS, _split_evenly(round(share * n), len(BAD_ROW_KINDS)), strict=True)
    )
    n_bad = sum(counts.values())
    if n_bad == 0:
        return frame, counts
    # Duplicate ids are copied from extra, untouched rows so every bad row is exactly one defect.
    picked = rng.choice(n, size=n_bad + counts["duplicate_id"], replace=False)
    bounds = np.cumsum([0, *counts.values()])
    null_rows, negative_rows, unknown_rows, dup_rows = (
        picked[bounds[k] : bounds[k + 1]] for k in range(len(BAD_ROW_KINDS))
    )
    dup_sources = picked[n_bad:]

    columns = {name: frame.get_column(name).clone() for name in REQUIRED_COLUMNS}
    for k, column in enumerate(REQUIRED_COLUMNS):
        columns[column].scatter(null_rows[k :: len(REQUIRED_COLUMNS)], None)
    weight = columns["weight_kg"]
    weight.scatter(negative_rows, -weight.gather(negative_rows))
    unknown = pl.Series(UNKNOWN_MODES, dtype=pl.String).gather(
        np.arange(unknown_rows.size) % len(UNKNOWN_MODES)
    )
    columns["transport_mode"].scatter(unknown_rows, unknown)
    ids = columns["shipment_id"]
    ids.scatter(dup_rows, ids.gather(dup_sources))
    return frame.with_columns(columns.values()), counts


def _generate(day: date, config: GeneratorConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    clean_rng, bad_rng = _day_rngs(day, config.seed)
    frame = _clean_rows(day, config, clean_rng)
    return _inject_bad_rows(frame, config.bad_row_share, bad_rng)


def generate_day(day: date, config: GeneratorConfig) -> pl.DataFrame:
    """Typed rows of one day's drop (bad rows included), identical for the same (day, config)."""
    return _generate(day, config)[0]


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def drop_directory(landing_root: Path, day: date) -> Path:
    return Path(landing_root) / DATASET / day.isoformat()


def part_name(day: date, index: int) -> str:
    """File ``index`` of a drop alternates CSV/Parquet with the day so both formats occur."""
    suffix = "csv" if (day.toordinal() + index) % 2 == 0 else "parquet"
    return f"part-{index:03d}.{suffix}"


def _is_data_file(path: Path) -> bool:
    return path.name.startswith("part-") and path.suffix in (".csv", ".parquet")


def _serialize(frame: pl.DataFrame, name: str) -> bytes:
    buffer = io.BytesIO()
    if name.endswith(".csv"):
        frame.write_csv(buffer, datetime_format=CSV_DATETIME_FORMAT)
    else:
        frame.write_parquet(buffer, compression="zstd")
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a dot-prefixed temp file in the same folder so readers never see partial files."""
    # No fsync: readers need atomic visibility, not power-loss durability, for regenerable demo
    # data (the manifest's sha256 exposes a torn file), and fsync halved throughput here.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_drop(landing_root: Path, day: date, config: GeneratorConfig) -> DropSummary:
    """Write one day's data files, then its ``_SUCCESS`` manifest."""
    frame, bad_rows = _generate(day, config)
    directory = drop_directory(landing_root, day)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER_NAME
    # Drop the marker first: while files are rewritten the day must not look complete.
    marker.unlink(missing_ok=True)

    bounds = np.linspace(0, frame.height, config.files_per_drop + 1).astype(int)
    entries: list[dict[str, object]] = []
    paths: list[Path] = []
    for i in range(config.files_per_drop):
        name = part_name(day, i)
        chunk = frame.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i]))
        data = _serialize(chunk, name)
        _atomic_write(directory / name, data)
        entries.append(
            {"name": name, "rows": chunk.height, "sha256": hashlib.sha256(data).hexdigest()}
        )
        paths.append(directory / name)
    for stale in directory.iterdir():
        if _is_data_file(stale) and stale not in paths:
            stale.unlink()

    manifest = {
        "partition": day.isoformat(),
        "files": entries,
        "seed": config.seed,
        "rows": frame.height,
        "bad_rows": bad_rows,
    }
    _atomic_write(marker, (json.dumps(manifest, indent=2) + "\n").encode())
    return DropSummary(day, directory, tuple(paths), marker, frame.height, bad_rows)


def generate_drops(
    landing_root: Path,
    start: date,
    days: int,
    config: GeneratorConfig,
    *,
    workers: int | None = None,
) -> list[DropSummary]:
    """Write ``days`` consecutive daily drops starting at ``start``, in date order."""
    dates = [start + timedelta(days=k) for k in range(days)]
    # numpy and polars release the GIL for most of the work, so days overlap well in threads.
    workers = workers or min(len(dates), os.cpu_count() or 1, 4)
    if workers <= 1:
        return [write_drop(landing_root, day, config) for day in dates]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda day: write_drop(landing_root, day, config), dates))
