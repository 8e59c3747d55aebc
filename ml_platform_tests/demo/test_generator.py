import hashlib
import json
import os
import re
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from ml_platform.cli.generate import main
from ml_platform.demo import generator as gen
from ml_platform.demo.generator import (
    BAD_ROW_KINDS,
    MODES,
    REQUIRED_COLUMNS,
    SCHEMA,
    GeneratorConfig,
    generate_day,
    generate_drops,
    write_drop,
)
from ml_platform.demo.geography import CITIES
from ml_platform.demo.prices import expected_price

DAY = date(2026, 1, 5)
SMALL = GeneratorConfig(rows_per_day=3_000, files_per_drop=2, seed=11)


def read_part(path: Path) -> pl.DataFrame:
    """Read one data file the way a landing-zone consumer would."""
    if path.suffix == ".csv":
        return pl.read_csv(path, schema=SCHEMA)
    return pl.read_parquet(path)


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / "_SUCCESS").read_text())


def read_drop(directory: Path) -> pl.DataFrame:
    """All rows of a drop, in manifest order."""
    names = [f["name"] for f in read_manifest(directory)["files"]]
    return pl.concat([read_part(directory / name) for name in names])


def count_bad_rows(df: pl.DataFrame) -> dict[str, int]:
    """Count defects from the data alone, as a cleaning step would."""
    ids = df.get_column("shipment_id").drop_nulls()
    mode = pl.col("transport_mode")
    return {
        "null": df.filter(pl.any_horizontal(pl.col(REQUIRED_COLUMNS).is_null())).height,
        "negative_weight": df.filter(pl.col("weight_kg") < 0).height,
        "unknown_mode": df.filter(mode.is_not_null() & ~mode.is_in(MODES)).height,
        "duplicate_id": ids.len() - ids.n_unique(),
    }


def is_gb_lane() -> pl.Expr:
    return (pl.col("origin_country") == "GB") | (pl.col("destination_country") == "GB")


def test_same_day_and_config_give_identical_rows() -> None:
    first = generate_day(DAY, SMALL)
    assert first.schema == SCHEMA
    assert first.height == SMALL.rows_per_day
    assert_frame_equal(first, generate_day(DAY, SMALL))
    assert not first.equals(generate_day(DAY + timedelta(days=1), SMALL))
    assert not first.equals(generate_day(DAY, GeneratorConfig(rows_per_day=3_000, seed=12)))


def test_day_written_alone_matches_day_written_in_a_range(tmp_path: Path) -> None:
    target = DAY + timedelta(days=2)
    alone = write_drop(tmp_path / "alone", target, SMALL)
    in_range = generate_drops(tmp_path / "range", DAY, 4, SMALL)

    assert [s.partition for s in in_range] == [DAY + timedelta(days=k) for k in range(4)]
    assert read_manifest(alone.directory) == read_manifest(in_range[2].directory)
    assert_frame_equal(read_drop(alone.directory), generate_day(target, SMALL))


def test_layout_and_manifest(tmp_path: Path) -> None:
    summary = write_drop(tmp_path, DAY, SMALL)

    directory = tmp_path / "shipments" / "2026-01-05"
    assert summary.directory == directory
    assert summary.marker == directory / "_SUCCESS"
    # 2026-01-05 has an odd ordinal, so file 0 is Parquet and file 1 CSV.
    assert sorted(p.name for p in directory.iterdir()) == [
        "_SUCCESS",
        "part-000.parquet",
        "part-001.csv",
    ]
    manifest = read_manifest(directory)
    assert manifest["partition"] == "2026-01-05"
    assert manifest["seed"] == SMALL.seed
    assert manifest["rows"] == summary.rows == SMALL.rows_per_day
    assert [f["name"] for f in manifest["files"]] == [p.name for p in summary.files]
    assert sum(f["rows"] for f in manifest["files"]) == manifest["rows"]
    for entry in manifest["files"]:
        data = (directory / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert read_part(directory / entry["name"]).height == entry["rows"]


def test_every_file_is_renamed_into_place_and_the_marker_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(gen.os, "replace", recording_replace)
    write_drop(tmp_path, DAY, SMALL)

    assert [dst.name for _, dst in renames] == ["part-000.parquet", "part-001.csv", "_SUCCESS"]
    for src, dst in renames:
        assert src.parent == dst.parent
        assert src.name.startswith(f".{dst.name}.tmp-")


def test_formats_alternate_and_read_back_with_one_schema(tmp_path: Path) -> None:
    config = GeneratorConfig(rows_per_day=2_000, files_per_drop=3, seed=3, bad_row_share=0.04)
    odd, even = write_drop(tmp_path, DAY, config), write_drop(tmp_path, DAY + timedelta(1), config)
    assert [p.suffix for p in odd.files] == [".parquet", ".csv", ".parquet"]
    assert [p.suffix for p in even.files] == [".csv", ".parquet", ".csv"]

    parquet = pl.read_parquet(odd.files[0])
    assert parquet.schema == SCHEMA
    csv_path = odd.files[1]
    header, first_row = csv_path.read_text(encoding="utf-8").splitlines()[:2]
    assert header.split(",") == SCHEMA.names()
    assert re.match(r"SHP-20260105-\d{6},2026-01-05T\d{2}:\d{2}:\d{2}\.\d{6}Z,", first_row)

    for summary in (odd, even):
        # Round trip is lossless, nulls and non-ASCII city names included.
        assert_frame_equal(read_drop(summary.directory), generate_day(summary.partition, config))


def test_bad_row_counts_in_manifest_match_the_data(tmp_path: Path) -> None:
    config = GeneratorConfig(rows_per_day=4_001, seed=5, bad_row_share=0.1)
    summary = write_drop(tmp_path, DAY, config)
    manifest = read_manifest(summary.directory)
    df = read_drop(summary.directory)

    assert manifest["bad_rows"] == dict(summary.bad_rows) == count_bad_rows(df)
    counts = list(manifest["bad_rows"].values())
    assert list(manifest["bad_rows"]) == list(BAD_ROW_KINDS)
    assert sum(counts) == round(0.1 * 4_001)
    assert max(counts) - min(counts) <= 1
    # Nulls are spread over every required column.
    assert all(df.get_column(c).null_count() > 0 for c in REQUIRED_COLUMNS)
    # One defect per row: the kinds never overlap, so rejected rows add up.
    ids = df.get_column("shipment_id")
    clean = df.filter(
        pl.all_horizontal(pl.col(REQUIRED_COLUMNS).is_not_null()),
        pl.col("weight_kg") > 0,
        pl.col("transport_mode").is_in(MODES),
        ~ids.is_duplicated(),
    )
    assert df.height - clean.height == sum(counts) + manifest["bad_rows"]["duplicate_id"]


def test_clean_drop_reports_zero_bad_rows(tmp_path: Path) -> None:
    summary = write_drop(tmp_path, DAY, SMALL)
    expected = dict.fromkeys(BAD_ROW_KINDS, 0)
    assert read_manifest(summary.directory)["bad_rows"] == expected
    assert count_bad_rows(read_drop(summary.directory)) == expected


def test_bad_rows_do_not_change_clean_rows() -> None:
    clean = generate_day(DAY, SMALL)
    dirty = generate_day(DAY, GeneratorConfig(rows_per_day=3_000, seed=11, bad_row_share=0.2))
    unchanged = pl.all_horizontal(
        [pl.col(c).eq_missing(pl.col(f"{c}_clean")) for c in SCHEMA.names()]
    )
    joined = pl.concat([dirty, clean.rename(lambda c: f"{c}_clean")], how="horizontal")
    assert joined.filter(unchanged).height == round(0.8 * 3_000)


def test_shock_hits_gb_lanes_from_shock_date_only() -> None:
    shock_day = DAY + timedelta(days=1)
    shocked = GeneratorConfig(rows_per_day=3_000, seed=11, shock_date=shock_day)

    before = generate_day(DAY, shocked)
    assert_frame_equal(before, generate_day(DAY, SMALL))

    base, after = generate_day(shock_day, SMALL), generate_day(shock_day, shocked)
    assert_frame_equal(base.drop("price_eur"), after.drop("price_eur"))
    gb = base.select(is_gb_lane()).to_series()
    assert 0 < gb.sum() < base.height
    ratio = after.get_column("price_eur") / base.get_column("price_eur")
    assert (ratio.filter(~gb) == 1.0).all()
    # Prices are rounded to cents, so the ratio is exact up to that rounding.
    assert (ratio.filter(gb) - 1.35).abs().max() < 0.01

    expected_ratio = expected_price(after, shock_date=shock_day) / expected_price(base)
    assert_series_equal(
        expected_ratio,
        pl.Series("expected_price_eur", [1.0] * base.height).scatter(gb.arg_true(), 1.35),
        abs_tol=1e-12,
    )


def test_expected_price_is_within_noise_of_clean_prices() -> None:
    days = [DAY, date(2026, 7, 15), date(2026, 12, 16)]
    df = pl.concat([generate_day(d, GeneratorConfig(rows_per_day=3_000)) for d in days])
    ratio = df.get_column("price_eur") / expected_price(df.lazy())

    assert ratio.null_count() == 0
    assert (ratio - 1).abs().median() < 0.08
    assert abs(ratio.median() - 1) < 0.01
    # Noise is real (a model cannot be perfect) but modest.
    assert 0.02 < ratio.std() < 0.08


def test_modes_respect_geography() -> None:
    df = generate_day(DAY, GeneratorConfig(rows_per_day=20_000))
    region = {c.name: c.region for c in CITIES}
    crossing = df.get_column("origin_city").replace_strict(region) != df.get_column(
        "destination_city"
    ).replace_strict(region)
    modes = df.get_column("transport_mode")
    assert set(modes.filter(crossing).unique()) == {"sea", "air"}
    assert set(modes.filter(~crossing).unique()) == {"road", "rail", "air"}
    assert (df.get_column("origin_city") != df.get_column("destination_city")).all()
    lane_shares = df.group_by("origin_city", "destination_city").len().get_column("len")
    # Zipf-like: the busiest lane carries far more than an average lane.
    assert lane_shares.max() > 20 * lane_shares.mean()


def test_regenerating_a_day_removes_stale_files(tmp_path: Path) -> None:
    write_drop(tmp_path, DAY, GeneratorConfig(rows_per_day=900, files_per_drop=3))
    summary = write_drop(tmp_path, DAY, GeneratorConfig(rows_per_day=500, files_per_drop=1))

    assert sorted(p.name for p in summary.directory.iterdir()) == ["_SUCCESS", "part-000.parquet"]
    assert read_manifest(summary.directory)["rows"] == 500
    assert read_drop(summary.directory).height == 500


def test_failed_regeneration_leaves_no_marker_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = write_drop(tmp_path, DAY, SMALL)
    calls = 0
    real_replace = os.replace

    def failing_second_replace(src: str | Path, dst: str | Path) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(gen.os, "replace", failing_second_replace)
    with pytest.raises(OSError, match="disk full"):
        write_drop(tmp_path, DAY, SMALL)

    names = sorted(p.name for p in summary.directory.iterdir())
    assert names == ["part-000.parquet", "part-001.csv"]


def test_cli_writes_drops_and_prints_one_summary_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--landing-root",
        str(tmp_path),
        "--start",
        "2026-03-30",
        "--days",
        "3",
        "--rows-per-day",
        "1000",
        "--files-per-drop",
        "1",
        "--shock-date",
        "2026-03-31",
        "--bad-row-share",
        "0.02",
    ]
    assert main(argv) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "3000 rows" in lines[0] and "rows/s" in lines[0]
    markers = sorted(p.parent.name for p in tmp_path.glob("shipments/*/_SUCCESS"))
    assert markers == ["2026-03-30", "2026-03-31", "2026-04-01"]
    assert read_manifest(tmp_path / "shipments" / "2026-04-01")["bad_rows"]["null"] == 5


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="bad_row_share"):
        GeneratorConfig(bad_row_share=0.9)
    with pytest.raises(ValueError, match="files_per_drop"):
        GeneratorConfig(files_per_drop=0)


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--landing-root", str(tmp_path), "--start", "2026-01-01", "--bad-row-share", "2"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "shipments").exists()
