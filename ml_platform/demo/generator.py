"""Synthetic freight-shipment drops for the landing zone.

Each day becomes ``{landing_root}/shipments/{YYYY-MM-DD}/`` holding ``part-{i:03d}.csv`` /
``part-{i:03d}.parquet`` files and, written last, a ``_SUCCESS`` JSON manifest. Prices follow a
known formula (see :func:`expected_price`) so models trained on the data can be checked against
the truth, and options inject a GB demand shock and corrupt rows for cleaning steps to catch.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

DATASET = "shipments"
MARKER_NAME = "_SUCCESS"
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"

MODES: tuple[str, ...] = ("road", "rail", "sea", "air")
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


class City(NamedTuple):
    name: str
    country: str
    lat: float
    lon: float
    # Cities in the same region are connected by land (road/rail); others need sea or air.
    region: str
    # Relative freight volume; drives which lanes are popular.
    hub: float


CITIES: tuple[City, ...] = (
    City("London", "GB", 51.5074, -0.1278, "EU", 1.0),
    City("Manchester", "GB", 53.4808, -2.2426, "EU", 0.5),
    City("Birmingham", "GB", 52.4862, -1.8904, "EU", 0.45),
    City("Dublin", "IE", 53.3498, -6.2603, "EU", 0.35),
    City("Rotterdam", "NL", 51.9244, 4.4777, "EU", 1.0),
    City("Amsterdam", "NL", 52.3676, 4.9041, "EU", 0.6),
    City("Antwerp", "BE", 51.2194, 4.4025, "EU", 0.8),
    City("Brussels", "BE", 50.8503, 4.3517, "EU", 0.45),
    City("Hamburg", "DE", 53.5511, 9.9937, "EU", 0.9),
    City("Berlin", "DE", 52.5200, 13.4050, "EU", 0.6),
    City("Munich", "DE", 48.1351, 11.5820, "EU", 0.6),
    City("Frankfurt", "DE", 50.1109, 8.6821, "EU", 0.7),
    City("Duisburg", "DE", 51.4344, 6.7623, "EU", 0.6),
    City("Paris", "FR", 48.8566, 2.3522, "EU", 0.9),
    City("Lyon", "FR", 45.7640, 4.8357, "EU", 0.5),
    City("Marseille", "FR", 43.2965, 5.3698, "EU", 0.5),
    City("Milan", "IT", 45.4642, 9.1900, "EU", 0.7),
    City("Genoa", "IT", 44.4056, 8.9463, "EU", 0.4),
    City("Madrid", "ES", 40.4168, -3.7038, "EU", 0.6),
    City("Barcelona", "ES", 41.3874, 2.1686, "EU", 0.6),
    City("Valencia", "ES", 39.4699, -0.3763, "EU", 0.4),
    City("Lisbon", "PT", 38.7223, -9.1393, "EU", 0.35),
    City("Warsaw", "PL", 52.2297, 21.0122, "EU", 0.6),
    City("Prague", "CZ", 50.0755, 14.4378, "EU", 0.45),
    City("Vienna", "AT", 48.2082, 16.3738, "EU", 0.5),
    City("Budapest", "HU", 47.4979, 19.0402, "EU", 0.4),
    City("Zurich", "CH", 47.3769, 8.5417, "EU", 0.4),
    City("Copenhagen", "DK", 55.6761, 12.5683, "EU", 0.4),
    City("Gothenburg", "SE", 57.7089, 11.9746, "EU", 0.4),
    City("Stockholm", "SE", 59.3293, 18.0686, "EU", 0.4),
    City("Bucharest", "RO", 44.4268, 26.1025, "EU", 0.3),
    City("Istanbul", "TR", 41.0082, 28.9784, "EU", 0.5),
    City("Shanghai", "CN", 31.2304, 121.4737, "CN", 0.9),
    City("Shenzhen", "CN", 22.5431, 114.0579, "CN", 0.7),
    City("Singapore", "SG", 1.3521, 103.8198, "SG", 0.6),
    City("Tokyo", "JP", 35.6762, 139.6503, "JP", 0.5),
    City("Mumbai", "IN", 19.0760, 72.8777, "IN", 0.4),
    City("Dubai", "AE", 25.2048, 55.2708, "AE", 0.5),
    City("New York", "US", 40.7128, -74.0060, "NA", 0.8),
    City("Chicago", "US", 41.8781, -87.6298, "NA", 0.4),
    City("Los Angeles", "US", 34.0522, -118.2437, "NA", 0.5),
    City("São Paulo", "BR", -23.5505, -46.6333, "SA", 0.4),
)

# Price model. Rates are EUR per km per chargeable tonne^TONNAGE_EXPONENT.
FIXED_FEE_EUR: Mapping[str, float] = {"road": 45.0, "rail": 120.0, "sea": 250.0, "air": 80.0}
RATE_EUR: Mapping[str, float] = {"road": 0.11, "rail": 0.06, "sea": 0.012, "air": 0.65}
# kg charged per m3: bulky light goods pay by volume, most of all by air.
VOLUMETRIC_KG_PER_M3: Mapping[str, float] = {
    "road": 333.0,
    "rail": 333.0,
    "sea": 1000.0,
    "air": 167.0,
}
TONNAGE_EXPONENT = 0.85
# Monday..Sunday; carriers are busiest mid-week.
WEEKDAY_FACTOR: tuple[float, ...] = (0.99, 1.03, 1.05, 1.04, 1.0, 0.95, 0.94)
SEASON_AMPLITUDE = 0.08
SEASON_PEAK_DOY = 273  # the wave peaks around 1 October (pre-Christmas stock build-up)
DECEMBER_PEAK = 0.12
DECEMBER_PEAK_DOY = 349
DECEMBER_PEAK_WIDTH_DAYS = 8.0
NOISE_SIGMA = 0.06
LANE_FACTOR_RANGE = (0.85, 1.2)
DEFAULT_SHOCK_FACTOR = 1.35
DEFAULT_SHOCK_LANES: frozenset[str] = frozenset({"GB"})

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
LANE_ZIPF_EXPONENT = 0.95

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
# Price model
# ---------------------------------------------------------------------------------------------


def lane_key(origin_city: str, destination_city: str) -> str:
    return f"{origin_city}|{destination_city}"


@lru_cache(maxsize=65_536)
def lane_factor(origin_city: str, destination_city: str) -> float:
    """Deterministic price multiplier of a lane in LANE_FACTOR_RANGE, independent of any seed."""
    digest = hashlib.blake2b(lane_key(origin_city, destination_city).encode(), digest_size=8)
    unit = int.from_bytes(digest.digest(), "big") / 2**64
    low, high = LANE_FACTOR_RANGE
    return low + (high - low) * unit


def _lane_factors(keys: pl.Series) -> pl.Series:
    # Hash each distinct lane once; a day has at most a few thousand of them.
    mapping = {key: lane_factor(*key.split("|", 1)) for key in keys.unique().drop_nulls()}
    return keys.replace_strict(mapping, default=None, return_dtype=pl.Float64)


def _seasonality(booked_at: pl.Expr) -> pl.Expr:
    doy = booked_at.dt.ordinal_day().cast(pl.Float64)
    yearly = SEASON_AMPLITUDE * ((doy - SEASON_PEAK_DOY) * (2 * math.pi / 365.25)).cos()
    december = (
        DECEMBER_PEAK * (-0.5 * ((doy - DECEMBER_PEAK_DOY) / DECEMBER_PEAK_WIDTH_DAYS) ** 2).exp()
    )
    return 1.0 + yearly + december


def _shock_multiplier(
    shock_date: date | None, shock_factor: float, shock_lanes: Collection[str]
) -> pl.Expr:
    if shock_date is None:
        return pl.lit(1.0)
    # A bare "GB" would otherwise be read as the countries "G" and "B".
    countries = [shock_lanes] if isinstance(shock_lanes, str) else sorted(shock_lanes)
    touches = pl.col("origin_country").is_in(countries) | pl.col("destination_country").is_in(
        countries
    )
    hit = touches & (pl.col("booked_at").dt.date() >= shock_date)
    return pl.when(hit).then(pl.lit(shock_factor)).otherwise(pl.lit(1.0))


def _lane_factor_expr() -> pl.Expr:
    return pl.concat_str("origin_city", "destination_city", separator="|").map_batches(
        _lane_factors, return_dtype=pl.Float64, is_elementwise=True
    )


def _price_expr(
    noise: pl.Expr,
    lane: pl.Expr,
    shock_date: date | None,
    shock_factor: float,
    shock_lanes: Collection[str],
) -> pl.Expr:
    """(fee + variable * noise) * shock; the one formula used to generate and to check prices."""
    mode = pl.col("transport_mode")
    fee = mode.replace_strict(FIXED_FEE_EUR, default=None, return_dtype=pl.Float64)
    rate = mode.replace_strict(RATE_EUR, default=None, return_dtype=pl.Float64)
    volumetric = mode.replace_strict(VOLUMETRIC_KG_PER_M3, default=None, return_dtype=pl.Float64)
    chargeable_t = pl.max_horizontal(pl.col("weight_kg"), pl.col("volume_m3") * volumetric) / 1000
    weekday = (
        pl.col("booked_at")
        .dt.weekday()
        .replace_strict(
            dict(enumerate(WEEKDAY_FACTOR, start=1)), default=None, return_dtype=pl.Float64
        )
    )
    variable = (
        rate
        * pl.col("distance_km")
        * chargeable_t.pow(TONNAGE_EXPONENT)
        * lane
        * _seasonality(pl.col("booked_at"))
        * weekday
    )
    return (fee + variable * noise) * _shock_multiplier(shock_date, shock_factor, shock_lanes)


def expected_price_expr(
    shock_date: date | None = None,
    shock_factor: float = DEFAULT_SHOCK_FACTOR,
    shock_lanes: Collection[str] = DEFAULT_SHOCK_LANES,
) -> pl.Expr:
    """Noise-free, unrounded price of typed shipment rows, named ``expected_price_eur``."""
    return _price_expr(
        pl.lit(1.0), _lane_factor_expr(), shock_date, shock_factor, shock_lanes
    ).alias("expected_price_eur")


def expected_price(
    df: pl.DataFrame | pl.LazyFrame,
    shock_date: date | None = None,
    shock_factor: float = DEFAULT_SHOCK_FACTOR,
    shock_lanes: Collection[str] = DEFAULT_SHOCK_LANES,
) -> pl.Series:
    """Noise-free price of each row; ``shock_lanes`` are the country codes whose lanes shock.

    Rows with an unknown or null transport_mode get null.
    """
    expr = expected_price_expr(shock_date, shock_factor, shock_lanes)
    return df.lazy().select(expr).collect().to_series()


# ---------------------------------------------------------------------------------------------
# Lanes
# ---------------------------------------------------------------------------------------------


class _Lanes(NamedTuple):
    origin: np.ndarray  # city index per lane
    destination: np.ndarray
    great_circle_km: np.ndarray
    factor: np.ndarray  # lane_factor() per lane, so generation skips string hashing per row
    popularity_cdf: np.ndarray
    mode_cdf: np.ndarray  # (lanes, len(MODES)) cumulative mode probabilities


def _great_circle_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def _mode_probabilities(km: np.ndarray, intercontinental: np.ndarray) -> np.ndarray:
    """P(road, rail, sea, air) per lane: no road or rail across oceans, air for long hauls."""
    probs = np.select(
        [
            intercontinental[:, None],
            (km < 400)[:, None],
            (km < 1200)[:, None],
        ],
        [
            np.array([0.0, 0.0, 0.75, 0.25]),
            np.array([0.93, 0.07, 0.0, 0.0]),
            np.array([0.78, 0.20, 0.0, 0.02]),
        ],
        default=np.array([0.60, 0.30, 0.0, 0.10]),
    )
    return probs


@lru_cache(maxsize=16)
def _lanes(seed: int) -> _Lanes:
    """All ordered city pairs with a Zipf popularity whose ranking is fixed per seed."""
    n = len(CITIES)
    origin, destination = np.nonzero(~np.eye(n, dtype=bool))
    lat = np.array([c.lat for c in CITIES])
    lon = np.array([c.lon for c in CITIES])
    hub = np.array([c.hub for c in CITIES])
    region = np.array([c.region for c in CITIES])
    km = _great_circle_km(lat[origin], lon[origin], lat[destination], lon[destination])
    # Gravity-style score (big hubs, short hauls) plus seeded jitter decides the ranking.
    rng = np.random.default_rng([seed, 0x1A7E5])
    score = (
        np.log(hub[origin] * hub[destination])
        - 0.6 * np.log(km + 50.0)
        + rng.gumbel(scale=0.3, size=km.size)
    )
    rank = np.empty(km.size)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, km.size + 1)
    weight = rank**-LANE_ZIPF_EXPONENT
    popularity_cdf = np.cumsum(weight / weight.sum())
    popularity_cdf[-1] = 1.0
    mode_cdf = np.cumsum(_mode_probabilities(km, region[origin] != region[destination]), axis=1)
    mode_cdf[:, -1] = 1.0
    names = [c.name for c in CITIES]
    factor = np.array(
        [lane_factor(names[o], names[d]) for o, d in zip(origin, destination, strict=True)]
    )
    return _Lanes(origin, destination, km, factor, popularity_cdf, mode_cdf)


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
    lanes = _lanes(config.seed)
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
    price = _price_expr(
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


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    defaults = GeneratorConfig()
    parser = argparse.ArgumentParser(description="Write synthetic freight-shipment drops.")
    parser.add_argument("--landing-root", type=Path, required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rows-per-day", type=int, default=defaults.rows_per_day)
    parser.add_argument("--files-per-drop", type=int, default=defaults.files_per_drop)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--shock-date", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    parser.add_argument("--shock-factor", type=float, default=defaults.shock_factor)
    parser.add_argument("--bad-row-share", type=float, default=defaults.bad_row_share)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be >= 1")
    try:
        config = GeneratorConfig(
            rows_per_day=args.rows_per_day,
            files_per_drop=args.files_per_drop,
            seed=args.seed,
            shock_date=args.shock_date,
            shock_factor=args.shock_factor,
            bad_row_share=args.bad_row_share,
        )
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()
    summaries = generate_drops(args.landing_root, args.start, args.days, config)
    seconds = time.perf_counter() - started
    rows = sum(s.rows for s in summaries)
    print(
        f"wrote {len(summaries)} drop(s) {summaries[0].partition}..{summaries[-1].partition} "
        f"to {args.landing_root}: {rows} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
