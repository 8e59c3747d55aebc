"""The demo's cities and the lanes between them: distance, popularity, likely modes."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ml_platform.demo.prices import lane_factor

# The lane of popularity rank r carries a share proportional to r ** -LANE_ZIPF_EXPONENT.
LANE_ZIPF_EXPONENT = 0.95


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


class Lanes(NamedTuple):
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
def lanes(seed: int) -> Lanes:
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
    return Lanes(origin, destination, km, factor, popularity_cdf, mode_cdf)
