import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kline.baselines import (
    PersistenceForecaster,
    RidgeForecaster,
    RollingMeanForecaster,
    ridge_fit,
)
from kline.config import FeatureConfig
from kline.features import build_features
from kline.forecasters import PREDICTION_COLUMNS
from kline.providers.synthetic import SyntheticProvider

TRAIN_END = dt.date(2023, 3, 31)


def make_panel(cfg: FeatureConfig | None = None) -> pd.DataFrame:
    bars = SyntheticProvider(seed=5).fetch(["000001.SH", "300750.SZ"], dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    return build_features(bars, cfg or FeatureConfig())


def test_persistence_predicts_zero_for_every_row():
    panel = make_panel()
    f = PersistenceForecaster()
    f.fit(panel, TRAIN_END)
    p = f.predict(panel)
    assert list(p.columns) == PREDICTION_COLUMNS
    assert len(p) == len(panel) and (p["pred_return"] == 0.0).all()
    assert (p["train_end"] == TRAIN_END).all() and (p["model"] == "persistence").all()


def test_rolling_mean_is_mean_of_last_k_returns_up_to_decision_date():
    panel = make_panel()
    f = RollingMeanForecaster(k=3)
    f.fit(panel, TRAIN_END)
    d = dt.date(2023, 5, 10)
    p = f.predict(panel, [d])
    assert len(p) == 2
    one = panel[panel["symbol"] == "300750.SZ"].reset_index(drop=True)
    i = one.index[one["trade_date"] == d][0]
    close = one["close"].to_numpy()
    expected = np.log(close[i] / close[i - 3]) / 3
    got = p.loc[p["symbol"] == "300750.SZ", "pred_return"].item()
    assert got == pytest.approx(expected)
    assert p.loc[p["symbol"] == "300750.SZ", "target_date"].item() == one["target_date"].iloc[i]
    # the first k rows of each symbol have no k returns yet
    assert len(f.predict(panel)) == len(panel) - 2 * 3


def test_ridge_fit_recovers_linear_coefficients():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    coef, intercept = ridge_fit(x, y, alpha=1e-9)
    np.testing.assert_allclose(coef, [1.0, -2.0, 0.5, 0.0], atol=1e-6)
    assert intercept == pytest.approx(3.0)


def test_ridge_forecaster_learns_a_linear_signal_and_ignores_the_future():
    panel = make_panel(FeatureConfig(features=("log_return", "hl_range"), window=5))
    # plant a learnable signal: tomorrow's return = 0.5 * today's hl_range (demeaned)
    panel["target"] = 0.5 * (panel["hl_range"] - panel["hl_range"].mean())
    f = RidgeForecaster(FeatureConfig(features=("log_return", "hl_range"), window=5), alpha=1e-3)
    f.fit(panel, TRAIN_END)
    p = f.predict(panel).merge(panel[["symbol", "trade_date", "target"]])
    test = p[p["trade_date"] > TRAIN_END].dropna()
    assert np.corrcoef(test["pred_return"], test["target"])[0, 1] > 0.99

    future = panel.copy()
    future.loc[future["target_date"] > TRAIN_END, ["log_return", "hl_range", "target"]] = 7.0
    g = RidgeForecaster(f.features, alpha=1e-3)
    g.fit(future, TRAIN_END)
    np.testing.assert_array_equal(f.coef, g.coef)
    assert f.version == g.version


def test_ridge_state_round_trip_reproduces_predictions():
    panel = make_panel()
    f = RidgeForecaster(FeatureConfig(), alpha=10.0)
    f.fit(panel, TRAIN_END)
    g = RidgeForecaster.from_state(f.get_state(), FeatureConfig())
    pd.testing.assert_frame_equal(f.predict(panel), g.predict(panel))


def test_ridge_without_training_windows_raises():
    panel = make_panel()
    with pytest.raises(ValueError, match="no training window"):
        RidgeForecaster(FeatureConfig()).fit(panel, dt.date(2021, 1, 1))
