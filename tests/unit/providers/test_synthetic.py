import datetime as dt

import numpy as np
import pandas as pd

from kline.calendar import sessions_in_range
from kline.instruments import instrument
from kline.providers.base import Provider
from kline.providers.synthetic import SyntheticProvider, synthetic_facts
from kline.rules import limit_table
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
    facts = synthetic_facts(SyntheticProvider().seed, UNIVERSE)
    for sym, g in df.groupby("symbol"):
        inst = instrument(sym)
        r = g["close"] / g["pre_close"] - 1
        if inst.is_index:
            assert len(g) == len(sessions)  # indices are never suspended
            assert r.abs().max() < 0.11
        else:
            listed = facts.listing(sym)[0]
            suspended += len([d for d in sessions if d >= listed]) - len(g)
            lim = limit_table(sym, g["trade_date"], facts, inst)
            tick = 0.01 / g["pre_close"].to_numpy()
            ok = np.isnan(lim.up) | ((r <= lim.up + tick + 1e-9) & (-r <= lim.down + tick + 1e-9)).to_numpy()
            assert ok.all(), g[~ok]
            limit_days += int((r.abs().to_numpy() >= np.nan_to_num(lim.up, nan=9) - 0.002).sum())
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


def test_moves_follow_the_dated_limits():
    """ChiNext reaches +20 % only from 2020-08-24; ST periods and listings shape the moves."""
    p = SyntheticProvider()
    chinext = [f"{300001 + i:06d}.SZ" for i in range(40)]
    df = p.fetch(chinext, dt.date(2016, 1, 1), dt.date(2023, 12, 31))
    facts = synthetic_facts(p.seed, chinext)
    listed = dict(zip(facts.listings["symbol"], facts.listings["list_date"], strict=True))
    df = df[df["trade_date"] != df["symbol"].map(listed)]  # listing days: +44 % cap before the reform
    r = (df["close"] / df["pre_close"] - 1).abs()
    reform = df["trade_date"] >= dt.date(2020, 8, 24)
    assert r[~reform].max() <= 0.10 + 0.01 / df["pre_close"].min()
    assert (r[reform] > 0.11).sum() > 5  # moves beyond the old limit happen after the reform

    main = [f"{600000 + i:06d}.SH" for i in range(60)]
    facts = synthetic_facts(p.seed, main)
    assert 3 <= len(facts.st_periods) <= 25 and set(facts.st_periods["source"]) == {"synthetic"}
    st = facts.st_periods.iloc[0]
    bars = p.fetch([st["symbol"]], st["start_date"], min(st["end_date"], dt.date(2026, 7, 3)))
    move = (bars["close"] / bars["pre_close"] - 1).abs()
    assert move.max() <= 0.05 + 0.01 / bars["pre_close"].min()  # main-board ST before 2026-07-06

    inside = facts.listings[facts.listings["list_date"] > dt.date(2001, 1, 1)]
    assert len(inside) >= 3  # some listings fall inside the history
    for sym, day in zip(inside["symbol"], inside["list_date"], strict=True):
        got = p.fetch([sym], day - dt.timedelta(days=30), day + dt.timedelta(days=10))
        assert got["trade_date"].min() == day  # no bar before listing, a bar on its first day


def test_a_bar_does_not_depend_on_how_far_the_calendar_reaches(monkeypatch):
    import numpy as np

    from kline import calendar
    from kline.providers import synthetic

    span = (dt.date(2024, 1, 2), dt.date(2024, 3, 29))
    full = SyntheticProvider().fetch(["000001.SH", "600519.SH"], *span)
    market = calendar.market_sessions()
    monkeypatch.setattr(synthetic, "market_sessions", lambda code="XSHG": market[market <= np.datetime64("2024-06-28")])
    synthetic._path.cache_clear()
    try:
        cut = SyntheticProvider().fetch(["000001.SH", "600519.SH"], *span)
    finally:
        synthetic._path.cache_clear()
    cols = ["symbol", "trade_date", "open", "high", "low", "close", "pre_close", "volume", "amount"]
    pd.testing.assert_frame_equal(full[cols], cut[cols])
