"""The planted cross-sectional signal and many-stock universes of the synthetic market."""

import datetime as dt
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from kline.instruments import instrument
from kline.providers.synthetic import SyntheticProvider, synthetic_universe

SPAN = (dt.date(2021, 1, 1), dt.date(2023, 12, 31))
COLS = ["symbol", "trade_date", "open", "high", "low", "close", "pre_close", "volume", "amount"]


def test_signal_off_is_the_default_market_bar_for_bar():
    syms = ["000001.SH", *synthetic_universe(20)]
    default = SyntheticProvider(seed=3).fetch(syms, *SPAN)[COLS]
    off = SyntheticProvider(seed=3, signal=0.0).fetch(syms, *SPAN)[COLS]
    pd.testing.assert_frame_equal(default, off)
    on = SyntheticProvider(seed=3, signal=0.2).fetch(syms, *SPAN)[COLS]
    idx = on["symbol"] == "000001.SH"
    pd.testing.assert_frame_equal(on[idx], default[idx])  # indices carry no signal
    assert not np.allclose(on.loc[~idx, "close"], default.loc[~idx, "close"])
    # the same trading days (suspensions and listings do not move)
    pd.testing.assert_frame_equal(on[["symbol", "trade_date"]], default[["symbol", "trade_date"]])
    with pytest.raises(ValueError, match="signal"):
        SyntheticProvider(signal=-1)


def _volume_surprise_ic(bars: pd.DataFrame) -> float:
    """Mean daily Spearman correlation of today's volume surprise with tomorrow's return."""
    b = bars.sort_values(["symbol", "trade_date"]).copy()
    lv = np.log(b["volume"])
    b["surprise"] = lv - lv.groupby(b["symbol"]).transform(lambda s: s.shift(1).rolling(20).mean())
    b["next"] = np.log(b["close"]).groupby(b["symbol"]).shift(-1) - np.log(b["close"])
    b = b.dropna(subset=["surprise", "next"])
    ics = [g["surprise"].corr(g["next"], method="spearman") for _, g in b.groupby("trade_date") if len(g) >= 20]
    return float(np.mean(ics))


def test_planted_signal_strength_is_as_documented():
    syms = synthetic_universe(60)
    planted = _volume_surprise_ic(SyntheticProvider(seed=4, signal=0.1).fetch(syms, *SPAN))
    none = _volume_surprise_ic(SyntheticProvider(seed=4).fetch(syms, *SPAN))
    assert 0.05 < planted < 0.12  # about 0.8 * signal
    assert abs(none) < 0.02


def test_universe_spans_the_boards_and_is_stable():
    for n in (30, 300, 5000):
        u = synthetic_universe(n)
        assert len(u) == len(set(u)) == n
        boards = Counter(instrument(s).board for s in u)
        assert set(boards) == {"main", "chinext", "star", "bse"} or n < 30
        assert all(instrument(s).asset_type == "stock" for s in u)
    assert synthetic_universe(300) == synthetic_universe(300)
    boards = Counter(instrument(s).board for s in synthetic_universe(5000))
    assert boards["main"] > boards["chinext"] > boards["star"] > boards["bse"] > 0
    with pytest.raises(ValueError):
        synthetic_universe(0)
    bars = SyntheticProvider().fetch(synthetic_universe(300), dt.date(2024, 3, 1), dt.date(2024, 3, 8))
    assert bars["symbol"].nunique() > 250  # most are listed and trading
