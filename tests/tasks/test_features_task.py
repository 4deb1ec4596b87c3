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
