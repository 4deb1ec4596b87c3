import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

from kline.config import FeatureConfig, Settings, TrainConfig
from kline.features import Windows, build_features, make_windows
from kline.model import LSTMConfig, LSTMRegressor
from kline.providers.synthetic import SyntheticProvider
from kline.training import LSTMForecaster, fit_lstm, resolve_device, split_valid

TRAIN_END = dt.date(2023, 3, 31)
FAST = TrainConfig(hidden=6, epochs=4, batch_size=32, patience=2, valid_fraction=0.2)


def toy_windows(n=200, window=5, seed=0) -> Windows:
    """A learnable task: y = mean of the window's first feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, window, 2)).astype("float32")
    y = x[:, :, 0].mean(axis=1).astype("float32")
    dates = np.datetime64("2020-01-01") + np.arange(n).astype("timedelta64[D]")
    return Windows(x, y, np.array(["A"] * n, dtype=object), dates, dates + 1, np.ones(n))


def small_panel(cfg: FeatureConfig) -> pd.DataFrame:
    bars = SyntheticProvider(seed=9).fetch(["000001.SH", "600519.SH"], dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    return build_features(bars, cfg)


def test_fit_learns_reduces_loss_and_keeps_history():
    cfg = dataclasses.replace(FAST, epochs=30, lr=1e-2, patience=0)
    r = fit_lstm(toy_windows(), cfg)
    assert r.epochs_run == 30 and len(r.history) == 30
    assert set(r.history[0]) == {"epoch", "train_loss", "valid_loss", "lr"}
    assert r.history[-1]["train_loss"] < 0.5 * r.history[0]["train_loss"]
    assert r.n_train == 160 and r.n_valid == 40
    # cosine schedule anneals the learning rate
    assert r.history[-1]["lr"] < r.history[0]["lr"]


def test_fit_is_deterministic_for_a_seed_on_cpu():
    cfg = dataclasses.replace(FAST, device="cpu")
    a, b = fit_lstm(toy_windows(), cfg), fit_lstm(toy_windows(), cfg)
    for k in a.state:
        assert torch.equal(a.state[k], b.state[k])
    c = fit_lstm(toy_windows(), dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert not all(torch.equal(a.state[k], c.state[k]) for k in a.state)


def test_early_stopping_restores_the_best_epoch():
    w = toy_windows()
    w.y[160:] = 100.0  # validation labels the model cannot fit: valid loss never improves after epoch 1
    cfg = dataclasses.replace(FAST, epochs=50, patience=3, lr=1e-2)
    r = fit_lstm(w, cfg)
    assert r.stopped_early and r.epochs_run < 50
    best = min(h["valid_loss"] for h in r.history)
    assert r.history[r.best_epoch - 1]["valid_loss"] == best
    assert r.epochs_run == r.best_epoch + 3


def test_validation_split_takes_the_end_of_the_training_span():
    w = toy_windows(100)
    tr, va = split_valid(w, 0.25)
    assert len(va) == 25 and tr.target_date.max() < va.target_date.min()
    tr, va = split_valid(w, 0.0)
    assert len(tr) == 100 and len(va) == 0


def test_warm_start_begins_from_the_given_weights():
    cfg = dataclasses.replace(FAST, epochs=1, lr=1e-9, lr_schedule="none")
    first = fit_lstm(toy_windows(), dataclasses.replace(FAST, epochs=20, lr=1e-2))
    warm = fit_lstm(toy_windows(), cfg, init_state=first.state)
    cold = fit_lstm(toy_windows(), cfg)
    assert warm.history[0]["train_loss"] < cold.history[0]["train_loss"]
    for k in first.state:
        torch.testing.assert_close(warm.state[k], first.state[k], atol=1e-6, rtol=0)


def test_device_auto_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("scope", ["global", "per_symbol"])
def test_lstm_forecaster_round_trips_state_and_predicts_log_returns(scope):
    s = Settings().replace(train={**dataclasses.asdict(FAST), "scope": scope})
    panel = small_panel(s.features)
    f = LSTMForecaster(s.features, s.train)
    info = f.fit(panel, TRAIN_END)
    keys = ["global"] if scope == "global" else ["000001.SH", "600519.SH"]
    assert sorted(info["history"]) == keys
    p = f.predict(panel)
    assert (p["train_end"] == TRAIN_END).all() and p["pred_return"].abs().max() < 0.2
    g = LSTMForecaster.from_state(f.get_state(), s.features, f.weights)
    pd.testing.assert_frame_equal(p, g.predict(panel))


def test_seed_forecaster_converts_predicted_close_to_log_return():
    s = Settings().replace(train={"preset": "seed", "epochs": 3})
    panel = small_panel(FeatureConfig())
    f = LSTMForecaster(s.features, s.train)
    assert f.train.epochs == 200  # the preset wins
    f.train = dataclasses.replace(f.train, epochs=3)
    f.fit(panel, TRAIN_END)
    p = f.predict(panel, [dt.date(2023, 6, 30)])
    state = f.get_state()
    assert state["features"]["target"] == "seed"
    one = p[p["symbol"] == "600519.SH"]
    close = panel.loc[(panel["symbol"] == "600519.SH") & (panel["trade_date"] == dt.date(2023, 6, 30)), "close"].item()
    # reproduce by hand: window -> model output in min-max units -> next close -> log return
    w = make_windows(panel, ["close"], 10, f.scaler, f.target_scaler, "seed")
    k = np.flatnonzero((w.symbol == "600519.SH") & (w.trade_date == np.datetime64("2023-06-30")))
    model = LSTMRegressor(LSTMConfig(n_features=1, hidden=8, layers=2))
    model.load_state_dict(f.weights["600519.SH"])
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(w.x[k])).double().numpy()
    next_close = f.target_scaler.inverse(np.array(["600519.SH"]), out.reshape(-1, 1))[0, 0]
    assert one["pred_return"].item() == pytest.approx(np.log(next_close / close), rel=1e-6)
