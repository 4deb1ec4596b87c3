import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kline.calendar import sessions_in_range
from kline.config import BacktestConfig, FeatureConfig
from kline.crosssection import (
    CrossSectionError,
    daily_ic,
    evaluate_cross_section,
    ic_summary,
    return_metrics,
    topk_dropout,
)
from kline.features import build_features
from kline.instruments import instrument
from kline.providers.synthetic import SyntheticProvider, synthetic_universe
from kline.simulation import Costs

N = 40
STOCKS = [f"{600000 + i:06d}.SH" for i in range(N)]
DAYS = sessions_in_range(dt.date(2024, 3, 1), dt.date(2024, 4, 30))


def toy(seed=0):
    """Scores and realised returns for 40 stocks (plus an index) over two months."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in DAYS:
        for s in [*STOCKS, "000001.SH"]:
            rows.append((s, d, rng.normal(), rng.normal()))
    return pd.DataFrame(rows, columns=["symbol", "trade_date", "pred_return", "realised"])


def test_daily_ic_and_summary_match_their_definitions():
    p = toy()
    daily = daily_ic(p)
    assert len(daily) == len(DAYS) and (daily["stocks"] == N).all()  # the index is left out
    day = p[(p["trade_date"] == DAYS[3]) & (p["symbol"] != "000001.SH")]
    assert daily["ic"].iloc[3] == pytest.approx(np.corrcoef(day["pred_return"], day["realised"])[0, 1])
    assert daily["rank_ic"].iloc[3] == pytest.approx(stats.spearmanr(day["pred_return"], day["realised"]).statistic)
    s = ic_summary(daily)
    v = daily["rank_ic"].to_numpy()
    assert s["rank_ic_mean"] == pytest.approx(v.mean())
    assert s["rank_ic_ir"] == pytest.approx(v.mean() / v.std(ddof=1))
    assert s["rank_ic_t"] == pytest.approx(v.mean() / v.std(ddof=1) * math.sqrt(len(v)))
    assert s["ic_days"] == len(DAYS)
    # a perfect forecast has IC 1 every day; days with too few stocks are left out
    perfect = p.assign(pred_return=p["realised"] * 2 + 1)
    assert ic_summary(daily_ic(perfect))["rank_ic_mean"] == pytest.approx(1.0)
    thin = p[~((p["trade_date"] == DAYS[0]) & (p["symbol"].isin(STOCKS[5:])))]
    assert DAYS[0] not in set(daily_ic(thin)["trade_date"])


def test_small_universe_is_refused():
    p = toy()
    with pytest.raises(CrossSectionError, match="at least 30 stocks"):
        daily_ic(p[p["symbol"].isin(STOCKS[:29] + ["000001.SH"])])
    with pytest.raises(CrossSectionError, match="realised"):
        daily_ic(p.drop(columns="realised"))


def test_return_metrics_follow_qlib_sum_mode():
    r = pd.Series([0.01, -0.02, 0.03, 0.0, -0.01])
    m = return_metrics(r)
    assert m["annualized_return"] == pytest.approx(r.mean() * 238)
    assert m["information_ratio"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(238))
    assert m["max_drawdown"] == pytest.approx(-0.02)  # cumsum 0.01, -0.01, ...: peak 0.01 -> -0.01
    assert m["t"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(5))


def flat_bars(days, stocks, ret=None):
    """Raw bars at 10 CNY x cumulative return; ``ret[(symbol, day)]`` sets a session's move."""
    ret = ret or {}
    rows = []
    for s in stocks:
        pre = 10.0
        for d in days:
            c = round(pre * (1 + ret.get((s, d), 0.0)), 2)
            rows.append((s, d, pre, c))
            pre = c
    return pd.DataFrame(rows, columns=["symbol", "trade_date", "pre_close", "close"])


def test_topk_dropout_holds_k_and_replaces_at_most_n_drop():
    days = DAYS[:6]
    rng = np.random.default_rng(5)
    scores = pd.DataFrame([(s, d, rng.normal()) for d in days for s in STOCKS],
                          columns=["symbol", "trade_date", "pred_return"])
    bars = flat_bars(days, STOCKS)
    res = topk_dropout(scores, bars, k=5, n_drop=2, capital=1e6)
    held = res.positions.groupby("trade_date")["symbol"].apply(set)
    first = scores[scores["trade_date"] == days[0]].nlargest(5, "pred_return")["symbol"]
    assert held.iloc[0] == set(first)
    for a, b in zip(held.iloc[:-1], held.iloc[1:], strict=True):
        assert len(b) == 5 and len(a - b) <= 2
    # flat prices: the only losses are the fees, and they are the simulation's own
    cost = Costs.for_instrument(BacktestConfig(), instrument(STOCKS[0]))
    first_fees = sum(sum(cost.fees(v, "buy")) for v in res.positions[res.positions["trade_date"] == days[0]]["value"])
    assert res.daily["costs"].iloc[0] == pytest.approx(first_fees)
    assert res.daily["portfolio_gross"].abs().max() == pytest.approx(0.0, abs=1e-12)
    assert (res.daily["excess"] <= 1e-12).all() and res.daily["costs"].sum() > 0
    np.testing.assert_allclose(res.daily["benchmark"], 0.0, atol=1e-12)


def test_limit_up_blocks_a_buy_and_suspension_blocks_a_sale():
    days = DAYS[:4]
    best, second = STOCKS[0], STOCKS[1]
    scores = pd.DataFrame([(s, d, float(N - i)) for d in days for i, s in enumerate(STOCKS)],
                          columns=["symbol", "trade_date", "pred_return"])
    # the best stock closes at limit-up on day 0: not bought then, bought on day 1
    bars = flat_bars(days, STOCKS, {(best, days[0]): 0.10})
    res = topk_dropout(scores, bars, k=3, n_drop=1, capital=1e6)
    held = res.positions.groupby("trade_date")["symbol"].apply(set)
    assert best not in held.iloc[0] and best in held.iloc[1]
    # a held stock suspended on the day it should be sold is kept
    scores2 = scores.copy()
    late = scores2["trade_date"] >= days[1]
    scores2.loc[late & (scores2["symbol"] == second), "pred_return"] = -100.0
    bars2 = flat_bars(days, STOCKS)
    bars2 = bars2[~((bars2["symbol"] == second) & (bars2["trade_date"] == days[1]))]
    res2 = topk_dropout(scores2, bars2, k=3, n_drop=1, capital=1e6)
    held2 = res2.positions.groupby("trade_date")["symbol"].apply(set)
    assert second in held2.iloc[0] and second in held2.iloc[1] and second not in held2.iloc[2]


def test_portfolio_return_is_the_holdings_next_session_move():
    days = DAYS[:3]
    scores = pd.DataFrame([(s, d, float(-i)) for d in days for i, s in enumerate(STOCKS)],
                          columns=["symbol", "trade_date", "pred_return"])
    bars = flat_bars(days, STOCKS, {(STOCKS[0], days[1]): 0.05, (STOCKS[39], days[1]): -0.04})
    res = topk_dropout(scores, bars, k=2, n_drop=0, cfg=BacktestConfig(commission=0, min_commission=0,
                                                                         stamp_duty=0, transfer_fee=0))
    assert res.daily["portfolio"].iloc[1] == pytest.approx(0.05 / 2)
    assert res.daily["benchmark"].iloc[1] == pytest.approx((0.05 - 0.04) / N)


# --- planted signal vs the default market ---------------------------------------------------

def predictions_from_volume(signal: float, n: int = 100):
    """The planted feature as the score (``volume_z_20``), with realised next-session returns."""
    syms = synthetic_universe(n)
    bars = SyntheticProvider(seed=21, signal=signal).fetch(syms, dt.date(2022, 1, 1), dt.date(2023, 12, 31))
    panel = build_features(bars, FeatureConfig(features=("volume_z_20",)))
    p = panel.rename(columns={"volume_z_20": "pred_return", "target": "realised"})
    return p[p["trade_date"] >= dt.date(2022, 3, 1)], bars


def test_a_planted_signal_is_found_and_the_default_market_shows_no_skill():
    """100 stocks, 22 months, signal 0.1 (rank IC about 0.08 through volume_z_20)."""
    p, bars = predictions_from_volume(0.1)
    m = evaluate_cross_section(p, bars, k=10, n_drop=5)
    assert m["rank_ic_mean"] > 0.04 and m["rank_ic_t"] > 3 and m["ic_t"] > 3
    assert m["excess_return_without_cost.t"] > 3
    assert m["excess_return_with_cost.annualized_return"] > 0
    assert m["portfolio.annualized_return"] > m["benchmark.annualized_return"]

    p0, bars0 = predictions_from_volume(0.0)
    m0 = evaluate_cross_section(p0, bars0, k=10, n_drop=5)
    assert abs(m0["rank_ic_t"]) < 3 and abs(m0["ic_t"]) < 3
    assert m0["excess_return_without_cost.t"] < 2 and m0["excess_return_with_cost.t"] < 2
