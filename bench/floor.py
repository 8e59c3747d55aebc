"""The floor of bench/data_half.py: the fastest plain script we could write for the data half.

Lazy polars, days in parallel threads, no Dagster, no pandera, no provenance: parse the drops,
write raw, typed + validated + deduplicated clean and the rejects with their reasons, and the
28-day lane features, one zstd Parquet file per day and table, the same tables the platform
writes (data_half.py checks that they are).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

TEXT = ["shipment_id", "origin_city", "origin_country", "destination_city"]
TEXT += ["destination_country", "transport_mode", "carrier"]
FLOATS = ["distance_km", "weight_kg", "volume_m3", "price_eur"]
LIMITS = {"distance_km": 40_000, "weight_kg": 200_000, "volume_m3": 5_000, "price_eur": 10_000_000}
PARSED = ["booked_at", *FLOATS]  # typed from text: a value that does not parse is a reason
ISO_UTC = "%Y-%m-%dT%H:%M:%S%.fZ"  # the drops' timestamps, given to the parser as the platform does


def _rules() -> list:
    """(broken, reason) for every rule a typed row can break: the same rules as the
    platform's (parsing, the drop's day, the contract's row rules)."""
    import polars as pl

    return [
        *[
            (
                (pl.col(f"__text_{c}").str.strip_chars().str.len_chars().fill_null(0) > 0)
                & pl.col(c).is_null(),
                f"unparseable {c}",
            )
            for c in PARSED
        ],
        (
            pl.col("booked_at").dt.date() != pl.col("partition_date"),
            "booked_at outside the drop's day",
        ),
        *[(pl.col(c).is_null(), f"{c}: not_nullable") for c in [*TEXT, "booked_at", *FLOATS]],
        *[(pl.col(c) <= 0, f"{c}: greater_than(0)") for c in FLOATS],
        *[
            (pl.col(c) > limit, f"{c}: less_than_or_equal_to({limit})")
            for c, limit in LIMITS.items()
        ],
        (pl.col("shipment_id").str.len_chars() > 64, "shipment_id: str_length(1, 64)"),
        *[
            (pl.col(c).str.to_uppercase().str.len_chars() != 2, f"{c}: str_length(2, 2)")
            for c in ["origin_country", "destination_country"]
        ],
        (
            ~pl.col("transport_mode").str.to_lowercase().is_in(["road", "rail", "sea", "air"]),
            "transport_mode: isin(['road', 'rail', 'sea', 'air'])",
        ),
    ]


def _reasons(rules: list):
    """The reasons of a row that breaks rules, sorted and joined by "; "."""
    import polars as pl

    return (
        pl.concat_list([pl.when(rule).then(pl.lit(name)) for rule, name in rules])
        .list.drop_nulls()
        .list.sort()
        .list.join("; ")
    )


def floor(landing: Path, out: Path, start: date, days: int) -> None:
    """Same outputs, plain polars: days in parallel threads, lazy where it pays."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    def write(table: str, day, df: pl.DataFrame) -> None:
        path = out / table / f"{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path, compression="zstd", statistics=True)

    def read_file(path: Path) -> pl.DataFrame:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if path.suffix == ".csv":
            df = pl.read_csv(data, infer_schema=False)
        else:
            df = pl.read_parquet(data).with_columns(
                pl.col("booked_at").dt.to_string(ISO_UTC),
                pl.exclude("booked_at").cast(pl.Utf8),
            )
        return df.with_columns(
            _source_uri=pl.lit(path.as_uri()),
            _source_sha256=pl.lit(sha),
            _source_row=pl.int_range(1, df.height + 1, dtype=pl.Int64),
        )

    def clean_day(i: int) -> pl.DataFrame:
        day = start + timedelta(days=i)
        files = sorted((landing / day.isoformat()).glob("part-*"))
        raw = pl.concat([read_file(f) for f in files], how="diagonal")
        raw = raw.with_columns(partition_date=pl.lit(day)).with_row_index("__row")
        write("raw", day, raw.drop("__row"))
        typed = raw.lazy().with_columns(
            *[pl.col(c).str.strip_chars().replace("", None) for c in TEXT],
            pl.col("booked_at").str.to_datetime(
                ISO_UTC, time_unit="us", time_zone="UTC", strict=False
            ),
            *[pl.col(c).str.strip_chars().cast(pl.Float64, strict=False) for c in FLOATS],
            *[pl.col(c).alias(f"__text_{c}") for c in PARSED],
        )
        rules = _rules()
        flagged = (
            typed.with_columns(ok=~pl.any_horizontal([r.fill_null(False) for r, _ in rules]))
            .sort("booked_at", "_source_uri", "_source_row")
            # The first booking of an id among the rows that pass wins, as in the platform.
            .with_columns(first=pl.col("shipment_id").is_first_distinct().over("ok"))
            .collect()
        )
        clean = (
            flagged.filter(pl.col("ok") & pl.col("first"))
            .with_columns(
                pl.col("transport_mode").str.to_lowercase(),
                pl.col("origin_country").str.to_uppercase(),
                pl.col("destination_country").str.to_uppercase(),
                lane=pl.format("{}->{}", "origin_city", "destination_city"),
            )
            .drop("__row", "ok", "first", *[f"__text_{c}" for c in PARSED])
            .sort("booked_at", "shipment_id")
        )
        # Every rule a failing row breaks, as the platform reports it (its reject reasons).
        rejects = pl.concat(
            [
                flagged.filter(~pl.col("ok")).select("__row", reason=_reasons(rules)),
                flagged.filter(pl.col("ok") & ~pl.col("first")).select(
                    "__row", reason=pl.lit("duplicate shipment_id")
                ),
            ]
        )
        rejected = raw.join(rejects, on="__row").sort("__row")
        write("clean", day, clean)
        write("rejected", day, rejected.drop("__row"))
        return clean.group_by("lane").agg(
            partition_date=pl.lit(day),
            n=pl.len(),
            price=(pl.col("price_eur") * 1e6).round().cast(pl.Int64).sum(),
            per_km=(pl.col("price_eur") / pl.col("distance_km") * 1e6).round().cast(pl.Int64).sum(),
        )

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        daily = pl.concat(pool.map(clean_day, range(days)))
    rolled = (
        daily.sort("partition_date")
        .rolling("partition_date", period="28d", closed="left", group_by="lane")
        .agg(n28=pl.col("n").sum(), price28=pl.col("price").sum(), km28=pl.col("per_km").sum())
    )

    def features_day(i: int) -> None:
        day = start + timedelta(days=i)
        clean = pl.scan_parquet(out / "clean" / f"{day}.parquet")
        features = clean.join(rolled.lazy(), on=["lane", "partition_date"], how="left").select(
            "shipment_id",
            "partition_date",
            "booked_at",
            *FLOATS[:3],
            "transport_mode",
            "carrier",
            "origin_country",
            "destination_country",
            "lane",
            day_of_week=pl.col("partition_date").dt.weekday().cast(pl.Int8),
            day_of_year=pl.col("partition_date").dt.ordinal_day().cast(pl.Int16),
            lane_shipments_28d=pl.col("n28").fill_null(0).cast(pl.UInt32),
            lane_mean_price_28d=pl.col("price28") / pl.col("n28") / 1e6,
            lane_mean_price_per_km_28d=pl.col("km28") / pl.col("n28") / 1e6,
            price_eur=pl.col("price_eur"),
        )
        write("features", day, features.collect())

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(features_day, range(days)))
