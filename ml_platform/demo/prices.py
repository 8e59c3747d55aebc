"""The demo data's price model: the one formula that generates prices and checks them.

A price is the mode's fixed fee plus a variable part (its rate per km and chargeable tonne,
scaled by the lane's factor, the season and the weekday, times lognormal noise), all times a
shock on the lanes that touch the shocked countries from the shock date on. ``expected_price`` is that formula
without noise: what a model trained on the data should find.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping
from datetime import date
from functools import lru_cache

import polars as pl

# Transport modes, each with its own tariff below.
MODES: tuple[str, ...] = ("road", "rail", "sea", "air")

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


def price_expr(
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
    return price_expr(
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
