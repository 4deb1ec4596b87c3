import datetime as dt

import numpy as np
import pandas as pd

from kline.config import Settings
from kline.features import build_features, load_panel
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from tasks._common import stage_settings
from tasks.features import build_features_task

SYMBOLS = ["000001.SH", "600519.SH"]


def seed_curated(lake: Lake, end=dt.date(2023, 12, 29)) -> pd.DataFrame:
    bars = SyntheticProvider(seed=4).fetch(SYMBOLS, dt.date(2023, 1, 1), end)
    lake.write_curated_bars(bars)
    return bars


def test_features_task_writes_the_panel_and_returns_a_reference(lake_root):
    lake = Lake(lake_root)
    bars = seed_curated(lake)
    sub = stage_settings(Settings(), "features")
    ref = build_features_task.fn(lake_root, sub, "2023-12-29", SYMBOLS, "validated-abc")
    assert set(ref) == {"path", "fingerprint", "data_fingerprint", "rows", "symbols", "start", "end"}
    assert ref["path"] == f"{lake.root}/features/{ref['fingerprint']}/panel.parquet"
    panel = load_panel(lake, ref["path"])
    expected = build_features(bars, Settings().features)
    pd.testing.assert_frame_equal(panel, expected, check_dtype=False)
    assert ref["rows"] == len(bars) and ref["symbols"] == SYMBOLS and ref["end"] == "2023-12-29"
    assert isinstance(panel["trade_date"].iloc[0], dt.date)


def test_features_task_is_point_in_time(lake_root):
    lake = Lake(lake_root)
    seed_curated(lake)
    sub = stage_settings(Settings(), "features")
    ref = build_features_task.fn(lake_root, sub, "2023-06-30", SYMBOLS)
    panel = load_panel(lake, ref["path"])
    assert max(panel["trade_date"]) == dt.date(2023, 6, 30)
    # the last row's target is unknown as of run_date, even though later bars exist in the lake
    last = panel.groupby("symbol").tail(1)
    assert np.isnan(last["target"]).all()


def test_features_fingerprint_follows_data_and_config(lake_root):
    lake = Lake(lake_root)
    seed_curated(lake)
    sub = stage_settings(Settings(), "features")
    a = build_features_task.fn(lake_root, sub, "2023-12-29", SYMBOLS)
    assert build_features_task.fn(lake_root, sub, "2023-12-29", SYMBOLS)["fingerprint"] == a["fingerprint"]
    b = build_features_task.fn(lake_root, sub, "2023-12-28", SYMBOLS)
    c = build_features_task.fn(lake_root, stage_settings(Settings().replace(features={"window": 5}), "features"),
                               "2023-12-29", SYMBOLS)
    assert len({a["fingerprint"], b["fingerprint"], c["fingerprint"]}) == 3
    assert a["data_fingerprint"] == c["data_fingerprint"] != b["data_fingerprint"]


def test_batched_features_with_the_market_index_equal_the_panel_built_at_once(lake_root):
    from tasks.features import combine_features_task, feature_batches

    lake = Lake(lake_root)
    symbols = ["000001.SH", "600519.SH", "000001.SZ"]
    lake.write_curated_bars(SyntheticProvider(seed=4).fetch(symbols, dt.date(2023, 1, 1), dt.date(2023, 12, 29)))
    settings = Settings().replace(features={"features": ["log_return", "market_return", "volatility_20"]})
    sub = stage_settings(settings, "features")
    batches = feature_batches(symbols, settings.features, 1)
    # the market index is read by every batch that does not hold it, and kept out of its rows
    assert batches == [(["000001.SH"], []), (["600519.SH"], ["000001.SH"]), (["000001.SZ"], ["000001.SH"])]
    parts = [build_features_task.fn(lake_root, sub, "2023-12-29", b, context_symbols=c) for b, c in batches]
    assert [p["symbols"] for p in parts] == [[s] for s in symbols]
    whole = combine_features_task.fn(lake_root, sub, "2023-12-29", parts)
    at_once = build_features_task.fn(lake_root, sub, "2023-12-29", symbols)
    pd.testing.assert_frame_equal(load_panel(lake, whole["path"]), load_panel(lake, at_once["path"]))
    assert whole["rows"] == at_once["rows"] and whole["symbols"] == at_once["symbols"]
    # a cross-sectional feature needs the whole universe in one batch
    ranked = Settings().replace(features={"features": ["log_return", "rank_log_return"]}).features
    assert feature_batches(symbols, ranked, 1) == [(symbols, [])]
