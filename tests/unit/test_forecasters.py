import datetime as dt
import subprocess
import sys

import numpy as np
import pytest

from kline.config import FeatureConfig, Settings, TrainConfig
from kline.features import build_features
from kline.forecasters import (
    BASELINES,
    PREDICTION_COLUMNS,
    Forecaster,
    held_out_count,
    held_out_dates,
)
from kline.providers.synthetic import SyntheticProvider
from kline.zoo import make_forecaster

TRAIN_END = dt.date(2023, 3, 31)


def small_settings() -> Settings:
    return Settings().replace(train={"epochs": 2, "hidden": 4, "batch_size": 64})


@pytest.mark.parametrize("name", ["lstm", *BASELINES])
def test_every_forecaster_honours_the_contract(name):
    s = small_settings()
    bars = SyntheticProvider(seed=3).fetch(["000001.SH", "600519.SH"], dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    panel = build_features(bars, s.features)
    f = make_forecaster(name, s)
    assert isinstance(f, Forecaster) and f.name == name
    summary = f.fit(panel, TRAIN_END)
    assert summary["rows"] > 0
    days = [dt.date(2023, 4, 3), dt.date(2023, 6, 30)]
    p = f.predict(panel, days)
    assert list(p.columns) == PREDICTION_COLUMNS
    assert sorted(set(p["trade_date"])) == days and len(p) == 4
    assert (p["model"] == name).all() and (p["train_end"] == TRAIN_END).all()
    assert p["pred_return"].abs().max() < 0.5  # a daily log return, not a price
    assert p.loc[p["trade_date"] == dt.date(2023, 6, 30), "target_date"].eq(dt.date(2023, 7, 3)).all()


def test_held_out_dates_keep_half_for_training_and_include_tomorrow():
    panel = build_features(SyntheticProvider(seed=11).fetch(["000001.SH", "600519.SH"], dt.date(2022, 1, 1),
                                                            dt.date(2023, 6, 30)), Settings().features)
    dates = sorted(set(panel["trade_date"]))
    test = held_out_dates(panel, 30)
    assert test == dates[-31:]  # 30 with an outcome + the last date, whose outcome is unknown
    assert len(held_out_dates(panel, 10_000)) == (len(dates) - 1) // 2 + 1
    assert held_out_dates(panel.head(1), 50) == [] and held_out_dates(panel, 0) == []


def test_held_out_count_by_sessions_or_fraction_and_at_most_half():
    bars = SyntheticProvider().fetch(["000001.SH"], dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    panel = build_features(bars, FeatureConfig())
    known = panel.loc[np.isfinite(panel["target"]), "trade_date"].nunique()
    assert held_out_count(panel, TrainConfig()) == known // 2  # 250 asked, half kept for training
    assert held_out_count(panel, TrainConfig(test_sessions=20)) == 20
    assert held_out_count(panel, TrainConfig(test_fraction=0.3)) == round(0.3 * known)
    assert held_out_count(panel, TrainConfig(test_fraction=1e-6)) == 1  # a fraction holds out at least one
    assert held_out_count(panel, TrainConfig(test_sessions=0)) == 0


def test_domain_modules_do_not_import_prefect():
    code = (
        "import sys, importlib\n"
        "for m in ('kline.features', 'kline.baselines', 'kline.forecasters', 'kline.model',"
        " 'kline.training', 'kline.presets', 'kline.zoo', 'kline.registry', 'kline.train_stage'):\n"
        "    importlib.import_module(m)\n"
        "print('prefect' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
