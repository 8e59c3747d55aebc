"""Cleaning one day's raw text: which timestamps parse, and why the others are rejected."""

from datetime import UTC, datetime

import polars as pl

from ml_platform.transforms.shipments import clean_shipments, raw_from_files

DAY = "2026-03-02"


def _raw(booked_at: list[str | None]) -> pl.DataFrame:
    n = len(booked_at)
    text = pl.DataFrame(
        {
            "shipment_id": [f"s{i}" for i in range(n)],
            "booked_at": booked_at,
            "origin_city": ["Lyon"] * n,
            "origin_country": ["fr"] * n,
            "destination_city": ["Turin"] * n,
            "destination_country": ["IT"] * n,
            "distance_km": ["310"] * n,
            "weight_kg": ["120.5"] * n,
            "volume_m3": ["1.5"] * n,
            "transport_mode": ["Road"] * n,
            "carrier": ["acme"] * n,
            "price_eur": ["420"] * n,
        },
        schema_overrides={"booked_at": pl.Utf8},
    )
    return raw_from_files([("file:///landing/x.csv", "0" * 64, text)], DAY)


def _booked(clean: pl.DataFrame) -> dict[str, datetime]:
    return dict(zip(clean["shipment_id"], clean["booked_at"], strict=True))


def test_the_lakes_iso_form_parses_with_or_without_fractions():
    clean, rejected = clean_shipments(
        _raw(["2026-03-02T08:00:00Z", "2026-03-02T08:00:00.25Z", " 2026-03-02T09:30:00.000001Z "])
    )
    assert rejected.height == 0
    assert _booked(clean) == {
        "s0": datetime(2026, 3, 2, 8, tzinfo=UTC),
        "s1": datetime(2026, 3, 2, 8, 0, 0, 250000, tzinfo=UTC),
        "s2": datetime(2026, 3, 2, 9, 30, 0, 1, tzinfo=UTC),
    }


def test_other_forms_polars_can_read_still_parse_beside_it():
    clean, rejected = clean_shipments(
        _raw(["2026-03-02T08:00:00Z", "2026-03-02T12:00:00+02:00", "2026-03-02T23:30:00-01:00"])
    )
    booked = _booked(clean)
    assert booked["s1"] == datetime(2026, 3, 2, 10, tzinfo=UTC)  # converted to UTC
    # 23:30 at UTC-1 is the next day in UTC: parsed, then rejected as outside the drop's day
    assert rejected["reason"].to_list() == ["booked_at outside the drop's day"]
    assert rejected["booked_at"].to_list() == ["2026-03-02T23:30:00-01:00"]  # the raw text


def test_a_drop_entirely_in_another_form_parses():
    clean, rejected = clean_shipments(
        _raw(["2026-03-02T12:00:00+02:00", "2026-03-02T13:00:00+02:00"])
    )
    assert rejected.height == 0
    assert sorted(_booked(clean).values()) == [
        datetime(2026, 3, 2, 10, tzinfo=UTC),
        datetime(2026, 3, 2, 11, tzinfo=UTC),
    ]


def test_text_that_is_no_time_is_rejected_and_a_missing_time_is_its_own_reason():
    clean, rejected = clean_shipments(_raw(["2026-03-02T08:00:00Z", "next tuesday", "", None]))
    assert clean["shipment_id"].to_list() == ["s0"]
    reasons = dict(zip(rejected["shipment_id"], rejected["reason"], strict=True))
    assert "unparseable booked_at" in reasons["s1"].split("; ")
    assert "unparseable" not in reasons["s2"] and "booked_at: not_nullable" in reasons["s2"]
    assert "unparseable" not in reasons["s3"] and "booked_at: not_nullable" in reasons["s3"]
