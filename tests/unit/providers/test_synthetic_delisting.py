"""Delistings inside the history of the synthetic market's many-stock universes."""

import datetime as dt

import numpy as np

from kline.calendar import market_sessions
from kline.instruments import instrument
from kline.providers.synthetic import SyntheticProvider, synthetic_facts, synthetic_universe

DEFAULT = ["000001.SH", "000300.SH", "600519.SH", "000001.SZ", "300750.SZ", "688981.SH"]


def _delisted(seed: int, n: int):
    listings = synthetic_facts(seed, synthetic_universe(n)).listings
    return listings.dropna(subset=["delist_date"])


def test_a_few_percent_delist_and_their_bars_stop_the_session_before():
    p = SyntheticProvider()
    gone = _delisted(p.seed, 1000)
    assert 0.01 * 1000 < len(gone) < 0.06 * 1000
    assert set(gone["source"]) == {"synthetic"}
    assert (gone["delist_date"] > gone["list_date"]).all() and (gone["delist_date"] <= dt.date(2025, 6, 30)).all()
    assert gone.equals(_delisted(p.seed, 1000))  # deterministic
    sessions = market_sessions()
    for sym, delisted in zip(gone["symbol"][:8], gone["delist_date"][:8], strict=True):
        bars = p.fetch([sym], delisted - dt.timedelta(days=120), delisted + dt.timedelta(days=400))
        assert len(bars) > 20 and bars["trade_date"].max() < delisted  # no bar on or after the date
        prev = sessions[np.searchsorted(sessions, np.datetime64(delisted, "D")) - 1]
        assert bars["trade_date"].max() >= prev.astype(dt.date) - dt.timedelta(days=14)  # trades up to it
        assert p.fetch([sym], delisted, dt.date(2026, 12, 31)).empty
        # *ST before delisting: the ST limit holds (main board 5 % before 2026-07-06)
        st = synthetic_facts(p.seed, [sym]).st_periods
        assert len(st) == 1 and st["name"].iloc[0].startswith("*ST") and st["end_date"].iloc[0] < delisted
        if instrument(sym).board == "main":
            inside = bars[bars["trade_date"] >= st["start_date"].iloc[0]]
            move = (inside["close"] / inside["pre_close"] - 1).abs()
            assert move.max() <= 0.05 + 0.01 / inside["pre_close"].min()


def test_the_facts_say_so_and_a_delisting_is_a_property_of_the_stock():
    p = SyntheticProvider()
    gone = _delisted(p.seed, 5000)
    sym, delisted = gone["symbol"].iloc[0], gone["delist_date"].iloc[0]
    facts = p.fetch_instrument_facts([sym, "600519.SH"], dt.date(2020, 1, 1), dt.date(2020, 12, 31))
    assert facts.listing(sym)[1] == delisted and facts.listing("600519.SH")[1] is None
    # the same date whichever universe names the stock, and another seed delists other stocks
    assert synthetic_facts(p.seed, [sym]).listings["delist_date"].iloc[0] == delisted
    assert set(_delisted(p.seed + 1, 5000)["symbol"]) != set(gone["symbol"])


def test_the_default_market_never_delists_and_runs_to_the_end():
    p = SyntheticProvider()
    facts = synthetic_facts(p.seed, DEFAULT)
    assert facts.listings["delist_date"].isna().all()
    assert facts.st_periods.empty  # the named stocks are never ST
    bars = p.fetch(DEFAULT, dt.date(2025, 11, 1), dt.date(2025, 12, 31))
    last = bars.groupby("symbol")["trade_date"].max()
    assert set(last.index) == set(DEFAULT) and (last >= dt.date(2025, 12, 15)).all()
