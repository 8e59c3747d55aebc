"""Data contracts (pandera, polars API) for the cleaned and feature tables.

The schemas are built on first use (``schemas.CLEAN_SHIPMENTS``): importing pandera costs
about a second (it imports pandas), which the code server, sensors and every CLI command
that validates nothing would otherwise pay.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import pandera.polars as pa

TRANSPORT_MODES = ["road", "rail", "sea", "air"]
UTC_TIMESTAMP = pl.Datetime("us", "UTC")


FEATURE_COLUMNS = [
    "distance_km",
    "weight_kg",
    "volume_m3",
    "transport_mode",
    "carrier",
    "origin_country",
    "destination_country",
    "lane",
    "day_of_week",
    "day_of_year",
    "lane_shipments_28d",
    "lane_mean_price_28d",
    "lane_mean_price_per_km_28d",
]


_NAMES = ("SHIPMENT_ROW_RULES", "CLEAN_SHIPMENTS", "SHIPMENT_FEATURES")


def __getattr__(name: str) -> pa.DataFrameSchema:
    if name in _NAMES:
        return _schemas()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _schemas() -> dict[str, pa.DataFrameSchema]:
    import pandera.polars as pa

    def _text(**kwargs) -> pa.Column:
        return pa.Column(pl.Utf8, nullable=False, **kwargs)

    def _positive(upper: float) -> pa.Column:
        return pa.Column(pl.Float64, [pa.Check.gt(0), pa.Check.le(upper)], nullable=False)

    _SHIPMENT_COLUMNS = {
        "shipment_id": _text(checks=pa.Check.str_length(1, 64)),
        "booked_at": pa.Column(UTC_TIMESTAMP, nullable=False),
        "origin_city": _text(),
        "origin_country": _text(checks=pa.Check.str_length(2, 2)),
        "destination_city": _text(),
        "destination_country": _text(checks=pa.Check.str_length(2, 2)),
        "distance_km": _positive(40_000),
        "weight_kg": _positive(200_000),
        "volume_m3": _positive(5_000),
        "transport_mode": _text(checks=pa.Check.isin(TRANSPORT_MODES)),
        "carrier": _text(),
        "price_eur": _positive(10_000_000),
    }

    # Row rules: applied to typed rows before deduplication; each failure rejects its row.
    SHIPMENT_ROW_RULES = pa.DataFrameSchema(_SHIPMENT_COLUMNS, name="shipment_row_rules")

    # The contract of clean/shipments: the row rules, ids unique within a day, lineage columns,
    # nothing else. Unique per day, not per frame: a frame may hold a range of days, and a
    # shipment id may come again in a later day's drop.
    CLEAN_SHIPMENTS = pa.DataFrameSchema(
        {
            **_SHIPMENT_COLUMNS,
            "lane": _text(),
            "partition_date": pa.Column(pl.Date, nullable=False),
            "_source_uri": _text(),
            "_source_sha256": _text(checks=pa.Check.str_length(64, 64)),
            "_source_row": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
        },
        strict=True,
        unique=["partition_date", "shipment_id"],
        name="clean_shipments",
    )

    SHIPMENT_FEATURES = pa.DataFrameSchema(
        {
            "shipment_id": _text(),
            "partition_date": pa.Column(pl.Date, nullable=False),
            "booked_at": pa.Column(UTC_TIMESTAMP, nullable=False),
            "distance_km": _positive(40_000),
            "weight_kg": _positive(200_000),
            "volume_m3": _positive(5_000),
            "transport_mode": _text(checks=pa.Check.isin(TRANSPORT_MODES)),
            "carrier": _text(),
            "origin_country": _text(),
            "destination_country": _text(),
            "lane": _text(),
            "day_of_week": pa.Column(pl.Int8, pa.Check.in_range(1, 7), nullable=False),
            "day_of_year": pa.Column(pl.Int16, pa.Check.in_range(1, 366), nullable=False),
            "lane_shipments_28d": pa.Column(pl.UInt32, nullable=False),
            "lane_mean_price_28d": pa.Column(pl.Float64, pa.Check.gt(0), nullable=True),
            "lane_mean_price_per_km_28d": pa.Column(pl.Float64, pa.Check.gt(0), nullable=True),
            "price_eur": _positive(10_000_000),
        },
        strict=True,
        unique=["partition_date", "shipment_id"],  # as in the clean table
        name="shipment_features",
    )

    return {
        "SHIPMENT_ROW_RULES": SHIPMENT_ROW_RULES,
        "CLEAN_SHIPMENTS": CLEAN_SHIPMENTS,
        "SHIPMENT_FEATURES": SHIPMENT_FEATURES,
    }
