import datetime as dt

import numpy as np
import pandas as pd

from kline.calendar import sessions_in_range
from kline.instruments import instrument
from kline.providers.base import Provider
from kline.providers.synthetic import SyntheticProvider
from kline.schema import BAR_COLUMNS

UNIVERSE = ["000001.SH", "000300.SH", "600519.SH", "000001.SZ", "300750.SZ", "688981.SH"]


def test_is_a_provider_with_canonical_columns():
    p = SyntheticProvider()
    assert isinstance(p, Provider)
    df = p.fetch(["600519.SH"], dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    assert list(df.columns) == BAR_COLUMNS
    assert (df["source"] == "synthetic").all()


def test_a_day_does_not_depend_on_the_range_asked_for():
    p = SyntheticProvider(seed=11)
    long = p.fetch(UNIVERSE, dt.date(2023, 1, 1), dt.date(2024, 6, 30)).drop(columns="ingested_at")
    short = p.fetch(UNIVERSE, dt.date(2024, 3, 1), dt.date(2024, 3, 31)).drop(columns="ingested_at")
    day = SyntheticProvider(seed=11).fetch(UNIVERSE, dt.date(2024, 3, 15), dt.date(2024, 3, 15))
    merged = short.merge(long, on=["symbol", "trade_date"], suffixes=("", "_long"))
    assert len(merged) == len(short) > 0
    for c in ["open", "high", "low", "close", "pre_close", "volume", "amount"]:
        np.testing.assert_array_equal(merged[c], merged[f"{c}_long"])
    pd.testing.assert_frame_equal(
        day.drop(columns="ingested_at").reset_index(drop=True),
        short[short["trade_date"] == dt.date(2024, 3, 15)].reset_index(drop=True),
    )
    other_seed = SyntheticProvider(seed=12).fetch(["600519.SH"], dt.date(2024, 3, 15), dt.date(2024, 3, 15))
    assert other_seed["close"].iloc[0] != day[day["symbol"] == "600519.SH"]["close"].iloc[0]


def test_realism_over_ten_years():
    df = SyntheticProvider().fetch(UNIVERSE, dt.date(2015, 1, 1), dt.date(2024, 12, 31))
    sessions = set(sessions_in_range(dt.date(2015, 1, 1), dt.date(2024, 12, 31)))
    assert set(df["trade_date"]) <= sessions  # sessions only
    assert (df["high"] >= df[["open", "close", "low"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df[["open", "high", "low", "close", "pre_close", "volume", "amount"]] > 0).all().all()
    limit_days, suspended = 0, 0
    for sym, g in df.groupby("symbol"):
        inst = instrument(sym)
        r = g["close"] / g["pre_close"] - 1
        n_sessions = len(sessions)
        if inst.is_index:
            assert len(g) == n_sessions  # indices are never suspended
            assert r.abs().max() < 0.11
        else:
            suspended += n_sessions - len(g)
            assert r.abs().max() <= inst.price_limit + 0.01 / g["pre_close"].min() + 1e-9
            limit_days += int((r.abs() >= inst.price_limit - 0.002).sum())
            assert (g["volume"] % 100 == 0).all()  # whole lots, in shares
        assert r.kurt() > 1.0  # fat tails
        assert r.abs().autocorr(lag=1) > 0.03  # volatility clustering
        assert np.corrcoef(r.abs(), np.log(g["volume"]))[0, 1] > 0.3  # volume rises with |return|
        assert 0.5 < g["amount"].iloc[0] / (g["volume"].iloc[0] * g["close"].iloc[0]) < 2  # CNY
    assert limit_days > 0 and suspended > 0
    sse = df[df["symbol"] == "000001.SH"]["close"]
    assert 1800 < sse.median() < 4500  # plausible SSE Composite level


def test_serves_any_well_formed_code_quickly():
    syms = [f"{600000 + i:06d}.SH" for i in range(50)]
    df = SyntheticProvider().fetch(syms, dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    assert df["symbol"].nunique() >= 45  # a few may be suspended all month
