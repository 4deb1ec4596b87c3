import datetime as dt
import subprocess
import sys

import pytest

from kline.config import Settings
from kline.features import build_features
from kline.forecasters import BASELINES, PREDICTION_COLUMNS, Forecaster, make_forecaster
from kline.providers.synthetic import SyntheticProvider

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


def test_unknown_forecaster_is_named():
    with pytest.raises(ValueError, match="arima"):
        make_forecaster("arima", Settings())


def test_domain_modules_do_not_import_prefect():
    code = (
        "import sys, importlib\n"
        "for m in ('kline.features', 'kline.baselines', 'kline.forecasters', 'kline.model',"
        " 'kline.training', 'kline.registry'):\n"
        "    importlib.import_module(m)\n"
        "print('prefect' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
