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


# --- inputs beyond the close -------------------------------------------------------------

STOCKS = [f"{600000 + i:06d}.SH" for i in range(20)] + [f"{300001 + i:06d}.SZ" for i in range(14)]
WIDE = ("log_return", "return_5", "hl_range", "open_gap", "volume_z_20", "amount_z_10", "turnover",
        "market_return", "rank_log_return", "rank_volume_z_20", "rank_return_5")


def wide_bars(end=dt.date(2023, 6, 30)) -> pd.DataFrame:
    bars = synthetic_bars(["000001.SH", *STOCKS], end=end)
    rng = np.random.default_rng(3)
    return bars.assign(turnover=rng.uniform(0.1, 5.0, len(bars)))  # a vendor's turnover rate, %


def test_new_features_follow_their_definitions():
    bars = wide_bars()
    panel = build_features(bars, FeatureConfig(features=WIDE))
    one = panel[panel["symbol"] == "600004.SH"].reset_index(drop=True)
    raw = bars[bars["symbol"] == "600004.SH"].sort_values("trade_date").reset_index(drop=True)
    lc = np.log(one["close"])
    np.testing.assert_allclose(one["return_5"].iloc[5:], (lc - lc.shift(5)).iloc[5:])
    assert one["return_5"].iloc[:5].isna().all()
    lv = np.log1p(raw["volume"])
    prior = lv.shift(1).rolling(20)
    z = (lv - prior.mean()) / prior.std(ddof=1)
    np.testing.assert_allclose(one["volume_z_20"].iloc[20:], z.iloc[20:], rtol=1e-9)
    assert one["volume_z_20"].iloc[:20].isna().all()
    la = np.log1p(raw["amount"])
    za = (la - la.shift(1).rolling(10).mean()) / la.shift(1).rolling(10).std(ddof=1)
    np.testing.assert_allclose(one["amount_z_10"].iloc[10:], za.iloc[10:], rtol=1e-9)
    np.testing.assert_allclose(one["turnover"], raw["turnover"])
    # market_return: the SSE Composite's log return on the same session, for every symbol
    idx = panel[panel["symbol"] == "000001.SH"].set_index("trade_date")["log_return"]
    np.testing.assert_allclose(one["market_return"].iloc[1:], idx.reindex(one["trade_date"]).iloc[1:])
    # ranks: per session over the stocks, (rank - 0.5) / n, mean 0.5; the index row is neutral
    day = panel[panel["trade_date"] == dt.date(2023, 3, 1)]
    stocks = day[day["symbol"] != "000001.SH"]
    expect = (stocks["log_return"].rank() - 0.5) / stocks["log_return"].notna().sum()
    np.testing.assert_allclose(stocks["rank_log_return"], expect)
    assert (day.loc[day["symbol"] == "000001.SH", "rank_log_return"] == 0.5).all()
    assert panel.groupby("trade_date")["rank_log_return"].mean().dropna().between(0.49, 0.51).all()


def test_market_return_from_separate_index_bars_matches_the_in_universe_index():
    bars = wide_bars()
    cfg = FeatureConfig(features=("log_return", "market_return"))
    inside = build_features(bars, cfg)
    index = bars[bars["symbol"] == "000001.SH"]
    outside = build_features(bars[bars["symbol"] != "000001.SH"], cfg, market_bars=index)
    merged = outside.merge(inside, on=["symbol", "trade_date"], suffixes=("", "_in"))
    assert len(merged) == len(outside) > 0
    np.testing.assert_array_equal(merged["market_return"], merged["market_return_in"])
    with pytest.raises(FeatureError, match=r"000001\.SH"):
        build_features(bars[bars["symbol"] != "000001.SH"], cfg)
    with pytest.raises(FeatureError, match=r"000300\.SH"):
        build_features(bars, cfg, market_symbol="000300.SH")


def test_turnover_without_the_column_and_ranks_on_a_small_universe_are_clear_errors():
    bars = synthetic_bars()
    with pytest.raises(FeatureError, match="turnover"):
        build_features(bars, FeatureConfig(features=("log_return", "turnover")))
    with pytest.raises(FeatureError, match="at least 30 stocks"):
        build_features(bars, FeatureConfig(features=("rank_log_return",)))
    for bad in ("return_0", "rank_rank_log_return", "volume_z_x", "rank_bogus"):
        with pytest.raises(FeatureError, match="unknown feature"):
            build_features(bars, FeatureConfig(features=(bad,)))


def test_every_feature_is_point_in_time():
    """Perturbing bars after date d (prices, volumes, amounts, turnover, the index, rows
    dropped) changes no feature of any row dated <= d."""
    cut = dt.date(2023, 2, 28)
    cfg = FeatureConfig(features=WIDE + ("volatility_20", "momentum_5", "log_volume_change", "log_close"))
    bars = wide_bars()
    before = build_features(bars, cfg)
    changed = bars.copy()
    after = changed["trade_date"] > cut
    rng = np.random.default_rng(1)
    for c in ("open", "high", "low", "close", "pre_close", "volume", "amount", "turnover"):
        changed.loc[after, c] = changed.loc[after, c] * rng.uniform(0.5, 2.0, after.sum())
    changed = changed[~(after & changed["symbol"].isin(["600003.SH", "300005.SZ"]))]
    ch = build_features(changed, cfg)
    cols = list(WIDE) + ["volatility_20", "momentum_5", "log_volume_change", "log_close"]
    a = before[before["trade_date"] <= cut].reset_index(drop=True)
    b = ch[ch["trade_date"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["symbol", "trade_date", *cols]], b[["symbol", "trade_date", *cols]])
    # the change is real: later rows differ in every feature that reads today's bar
    a2 = before[before["trade_date"] > cut].reset_index(drop=True)
    b2 = ch[ch["trade_date"] > cut].merge(a2[["symbol", "trade_date"]], on=["symbol", "trade_date"])
    a2 = a2.merge(b2[["symbol", "trade_date"]], on=["symbol", "trade_date"])
    for c in cols:
        assert not np.allclose(a2[c].to_numpy(), b2[c].to_numpy(), equal_nan=True), c
