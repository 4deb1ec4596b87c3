"""kline.lake.partitions: raw month files (backfills) and day files (daily runs) read as one;
a day file wins for its day, a month write folds the month's day files in."""

import datetime as dt
import os

import pandas as pd
import pytest

from kline.lake.partitions import months_between
from kline.providers.synthetic import SyntheticProvider

SYMS = ["600519.SH", "000001.SZ", "000001.SH"]
JAN1, JAN31, FEB29, MAR29 = dt.date(2024, 1, 1), dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 29)


def _bars(symbols, start, end):
    return SyntheticProvider().fetch(symbols, start, end)


def _files(lake, kind="bars"):
    """Every data file under raw/<kind>, relative to it."""
    top = lake.paths.raw_dir(kind)
    return sorted(f"{d}/{n}" for d in os.listdir(top) for n in os.listdir(f"{top}/{d}") if n.endswith(".parquet"))


def _close(df, sym, day):
    row = df[(df["symbol"] == sym) & (df["trade_date"] == day)]
    assert len(row) == 1, row
    return float(row["close"].iloc[0])


def test_a_backfill_writes_one_file_per_month_and_reads_back_the_same_rows(lake):
    bars = _bars(SYMS, JAN1, MAR29)
    ref = lake.write_raw_bars(bars, "synthetic", SYMS, JAN1, MAR29, layout="month")
    assert ref.partitions == ["month=2024-01", "month=2024-02", "month=2024-03"]
    assert _files(lake) == [f"month=2024-0{m}/synthetic.parquet" for m in (1, 2, 3)]
    out = lake.read_raw_bars(JAN1, MAR29)
    expected = bars.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(out.drop(columns="ingested_at"), expected.drop(columns="ingested_at"),
                                  check_dtype=False)
    assert lake.raw_dates() == sorted(bars["trade_date"].unique())
    assert lake.raw_dates(dt.date(2024, 2, 1), FEB29) == sorted(d for d in bars["trade_date"].unique()
                                                                 if d.month == 2)
    # pushdown of symbols and dates inside a month file
    part = lake.read_raw_bars(dt.date(2024, 1, 10), dt.date(2024, 1, 12), symbols=["000001.SZ"])
    assert set(part["symbol"]) == {"000001.SZ"} and part["trade_date"].between(
        dt.date(2024, 1, 10), dt.date(2024, 1, 12)).all() and len(part) == 3
    keys = lake.read_raw_bars(JAN1, JAN31, columns=["symbol", "trade_date"])
    assert list(keys.columns) == ["symbol", "trade_date"] and len(keys) == len(bars[bars.trade_date <= JAN31])


def test_a_later_day_file_wins_over_the_month_file_for_its_day_only(lake):
    lake.write_raw_bars(_bars(SYMS, JAN1, JAN31), "synthetic", SYMS, JAN1, JAN31, layout="month")
    day = dt.date(2024, 1, 15)
    fix = _bars(["600519.SH"], day, day).assign(close=1.0)  # a daily run re-fetches one symbol
    ref = lake.write_raw_bars(fix, "synthetic", ["600519.SH"], day, day)
    assert ref.partitions == ["trade_date=2024-01-15"]
    assert "trade_date=2024-01-15/synthetic.parquet" in _files(lake)
    out = lake.read_raw_bars(JAN1, JAN31)
    assert _close(out, "600519.SH", day) == 1.0
    # the day file holds the whole day: the other symbols' rows of the month file are still there
    assert sorted(out[out.trade_date == day]["symbol"]) == sorted(SYMS)
    assert _close(out, "600519.SH", dt.date(2024, 1, 16)) != 1.0  # other days still from the month file
    assert len(out) == len(_bars(SYMS, JAN1, JAN31))
    assert lake.raw_dates(day, day) == [day]
    # the day moved into its day file: no file holds it twice (the next session costs no such rewrite)
    month = lake.read_table(lake.paths.raw_month("bars", "2024-01", "synthetic")).to_pandas()
    assert day not in set(month["trade_date"]) and len(month) == len(out) - len(SYMS)


def test_a_day_write_that_empties_a_day_removes_it_from_the_month_file_too(lake):
    lake.write_raw_bars(_bars(["600519.SH"], JAN1, JAN31), "synthetic", ["600519.SH"], JAN1, JAN31, layout="month")
    day = dt.date(2024, 1, 15)
    # the vendor no longer has that bar (a suspension): the daily fetch over the day returns nothing
    lake.write_raw_bars(_bars(["600519.SH"], day, day).iloc[0:0], "synthetic", ["600519.SH"], day, day)
    assert lake.read_raw_bars(day, day).empty
    assert day not in lake.raw_dates()
    assert not any(f.startswith("trade_date=") for f in _files(lake))
    assert len(lake.read_raw_bars(JAN1, JAN31)) == len(_bars(["600519.SH"], JAN1, JAN31)) - 1


def test_a_month_write_folds_in_and_removes_the_day_files_of_its_source(lake):
    daily = _bars(SYMS, dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    lake.write_raw_bars(daily, "synthetic", SYMS, dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    lake.write_raw_bars(daily.assign(source="other"), "other")  # another source's day files stay
    assert len([f for f in _files(lake) if f.endswith("synthetic.parquet")]) == 4
    # a backfill of one symbol over the month: the other symbols' day rows must survive the fold
    lake.write_raw_bars(_bars(["600519.SH"], JAN1, JAN31).assign(close=2.0), "synthetic", ["600519.SH"],
                        JAN1, JAN31, layout="month")
    files = _files(lake)
    assert [f for f in files if f.endswith("synthetic.parquet")] == ["month=2024-01/synthetic.parquet"]
    assert len([f for f in files if f.endswith("other.parquet")]) == 4
    out = lake.read_raw_bars(JAN1, JAN31, source="synthetic")
    assert set(out[out.symbol == "600519.SH"]["close"]) == {2.0}
    kept = out[out.symbol != "600519.SH"].drop(columns="ingested_at").reset_index(drop=True)
    want = daily[daily.symbol != "600519.SH"].sort_values(["symbol", "trade_date"]).drop(columns="ingested_at")
    pd.testing.assert_frame_equal(kept, want.reset_index(drop=True), check_dtype=False)
    assert len(lake.read_raw_bars(JAN1, JAN31, source="other")) == len(daily)
    assert os.listdir(lake.paths.raw_dir("bars")).count("trade_date=2024-01-02") == 1  # still other's


def test_a_refresh_over_a_month_replaces_its_symbols_and_drops_their_stale_days(lake):
    bars = _bars(SYMS, JAN1, JAN31)
    bad = bars[bars.symbol == "600519.SH"].iloc[:1].assign(trade_date=dt.date(2024, 1, 6))  # a weekend
    lake.write_raw_bars(pd.concat([bars, bad]), "synthetic", SYMS, JAN1, JAN31, layout="month")
    assert dt.date(2024, 1, 6) in lake.raw_dates()
    fixed = bars[bars.symbol == "600519.SH"].assign(close=3.0)
    dup = pd.concat([fixed, fixed.iloc[:1]])  # duplicates within one fetch are kept for validation
    lake.write_raw_bars(dup, "synthetic", ["600519.SH"], JAN1, JAN31, layout="month")
    out = lake.read_raw_bars(JAN1, JAN31)
    assert dt.date(2024, 1, 6) not in set(out["trade_date"]) and dt.date(2024, 1, 6) not in lake.raw_dates()
    assert set(out[out.symbol == "600519.SH"]["close"]) == {3.0}
    assert len(out) == len(bars) + 1
    pd.testing.assert_series_equal(out[out.symbol == "000001.SZ"]["close"].reset_index(drop=True),
                                   bars[bars.symbol == "000001.SZ"]["close"].reset_index(drop=True))


def test_partial_months_at_each_end_of_a_backfill_range_keep_the_rest_of_the_month(lake):
    # a first chunk ends mid-February, the next starts the day after: both write February's file
    a, b = _bars(SYMS, JAN1, dt.date(2024, 2, 14)), _bars(SYMS, dt.date(2024, 2, 15), MAR29)
    assert lake.write_raw_bars(a, "synthetic", SYMS, JAN1, dt.date(2024, 2, 14), layout="month").partitions == [
        "month=2024-01", "month=2024-02"]
    assert lake.write_raw_bars(b, "synthetic", SYMS, dt.date(2024, 2, 15), MAR29, layout="month").partitions == [
        "month=2024-02", "month=2024-03"]
    out = lake.read_raw_bars(JAN1, MAR29)
    assert len(out) == len(a) + len(b) and not out.duplicated(["symbol", "trade_date"]).any()
    # a refresh of a range inside the months leaves the days around it as they were
    mid = _bars(["000001.SZ"], dt.date(2024, 1, 20), dt.date(2024, 3, 10)).assign(close=5.0)
    lake.write_raw_bars(mid, "synthetic", ["000001.SZ"], dt.date(2024, 1, 20), dt.date(2024, 3, 10), layout="month")
    out = lake.read_raw_bars(JAN1, MAR29)
    sz = out[out.symbol == "000001.SZ"].set_index("trade_date")["close"]
    assert (sz[[d for d in sz.index if dt.date(2024, 1, 20) <= d <= dt.date(2024, 3, 10)]] == 5.0).all()
    assert (sz[[d for d in sz.index if d < dt.date(2024, 1, 20) or d > dt.date(2024, 3, 10)]] != 5.0).all()
    assert len(out) == len(a) + len(b)
    assert _files(lake) == [f"month=2024-0{m}/synthetic.parquet" for m in (1, 2, 3)]


def test_reference_data_month_files_and_a_later_day_file(lake):
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 2, 1)]
    factors = pd.DataFrame({"symbol": ["600519.SH", "000001.SZ"] * 3, "trade_date": [d for d in days for _ in "ab"],
                            "adj_factor": [1.0, 2.0] * 3})
    assert lake.reference.write_adj_factor(factors, "a", layout="month").partitions == ["month=2024-01",
                                                                                       "month=2024-02"]
    lake.reference.write_adj_factor(factors.iloc[:1].assign(adj_factor=1.5), "a")  # a daily run, one symbol
    out = lake.read_adj_factor(start=days[0], end=days[0])
    assert out.set_index("symbol")["adj_factor"].to_dict() == {"600519.SH": 1.5, "000001.SZ": 2.0}
    assert list(lake.read_adj_factor(["000001.SZ"])["adj_factor"]) == [2.0, 2.0, 2.0]
    limits = factors.rename(columns={"adj_factor": "up_limit"}).assign(down_limit=0.5)
    lake.reference.write_stk_limit(limits, "a", layout="month")
    lake.reference.write_stk_limit(limits.iloc[2:4].assign(up_limit=9.0), "a")
    got = lake.reference.read_stk_limit(start=days[0], end=days[1])
    assert len(got) == 4 and list(got[got.trade_date == days[1]]["up_limit"]) == [9.0, 9.0]
    assert len(lake.reference.read_stk_limit(["600519.SH"])) == 3


def test_a_crash_between_the_month_file_and_the_day_files_removal_reads_per_day_consistently(lake, monkeypatch):
    daily = _bars(SYMS, dt.date(2024, 1, 2), dt.date(2024, 1, 3))
    lake.write_raw_bars(daily, "synthetic", SYMS, dt.date(2024, 1, 2), dt.date(2024, 1, 3))

    def crash(self, path):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(type(lake.raw.table), "_remove_day", crash)
    refreshed = _bars(SYMS, JAN1, JAN31).assign(close=7.0)
    with pytest.raises(KeyboardInterrupt):
        lake.write_raw_bars(refreshed, "synthetic", SYMS, JAN1, JAN31, layout="month")
    out = lake.read_raw_bars(JAN1, JAN31)
    before = out[out.trade_date <= dt.date(2024, 1, 3)]
    assert len(before) == len(daily) and 7.0 not in set(before["close"])  # the days as before the write
    assert set(out[out.trade_date > dt.date(2024, 1, 3)]["close"]) == {7.0}  # the rest as after
    monkeypatch.undo()
    lake.write_raw_bars(refreshed, "synthetic", SYMS, JAN1, JAN31, layout="month")  # the re-run finishes it
    assert set(lake.read_raw_bars(JAN1, JAN31)["close"]) == {7.0}
    assert _files(lake) == ["month=2024-01/synthetic.parquet"]


def test_months_between_and_bad_layout(lake):
    assert months_between(dt.date(2023, 11, 30), dt.date(2024, 2, 1)) == ["2023-11", "2023-12", "2024-01", "2024-02"]
    with pytest.raises(ValueError, match="layout"):
        lake.write_raw_bars(_bars(SYMS, JAN1, JAN31), "synthetic", layout="week")


def test_a_read_that_listed_day_files_a_month_write_then_folded_reads_again(lake, monkeypatch):
    day = dt.date(2024, 1, 2)
    lake.write_raw_bars(_bars(SYMS, day, day), "synthetic", SYMS, day, day)
    lake.write_raw_bars(_bars(SYMS, day, day), "other")  # keeps the day folder after the fold
    table = lake.raw.table
    folder = f"{table.dir}/trade_date=2024-01-02"
    stale = table._sources(folder)  # listed while synthetic's day file was there
    lake.write_raw_bars(_bars(SYMS, JAN1, JAN31), "synthetic", SYMS, JAN1, JAN31, layout="month")  # folds it
    real, calls = table._sources, []

    def listing(path, source=None):
        if path == folder:
            calls.append(1)
            if len(calls) == 1:
                return stale
        return real(path, source)

    monkeypatch.setattr(table, "_sources", listing)
    out = lake.read_raw_bars(JAN1, JAN31, source="synthetic")
    assert stale == ["other", "synthetic"] and len(calls) == 2
    assert len(out) == len(_bars(SYMS, JAN1, JAN31))
