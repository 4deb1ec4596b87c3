"""flows.repair.plan: which corrupt files ``kline repair`` rebuilds and how, and which it
refuses before anything changes."""

import datetime as dt

import pytest

from flows.repair import RepairRefused, forget_cached_results, plan
from kline.ingestion import ingest_range
from kline.lake.integrity import IntegrityReport
from kline.providers.synthetic import SyntheticProvider


@pytest.fixture
def ingested(lake):
    ingest_range(SyntheticProvider(), lake, ["600519.SH"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    return lake


def _report(*paths: str) -> IntegrityReport:
    return IntegrityReport(corrupt={p: "damaged" for p in paths})


def test_each_layer_is_rebuilt_its_own_way(ingested):
    lake = ingested
    raw = lake.paths.raw_bars(dt.date(2024, 1, 3), "synthetic")
    curated = lake.paths.curated_bars(2024)
    quarantine = lake.paths.quarantine_bars(dt.date(2024, 1, 4), "run-1")
    panel = f"{lake.paths.features_dir('abc123')}/panel.parquet"
    cal = lake.paths.trade_cal("tushare", 2024)
    todo = plan(lake, _report(raw, curated, quarantine, panel, cal), "synthetic")
    assert todo.raw_days == {"synthetic": {dt.date(2024, 1, 3)}}
    assert todo.curated_years == {2024}
    assert todo.quarantine_days == {dt.date(2024, 1, 4)}
    assert sorted(todo.remove) == sorted([panel, cal])


def test_a_month_file_is_fetched_again_over_the_logged_dates_of_its_month(lake):
    from flows.repair import _month_span

    ingest_range(SyntheticProvider(), lake, ["600519.SH"], dt.date(2023, 12, 20), dt.date(2024, 1, 10), layout="month")
    ingest_range(SyntheticProvider(), lake, ["000001.SZ"], dt.date(2024, 1, 15), dt.date(2024, 2, 2), layout="month")
    month = lake.paths.raw_month("bars", "2024-01", "synthetic")
    assert plan(lake, _report(month), "synthetic").raw_months == {"synthetic": {"2024-01"}}
    start, end, symbols = _month_span(lake, "synthetic", "2024-01")
    assert (start, end, sorted(symbols)) == (dt.date(2024, 1, 1), dt.date(2024, 1, 31), ["000001.SZ", "600519.SH"])
    assert _month_span(lake, "synthetic", "2023-12")[:2] == (dt.date(2023, 12, 20), dt.date(2023, 12, 31))
    with pytest.raises(RepairRefused, match="names no fetch from synthetic in 2023-06"):
        plan(lake, _report(lake.paths.raw_month("bars", "2023-06", "synthetic")), "synthetic")


def test_a_curated_year_missing_beside_raw_bars_is_rebuilt(ingested):
    assert plan(ingested, IntegrityReport(), "synthetic").curated_years == {2024}  # never validated yet


@pytest.mark.parametrize("what, message", [
    ("raw-of-another-provider", "run `kline repair --provider synthetic`"),
    ("raw-day-never-logged", "the ingestion log names no symbol"),
    ("backtest", "not rebuilt by `kline repair`"),
])
def test_what_cannot_be_rebuilt_is_refused_by_the_plan(ingested, what, message):
    lake = ingested
    path = {"raw-of-another-provider": lake.paths.raw_bars(dt.date(2024, 1, 3), "synthetic"),
            "raw-day-never-logged": lake.paths.raw_bars(dt.date(2023, 6, 1), "synthetic"),
            "backtest": f"{lake.paths.backtest_dir('2024-01-05-abc')}/predictions.parquet"}[what]
    with pytest.raises(RepairRefused, match=message.replace("`", ".").replace("(", ".")):
        plan(lake, _report(path), "tushare" if what == "raw-of-another-provider" else "synthetic")


def test_cached_task_results_naming_a_removed_file_are_forgotten(lake):
    import base64
    import json
    import os
    import pickle

    folder = lake.paths.prefect_results()
    os.makedirs(folder)
    panel = f"{lake.paths.features_dir('abc123')}/panel.parquet"
    for name, value in (("a", {"path": panel, "rows": 3}), ("b", {"path": "elsewhere"})):
        with open(f"{folder}/{name}", "w") as f:
            json.dump({"metadata": {}, "result": base64.b64encode(pickle.dumps(value)).decode()}, f)
    assert forget_cached_results(lake, [panel]) == 1
    assert sorted(os.listdir(folder)) == ["b"]


def test_a_lake_written_before_hashes_is_read_and_reported_unverified_not_corrupt(ingested, capsys):
    import glob
    import os

    from flows.cli import main

    for p in glob.glob(f"{ingested.root}/**/*.hashes", recursive=True):
        os.remove(p)  # as a lake written before hashes were recorded
    parquet = glob.glob(f"{ingested.root}/**/*.parquet", recursive=True)
    assert main(["status", "--lake", ingested.root]) == 0
    out = capsys.readouterr().out
    assert "600519.SH" in out  # the per-symbol table, read as before
    assert f"0 Parquet files verified, {len(parquet)} unverified" in out and ", 0 corrupt," in out
    assert main(["repair", "--lake", ingested.root]) == 0  # nothing corrupt: it validates the year
    assert "curated year 2024 rebuilt" in capsys.readouterr().out
    assert main(["repair", "--lake", ingested.root]) == 0
    assert "nothing to repair" in capsys.readouterr().out
    assert main(["status", "--lake", ingested.root]) == 0


def test_repair_fetches_a_damaged_reference_table_and_raw_day_again(ingested):
    from flows.repair import repair
    from kline.config import Settings
    from kline.lake.integrity import scan

    lake = ingested
    listings = lake.paths.reference("listings", "synthetic")
    raw = lake.paths.raw_bars(dt.date(2024, 1, 3), "synthetic")
    want = {p: lake.read_table(p) for p in (listings, raw)}
    for p in (listings, raw):
        with open(p, "r+b") as f:
            f.truncate(100)
    assert sorted(scan(lake).corrupt) == sorted([listings, raw])
    done = repair(Settings().replace(lake=lake.root, symbols=["600519.SH"]))
    assert any("fetched listings again" in d for d in done) and any("fetched 2024-01-03 again" in d for d in done)
    assert scan(lake).clean
    for p, table in want.items():
        assert lake.read_table(p).drop_columns([c for c in table.column_names if c == "ingested_at"]).equals(
            table.drop_columns([c for c in table.column_names if c == "ingested_at"]))
