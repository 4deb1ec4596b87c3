"""kline.lake.raw: a fetch is authoritative for its symbols and range; rewriting leaves rows once."""

import datetime as dt

import pandas as pd

from kline.providers.synthetic import SyntheticProvider
from kline.schema import BAR_COLUMNS

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


def _bars(symbols, start=D1, end=D3):
    return SyntheticProvider().fetch(symbols, start, end)


def test_write_twice_leaves_each_row_once_newest_wins(lake):
    first = _bars(["600519.SH", "000001.SH"])
    lake.write_raw_bars(first, "synthetic")
    again = first[first["symbol"] == "600519.SH"].copy()
    again["close"] = again["close"] + 1.0
    lake.write_raw_bars(again, "synthetic")
    lake.write_raw_bars(again, "synthetic")
    out = lake.read_raw_bars(D1, D3)
    assert len(out) == len(first)
    assert not out.duplicated(["symbol", "trade_date"]).any()
    moutai = out[out["symbol"] == "600519.SH"].reset_index(drop=True)
    pd.testing.assert_series_equal(moutai["close"], again["close"].reset_index(drop=True))
    index = out[out["symbol"] == "000001.SH"].reset_index(drop=True)
    pd.testing.assert_series_equal(index["close"], first[first["symbol"] == "000001.SH"]["close"].reset_index(drop=True))
    assert list(out.columns) == BAR_COLUMNS


def test_a_fetch_is_authoritative_for_its_symbols_and_range(lake):
    bars = _bars(["600519.SH", "000001.SZ"])
    weekend = bars[bars["symbol"] == "600519.SH"].iloc[:1].copy()
    weekend["trade_date"] = dt.date(2024, 1, 6)  # a bad date from a broken source
    lake.write_raw_bars(pd.concat([bars, weekend]), "synthetic")
    assert dt.date(2024, 1, 6) in lake.raw_dates()
    dup = pd.concat([bars, bars.iloc[:1]])  # duplicates within one fetch are kept for validation
    lake.write_raw_bars(dup, "synthetic", symbols=["600519.SH", "000001.SZ"], start=D1, end=dt.date(2024, 1, 7))
    out = lake.read_raw_bars(D1, dt.date(2024, 1, 7))
    assert len(out) == len(bars) + 1
    assert lake.read_raw_bars(dt.date(2024, 1, 6), dt.date(2024, 1, 6)).empty  # the fixed fetch removed the bad day
    only_index = _bars(["000001.SH"])
    lake.write_raw_bars(only_index, "synthetic", symbols=["000001.SH"], start=D1, end=D3)
    assert set(lake.read_raw_bars(D1, D3)["symbol"]) == {"600519.SH", "000001.SZ", "000001.SH"}
