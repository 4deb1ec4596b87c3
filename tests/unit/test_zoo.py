import datetime as dt

import pytest

from kline.baselines import RidgeForecaster, RollingMeanForecaster
from kline.config import FeatureConfig, Settings
from kline.features import build_features
from kline.forecasters import FORECASTERS
from kline.providers.synthetic import SyntheticProvider
from kline.training import LSTMForecaster
from kline.zoo import MODELS, from_state, make_forecaster

FEAT = FeatureConfig(features=("log_return", "hl_range"), window=5)


def test_the_zoo_holds_every_named_forecaster_under_its_own_name():
    assert tuple(MODELS) == FORECASTERS
    assert all(cls.name == name for name, cls in MODELS.items())


def test_unknown_forecaster_is_named_with_the_choices():
    with pytest.raises(ValueError, match="'arima': choose from lstm, persistence, rolling_mean, ridge"):
        make_forecaster("arima", Settings())
    with pytest.raises(ValueError, match="arima"):
        from_state("arima", {}, FEAT)


def test_make_forecaster_configures_each_model_from_the_settings():
    s = Settings(features=FEAT).replace(train={"rolling_k": 7, "ridge_alpha": 3.0, "hidden": 5, "preset": "default"})
    rolling, ridge, lstm = (make_forecaster(n, s) for n in ("rolling_mean", "ridge", "lstm"))
    assert isinstance(rolling, RollingMeanForecaster) and rolling.k == 7
    assert isinstance(ridge, RidgeForecaster) and ridge.alpha == 3.0 and ridge.features == FEAT
    assert isinstance(lstm, LSTMForecaster) and lstm.train.hidden == 5 and lstm.features == FEAT


@pytest.mark.parametrize("name", ["persistence", "rolling_mean", "ridge", "lstm"])
def test_from_state_restores_a_fit_that_predicts_the_same(name):
    s = Settings(features=FEAT).replace(train={"epochs": 2, "hidden": 4, "batch_size": 64})
    bars = SyntheticProvider(seed=5).fetch(["000001.SH"], dt.date(2022, 6, 1), dt.date(2023, 6, 30))
    panel = build_features(bars, FEAT)
    f = make_forecaster(name, s)
    f.fit(panel, dt.date(2023, 3, 31))
    g = from_state(name, f.get_state(), FEAT, getattr(f, "weights", None))
    assert g.predict(panel).equals(f.predict(panel))


def test_restoring_the_lstm_without_weights_is_refused():
    with pytest.raises(ValueError, match="weights"):
        from_state("lstm", {}, FEAT)
