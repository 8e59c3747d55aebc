"""Valid shipment CSV drops for tests (the demo generator is not part of this branch)."""

from __future__ import annotations

import polars as pl

from ml_platform.landing.reader import REQUIRED_COLUMNS

CITIES = [("Hamburg", "DE"), ("Rotterdam", "NL"), ("Lyon", "FR"), ("Milan", "IT")]
MODES = ["road", "rail", "sea", "air"]


def shipments_csv(partition: str, rows: int = 20, seed: int = 0, tag: str = "s") -> bytes:
    """rows valid shipments booked on the partition's day, as CSV bytes."""
    i = pl.int_range(0, rows, eager=True)
    origin = [CITIES[(k + seed) % 4] for k in range(rows)]
    dest = [CITIES[(k + seed + 1) % 4] for k in range(rows)]
    df = pl.DataFrame(
        {
            "shipment_id": [f"{tag}-{partition}-{seed}-{k}" for k in range(rows)],
            "booked_at": [f"{partition}T{(k % 24):02d}:15:00Z" for k in range(rows)],
            "origin_city": [o[0] for o in origin],
            "origin_country": [o[1] for o in origin],
            "destination_city": [d[0] for d in dest],
            "destination_country": [d[1] for d in dest],
            "distance_km": (i * 13 % 900 + 100).cast(pl.Float64),
            "weight_kg": (i * 7 % 500 + 10).cast(pl.Float64),
            "volume_m3": (i % 30 + 1).cast(pl.Float64),
            "transport_mode": [MODES[(k + seed) % 4] for k in range(rows)],
            "carrier": [f"carrier-{k % 3}" for k in range(rows)],
            "price_eur": (i * 31 % 4000 + 200 + seed).cast(pl.Float64),
        }
    )
    assert tuple(df.columns) == REQUIRED_COLUMNS
    return df.write_csv().encode()
