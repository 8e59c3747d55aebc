"""The data contracts judge each partition on its own, whatever the frame holds."""

from datetime import UTC, date, datetime

import polars as pl

from ml_platform import schemas
from ml_platform.checks import ALL_PARTITIONS, contract_failures

DAY_1, DAY_2 = date(2026, 3, 1), date(2026, 3, 2)


def _clean(ids_by_day: dict[date, list[str]]) -> pl.DataFrame:
    """Valid clean shipments with the given ids per day."""
    rows = [
        {
            "shipment_id": shipment_id,
            "booked_at": datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
            "origin_city": "Lyon",
            "origin_country": "FR",
            "destination_city": "Turin",
            "destination_country": "IT",
            "distance_km": 310.0,
            "weight_kg": 120.0,
            "volume_m3": 1.5,
            "transport_mode": "road",
            "carrier": "acme",
            "price_eur": 420.0,
            "lane": "Lyon->Turin",
            "partition_date": day,
            "_source_uri": "file:///landing/x.csv",
            "_source_sha256": "0" * 64,
            "_source_row": i + 1,
        }
        for day, ids in ids_by_day.items()
        for i, shipment_id in enumerate(ids)
    ]
    frame = pl.DataFrame(rows, schema_overrides={"booked_at": pl.Datetime("us", "UTC")})
    return frame.select(list(schemas.CLEAN_SHIPMENTS.columns))


def _judge(frame: pl.DataFrame) -> dict[str, dict]:
    return contract_failures(schemas.CLEAN_SHIPMENTS, frame, "partition_date")


def test_an_id_may_come_again_on_another_day():
    assert _judge(_clean({DAY_1: ["a", "b"], DAY_2: ["a", "c"]})) == {}


def test_each_failing_row_counts_against_its_own_day_only():
    frame = _clean({DAY_1: ["a", "b"], DAY_2: ["c", "c"]})  # a duplicate on day 2
    frame = frame.with_columns(  # and a negative price on day 1
        price_eur=pl.when(pl.col("shipment_id") == "b").then(-1.0).otherwise("price_eur")
    )
    failures = _judge(frame)
    assert set(failures) == {"2026-03-01", "2026-03-02"}
    assert "price_eur: greater_than(0)" in failures["2026-03-01"]["problem"]
    assert "unique" not in failures["2026-03-01"]["problem"]
    assert "multiple_fields_uniqueness" in failures["2026-03-02"]["problem"]
    assert "price_eur" not in failures["2026-03-02"]["problem"]
    # Rows are named by their index within their own day, as a reader of that day sees them.
    assert [f["index"] for f in failures["2026-03-01"]["failures"]] == [1]
    assert sorted(f["index"] for f in failures["2026-03-02"]["failures"]) == [0, 1]


def test_a_frame_level_failure_counts_against_every_day():
    frame = _clean({DAY_1: ["a"], DAY_2: ["b"]}).drop("carrier")
    failures = _judge(frame)
    assert set(failures) == {"2026-03-01", "2026-03-02"}
    for failure in failures.values():
        assert failure["failures"][0]["failure_case"] == "carrier"


def test_an_empty_frame_is_judged_on_its_columns():
    assert _judge(_clean({DAY_1: ["a"]}).clear()) == {}
    failures = _judge(_clean({DAY_1: ["a"]}).clear().drop("lane"))
    assert set(failures) == {ALL_PARTITIONS}


def test_joint_uniqueness_is_judged_without_pandera_copying_the_frame(monkeypatch):
    """pandera's own uniqueness rule collects the whole frame again; the contract asks a group-by."""
    from pandera.backends.polars.container import DataFrameSchemaBackend

    calls = []
    original = DataFrameSchemaBackend.check_column_values_are_unique
    monkeypatch.setattr(
        DataFrameSchemaBackend,
        "check_column_values_are_unique",
        lambda self, frame, schema: calls.append(schema.unique) or original(self, frame, schema),
    )
    failures = _judge(_clean({DAY_1: ["a", "a", "b"], DAY_2: ["a"]}))
    assert not any(calls)  # pandera was given no uniqueness rule to run
    assert list(failures) == ["2026-03-01"]
    assert [f["index"] for f in failures["2026-03-01"]["failures"]] == [0, 1]
    assert all(
        f["check"] == "multiple_fields_uniqueness" for f in failures["2026-03-01"]["failures"]
    )


def test_each_set_of_jointly_unique_columns_is_judged_on_the_columns_present():
    import pandera.polars as pa

    schema = pa.DataFrameSchema(
        {"day": pa.Column(pl.Date), "a": pa.Column(pl.Utf8), "b": pa.Column(pl.Int64)},
        unique=[["day", "a"], ["day", "b", "gone"]],
    )
    frame = pl.DataFrame({"day": [DAY_1, DAY_1, DAY_1], "a": ["x", "y", "x"], "b": [1, 1, 2]})
    failures = contract_failures(schema, frame, "day")["2026-03-01"]["failures"]
    duplicates = [f for f in failures if f["check"] == "multiple_fields_uniqueness"]
    # rows 0 and 2 repeat (day, a); rows 0 and 1 repeat (day, b), "gone" being absent
    assert sorted(f["index"] for f in duplicates) == [0, 0, 1, 2]
    assert '"a":"x"' in duplicates[0]["failure_case"]
    # the missing column itself is pandera's frame-level failure, counted as before
    assert schema.unique == [["day", "a"], ["day", "b", "gone"]]  # the schema is not changed


def test_a_null_key_repeats_a_null_key_as_in_pandera():
    import pandera.polars as pa

    columns = {"day": pa.Column(pl.Date), "a": pa.Column(pl.Utf8, nullable=True)}
    schema = pa.DataFrameSchema(columns, unique=["day", "a"])
    frame = pl.DataFrame({"day": [DAY_1] * 3, "a": [None, None, "x"]})
    failures = contract_failures(schema, frame, "day")["2026-03-01"]["failures"]
    assert [f["index"] for f in failures] == [0, 1]


def test_uniqueness_on_any_column_name_and_coercing_schemas_left_to_pandera():
    import pandera.polars as pa

    frame = pl.DataFrame({"day": [DAY_1] * 2, "len": [1, 1], "v": ["1", "01"]})
    by_len = pa.DataFrameSchema({"day": pa.Column(pl.Date), "len": pa.Column(pl.Int64)})
    by_len.unique = ["day", "len"]
    failures = contract_failures(by_len, frame.drop("v"), "day")["2026-03-01"]["failures"]
    assert [f["index"] for f in failures] == [0, 1]
    # "1" and "01" are one value once coerced: pandera judges the coerced frame
    coercing = pa.DataFrameSchema(
        {"day": pa.Column(pl.Date), "v": pa.Column(pl.Int64, coerce=True)}, unique=["day", "v"]
    )
    failures = contract_failures(coercing, frame.drop("len"), "day")["2026-03-01"]["failures"]
    assert [f["index"] for f in failures] == [0, 1]


def test_a_days_failures_are_listed_in_panderas_order():
    frame = _clean({DAY_1: ["a", "a", "b"]}).with_columns(
        price_eur=pl.when(pl.col("shipment_id") == "b").then(-1.0).otherwise("price_eur")
    )
    problem = _judge(frame)["2026-03-01"]["problem"]
    assert problem == (
        "3 contract failure(s): clean_shipments: multiple_fields_uniqueness, "
        "price_eur: greater_than(0)"
    )
