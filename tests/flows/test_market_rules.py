"""Dated market rules and row-level vendor defects, through `kline backfill` on vendor files."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from helpers_validation import read_quarantine, validation_history

from flows.cli import main
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHINEXT, MAIN = "300750.SZ", "000001.SZ"


def tushare_file(path, bars: pd.DataFrame) -> None:
    """Bars as a tushare export (newest first, lots and thousands)."""
    b = bars.iloc[::-1]
    pd.DataFrame({"ts_code": b["symbol"], "trade_date": [d.strftime("%Y%m%d") for d in b["trade_date"]],
                  "open": b["open"], "high": b["high"], "low": b["low"], "close": b["close"],
                  "pre_close": b["pre_close"], "vol": b["volume"] / 100, "amount": b["amount"] / 1000,
                  }).to_csv(path, index=False)


def jump(bars: pd.DataFrame, day: dt.date, move: float) -> pd.DataFrame:
    """A real jump of ``move`` on ``day``: that close and every later price move together."""
    b = bars.reset_index(drop=True).copy()
    i = int(np.flatnonzero(b["trade_date"] == day)[0])
    factor = (1 + move) * b.at[i, "pre_close"] / b.at[i, "close"]
    for c in ("open", "high", "low", "close"):
        b.loc[i:, c] = (b.loc[i:, c] * factor).round(2)
    b.loc[i + 1:, "pre_close"] = (b.loc[i + 1:, "pre_close"] * factor).round(2)
    b.loc[i, ["open", "low"]] = b.at[i, "pre_close"]  # opened flat, closed up
    return b


def backfill(src, lake_root, symbols, start, end) -> int:
    return main(["backfill", "--provider", "file", "--source", str(src), "--symbols", ",".join(symbols),
                 "--start", start, "--end", end, "--lake", lake_root, "--data-only"])


def test_chinext_limit_and_st_periods_are_dated(lake_root, tmp_path, isolated_cwd):
    src = tmp_path / "vendor"
    src.mkdir()
    syn = SyntheticProvider()
    d19, d21, st_day, plain_day = dt.date(2019, 6, 12), dt.date(2021, 6, 9), dt.date(2019, 6, 19), dt.date(2021, 6, 16)
    chinext = pd.concat([syn.fetch([CHINEXT], dt.date(2019, 6, 1), dt.date(2019, 6, 30)),
                         syn.fetch([CHINEXT], dt.date(2021, 6, 1), dt.date(2021, 6, 30))], ignore_index=True)
    chinext = jump(jump(chinext, d19, 0.15), d21, 0.15)
    main_board = pd.concat([syn.fetch([MAIN], dt.date(2019, 6, 1), dt.date(2019, 6, 30)),
                            syn.fetch([MAIN], dt.date(2021, 6, 1), dt.date(2021, 6, 30))], ignore_index=True)
    main_board = jump(jump(main_board, st_day, 0.07), plain_day, 0.07)
    tushare_file(src / f"{CHINEXT}.csv", chinext)
    tushare_file(src / f"{MAIN}.csv", main_board)
    pd.DataFrame({"symbol": [MAIN], "start_date": ["2019-05-06"], "end_date": ["2020-05-29"],
                  "name": ["ST平安"]}).to_csv(src / "_st_periods.csv", index=False)

    assert backfill(src, lake_root, [CHINEXT, MAIN], "2019-06-01", "2019-06-30") == 0
    assert backfill(src, lake_root, [CHINEXT, MAIN], "2021-06-01", "2021-06-30") == 0
    lake = Lake(lake_root)
    q = read_quarantine(lake).set_index(["symbol", "trade_date"])
    assert set(q.index) == {(CHINEXT, d19), (MAIN, st_day)}
    assert q.loc[(CHINEXT, d19), "failed_expectations"] == "price_limit"
    assert "chinext ±10% from 2009-10-30 (board rule)" in q.loc[(CHINEXT, d19), "reason"]
    assert "main ST ±5% from 1998-04-22" in q.loc[(MAIN, st_day), "reason"]
    assert "ST平安 from 2019-05-06 (file)" in q.loc[(MAIN, st_day), "reason"]
    curated = lake.read_curated_bars()
    kept = set(zip(curated["symbol"], curated["trade_date"], strict=True))
    assert {(CHINEXT, d21), (MAIN, plain_day)} <= kept  # the same moves, under the rules of 2021
    assert len(curated) + len(q) == len(chinext) + len(main_board)
    facts = lake.read_instrument_facts([MAIN])
    assert facts.st_periods["name"].tolist() == ["ST平安"] and facts.sources()["st_periods"] == ["file"]
    # each validation run says which facts dated its limits
    assert {tuple(d["limit_facts"]["st_periods"]) for d in validation_history(lake)} == {("file",)}


def test_a_duplicated_date_quarantines_its_copies_and_imports_the_rest(lake_root, tmp_path, isolated_cwd, capsys):
    src = tmp_path / "vendor"
    src.mkdir()
    bars = SyntheticProvider().fetch(["600519.SH"], dt.date(2024, 1, 1), dt.date(2024, 2, 29))
    twice, same = bars["trade_date"].iloc[10], bars["trade_date"].iloc[20]
    dup = bars.iloc[[10]].assign(close=bars["close"].iloc[10] + 0.5, high=bars["high"].iloc[10] + 0.5)
    tushare_file(src / "600519.SH.csv", pd.concat([bars, dup, bars.iloc[[20]]]).sort_values("trade_date"))

    assert backfill(src, lake_root, ["600519.SH"], "2024-01-01", "2024-02-29") == 0
    lake = Lake(lake_root)
    q = read_quarantine(lake)
    assert len(q) == 2 and set(q["trade_date"]) == {twice}
    assert set(q["failed_expectations"]) == {"unique_symbol_trade_date"} == set(q["reason"])
    curated = lake.read_curated_bars()
    assert len(curated) == len(bars) - 1 and same in set(curated["trade_date"])
    out = capsys.readouterr().out
    assert "600519.SH: vendor file rows duplicate rows collapsed 1, duplicate dates 1" in out
