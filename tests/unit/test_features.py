import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kline.config import FeatureConfig
from kline.features import (
    FeatureError,
    build_features,
    feature_fingerprint,
    fit_scaler,
    make_windows,
    prepare,
    train_mask,
)
from kline.providers.synthetic import SyntheticProvider

SYMBOLS = ["000001.SH", "600519.SH", "300750.SZ"]
TRAIN_END = dt.date(2023, 3, 31)


def synthetic_bars(symbols=SYMBOLS, start=dt.date(2022, 1, 1), end=dt.date(2023, 6, 30)) -> pd.DataFrame:
    return SyntheticProvider(seed=11).fetch(symbols, start, end)


def test_panel_columns_order_and_target_semantics():
    bars = synthetic_bars()
    cfg = FeatureConfig()
    panel = build_features(bars, cfg)
    assert list(panel.columns) == ["symbol", "trade_date", "close", *cfg.features, "target", "target_date"]
    assert len(panel) == len(bars)
    one = panel[panel["symbol"] == "600519.SH"].reset_index(drop=True)
    close = one["close"].to_numpy()
    np.testing.assert_allclose(one["target"].to_numpy()[:-1], np.log(close[1:] / close[:-1]))
    np.testing.assert_allclose(one["log_return"].to_numpy()[1:], np.log(close[1:] / close[:-1]))
    assert np.isnan(one["log_return"].iloc[0]) and np.isnan(one["target"].iloc[-1])
    assert list(one["target_date"].iloc[:-1]) == list(one["trade_date"].iloc[1:])
    # the last row's target date is the next exchange session (2023-06-30 is a Friday)
    assert one["target_date"].iloc[-1] == dt.date(2023, 7, 3)


def test_volatility_is_trailing_std_within_symbol():
    panel = build_features(synthetic_bars(), FeatureConfig(features=("log_return", "volatility_5")))
    one = panel[panel["symbol"] == "300750.SZ"].reset_index(drop=True)
    expected = one["log_return"].rolling(5).std(ddof=1)
    np.testing.assert_allclose(one["volatility_5"].to_numpy()[5:], expected.to_numpy()[5:])
    assert one["volatility_5"].iloc[:5].isna().all()
    # a symbol's first rows never borrow the previous symbol's returns
    first_rows = panel.groupby("symbol").head(5)
    assert first_rows["volatility_5"].isna().all()


def test_adj_factor_adjusts_prices_without_rescaling_the_past():
    bars = synthetic_bars(["600519.SH"])
    dates = bars["trade_date"].to_numpy()
    factor = pd.DataFrame({"symbol": "600519.SH", "trade_date": dates,
                           "adj_factor": np.where(dates >= dt.date(2023, 1, 3), 2.0, 1.0)})
    raw = build_features(bars, FeatureConfig())
    adj = build_features(bars, FeatureConfig(), adj_factor=factor)
    before = adj["trade_date"] < dt.date(2023, 1, 3)
    np.testing.assert_allclose(adj.loc[before, "close"], raw.loc[before, "close"])
    np.testing.assert_allclose(adj.loc[~before, "close"], 2.0 * raw.loc[~before, "close"])
    jump = adj.index[adj["trade_date"] == dt.date(2023, 1, 3)][0]
    assert adj.loc[jump, "log_return"] == pytest.approx(raw.loc[jump, "log_return"] + np.log(2.0))


def test_unknown_feature_is_named():
    with pytest.raises(FeatureError, match="bogus"):
        build_features(synthetic_bars(), FeatureConfig(features=("bogus",)))


def test_windows_shape_and_content_come_from_consecutive_rows_of_one_symbol():
    cfg = FeatureConfig(window=7)
    panel = build_features(synthetic_bars(), cfg)
    prep = prepare(panel, cfg, TRAIN_END)
    w = prep.windows
    assert w.x.shape == (len(w), 7, len(cfg.features)) and w.x.dtype == np.float32
    scaled = prep.scaler.transform(panel["symbol"].to_numpy(), panel[list(cfg.features)].to_numpy())
    for i in (0, len(w) // 2, len(w) - 1):
        row = panel.index[(panel["symbol"] == w.symbol[i]) & (panel["trade_date"] == pd.Timestamp(w.trade_date[i]).date())][0]
        np.testing.assert_allclose(w.x[i], scaled[row - 6 : row + 1], rtol=1e-6)
        assert (panel["symbol"].iloc[row - 6 : row + 1] == w.symbol[i]).all()
    # one window per row that has 7 complete rows behind it (volatility_20 warms up first)
    assert len(w) == sum(len(g) - 20 - 6 for _, g in panel.groupby("symbol"))
    assert w.x.flags["C_CONTIGUOUS"]


def test_scaler_is_fit_per_symbol_on_training_rows_only():
    cfg = FeatureConfig()
    panel = build_features(synthetic_bars(), cfg)
    prep = prepare(panel, cfg, TRAIN_END)
    m = train_mask(panel, TRAIN_END)
    one = panel[m & (panel["symbol"] == "000001.SH")]
    assert prep.scaler.loc["000001.SH"][0] == pytest.approx(one["log_return"].mean())
    assert prep.scaler.scale["000001.SH"][0] == pytest.approx(one["log_return"].std(ddof=0))
    assert set(prep.scaler.loc) == set(SYMBOLS)
    mm = fit_scaler(np.array(["a", "a", "a"]), np.array([1.0, 3.0, 100.0]), ["v"], "minmax",
                    np.array([True, True, False]))
    assert (mm.loc["a"], mm.scale["a"]) == ([1.0], [2.0])


def test_training_windows_and_scaler_ignore_everything_after_train_end():
    cfg = FeatureConfig()
    bars = synthetic_bars()
    factor = pd.DataFrame({"symbol": bars["symbol"], "trade_date": bars["trade_date"], "adj_factor": 1.0})
    before = prepare(build_features(bars, cfg, adj_factor=factor), cfg, TRAIN_END)

    changed = bars.copy()
    after = changed["trade_date"] > TRAIN_END
    rng = np.random.default_rng(0)
    for c in ("open", "high", "low", "close", "pre_close", "volume", "amount"):
        changed.loc[after, c] = changed.loc[after, c] * rng.uniform(0.5, 2.0, after.sum())
    changed_factor = factor.copy()
    changed_factor.loc[changed_factor["trade_date"] > TRAIN_END, "adj_factor"] = 3.0
    changed = changed[~(after & (changed["symbol"] == "600519.SH") & (changed["trade_date"] < dt.date(2023, 5, 1)))]
    ch = prepare(build_features(changed, cfg, adj_factor=changed_factor), cfg, TRAIN_END)

    assert ch.scaler.to_dict() == before.scaler.to_dict()
    assert ch.target_scaler.to_dict() == before.target_scaler.to_dict()
    a, b = before.train(TRAIN_END), ch.train(TRAIN_END)
    assert len(a) > 0 and len(a) == len(b)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.trade_date, b.trade_date)
    assert (a.target_date <= np.datetime64(TRAIN_END)).all()
    # and the change is real: windows after the boundary differ
    assert not np.array_equal(before.windows.x[-1], ch.windows.x[-1])


def test_seed_target_is_next_close_minmax_scaled_on_train_span():
    cfg = FeatureConfig(features=("close",), target="seed", scaler="minmax", window=10)
    panel = build_features(synthetic_bars(["000001.SH"]), cfg)
    prep = prepare(panel, cfg, TRAIN_END)
    tr = prep.train(TRAIN_END)
    assert tr.x.shape[1:] == (10, 1)
    assert tr.y.min() == pytest.approx(0.0, abs=1e-6) and tr.y.max() == pytest.approx(1.0, abs=1e-6)
    # window i's label is the close of the session after its last row, scaled
    nxt = panel["close"].to_numpy()[10:]
    lo, sc = prep.target_scaler.loc["000001.SH"][0], prep.target_scaler.scale["000001.SH"][0]
    np.testing.assert_allclose(tr.y, ((nxt - lo) / sc)[: len(tr)], rtol=1e-5, atol=1e-9)


def test_make_windows_on_short_history_is_empty():
    cfg = FeatureConfig(window=30)
    panel = build_features(synthetic_bars(end=dt.date(2022, 1, 20)), cfg)
    prep = prepare(panel, cfg, dt.date(2022, 1, 20))
    assert prep.windows.x.shape == (0, 30, len(cfg.features))
    w = make_windows(panel.iloc[:3], list(cfg.features), 30, prep.scaler, prep.target_scaler)
    assert len(w) == 0


def test_feature_fingerprint_tracks_config():
    assert feature_fingerprint(FeatureConfig()) == feature_fingerprint(FeatureConfig())
    assert feature_fingerprint(FeatureConfig()) != feature_fingerprint(FeatureConfig(window=10))
