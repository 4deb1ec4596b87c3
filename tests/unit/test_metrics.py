import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from kline import metrics as m

Y = [0.01, -0.02, 0.03, -0.01]
P = [0.005, -0.01, -0.01, 0.0]


def test_rmse_mae_mase_by_hand():
    # errors 0.005, -0.01, 0.04, -0.01
    assert m.mae(Y, P) == pytest.approx(0.065 / 4)
    assert m.rmse(Y, P) == pytest.approx(math.sqrt(1.825e-3 / 4))
    # random walk predicts 0: its MAE is mean |y| = 0.07 / 4
    assert m.mase(Y, P) == pytest.approx(0.065 / 0.07)


def test_mase_is_against_zero_return_not_lag1_naive():
    y = [0.01, 0.01, 0.01, 0.01]
    # the lag-1 naive on returns would be perfect here (MAE 0); the random walk is not
    assert m.mase(y, [0.0] * 4) == pytest.approx(1.0)
    assert m.mase(y, [0.01] * 4) == pytest.approx(0.0)
    assert m.mase(y, [0.02] * 4) == pytest.approx(1.0)


def test_r2_oos_against_zero_forecast():
    assert m.r2_oos(Y, P) == pytest.approx(1 - 1.825e-3 / 1.5e-3)
    assert m.r2_oos(Y, [0.0] * 4) == pytest.approx(0.0)


def test_directional_accuracy_skips_no_call_and_binomial_pvalue():
    acc, p, n = m.directional_accuracy(Y, P)
    assert (acc, n) == (pytest.approx(2 / 3), 3)  # the zero prediction makes no call
    assert p == pytest.approx(1.0)
    y = [0.01] * 10
    yhat = [0.01] * 9 + [-0.01]
    acc, p, n = m.directional_accuracy(y, yhat)
    assert acc == pytest.approx(0.9) and n == 10
    assert p == pytest.approx(2 * 11 / 1024)  # 2 * P(X >= 9), X ~ Bin(10, 1/2)
    acc, p, n = m.directional_accuracy(y, [0.0] * 10)
    assert n == 0 and math.isnan(acc)


def test_ic_time_series_and_cross_sectional():
    assert m.information_coefficient([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert m.information_coefficient([1, 2, 3], [1, 3, 2], rank=True) == pytest.approx(0.5)
    d1, d2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    dates = [d1] * 3 + [d2] * 3
    y = [1, 2, 3, 1, 2, 3]
    yhat = [10, 20, 30, 1, 3, 2]  # day 1 corr 1, day 2 corr 0.5
    assert m.information_coefficient(y, yhat, dates) == pytest.approx(0.75)
    # pooled over both days it would differ: the per-day mean is what is reported
    assert m.information_coefficient(y, yhat) != pytest.approx(0.75)
    assert math.isnan(m.information_coefficient([1, 2, 3], [0, 0, 0]))


def test_diebold_mariano_by_hand():
    stat, p, n = m.diebold_mariano(Y, P)
    # d = |e| - |y| = -0.005, -0.01, 0.01, 0; mean -0.00125, population var 5.46875e-5
    expected = -0.00125 / math.sqrt(5.46875e-5 / 4) * math.sqrt(3 / 4)
    assert n == 4
    assert stat == pytest.approx(expected)
    from scipy import stats

    assert p == pytest.approx(2 * stats.t.sf(abs(expected), 3))


def test_diebold_mariano_averages_symbols_per_day():
    d1, d2, d3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)
    y = [0.01, 0.01, 0.02, 0.02, -0.01, -0.01]
    yhat = [0.0, 0.02, 0.0, 0.02, 0.0, -0.01]
    _, _, n = m.diebold_mariano(y, yhat, [d1, d1, d2, d2, d3, d3])
    assert n == 3


def test_forecast_metrics_drops_nan_rows():
    out = m.forecast_metrics(Y + [np.nan], P + [0.1])
    assert out["n"] == 4
    assert out["mase"] == pytest.approx(0.065 / 0.07)
    assert out["rw_mae"] == pytest.approx(0.0175)


def test_better_respects_direction_and_nan():
    assert m.better("mase", 0.9, 1.0) and not m.better("mase", 1.0, 0.9)
    assert m.better("directional_accuracy", 0.55, 0.5)
    assert m.better("mase", 0.9, float("nan")) and not m.better("mase", float("nan"), 0.9)


def test_strategy_metrics_by_hand():
    idx = [dt.date(2020, 1, 1), dt.date(2022, 1, 1), dt.date(2024, 1, 1)]  # 1461 days = 4 years
    eq = pd.Series([100.0, 80.0, 146.41], index=idx)
    out = m.strategy_metrics(eq, traded_value=200.0, costs=1.0, round_trips=[5.0, -1.0, 2.0])
    assert out["days"] == 1461
    assert out["total_return"] == pytest.approx(0.4641)
    assert out["cagr"] == pytest.approx(0.10)
    assert out["max_drawdown"] == pytest.approx(-0.2)
    assert out["calmar"] == pytest.approx(0.5)
    r = np.array([-0.2, 146.41 / 80 - 1])
    per_year = 2 / 4
    assert out["volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(per_year))
    assert out["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(per_year))
    assert out["turnover"] == pytest.approx(200.0 / eq.mean() / 4)
    assert out["hit_rate"] == pytest.approx(2 / 3)
    assert out["costs_pct"] == pytest.approx(0.01)


def test_drawdown_series():
    dd = m.drawdown(pd.Series([1.0, 2.0, 1.5, 3.0]))
    assert dd.tolist() == pytest.approx([0.0, 0.0, -0.25, 0.0])
