import datetime as dt
import json

import pytest

from kline.config import Settings
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from tasks._common import stage_settings
from tasks.backtest import backtest, backtest_run_id

SYMBOLS = ["000001.SH", "600519.SH"]
RUN = "2023-06-30"
FAST = {
    "features": {"features": ["log_return", "hl_range", "volatility_5"], "window": 5},
    "train": {"test_sessions": 30},
    "backtest": {"retrain_every": 15, "models": ["persistence", "rolling_mean", "ridge"]},
}


def curated_lake(root: str) -> Lake:
    lake = Lake(root)
    bars = SyntheticProvider(seed=3).fetch(SYMBOLS, dt.date(2022, 7, 1), dt.date(2023, 7, 31))
    lake.write_curated_bars(bars)  # July 2023 is after the run date: must not be read
    return lake


def test_backtest_task_writes_files_and_returns_a_reference(lake_root):
    lake = curated_lake(lake_root)
    sub = stage_settings(Settings().replace(**FAST), "backtest")
    ref = backtest.fn(lake_root, sub, RUN, SYMBOLS, "fp1")
    assert ref["run"] == backtest_run_id(RUN, sub, SYMBOLS, "fp1")
    assert ref["dir"] == f"{lake.root}/backtests/{ref['run']}"
    assert ref["predictions"] == f"{ref['dir']}/predictions.parquet"
    assert all(isinstance(v, str | int | float | dict) for v in ref.values())  # no frames
    preds = lake.read_table(ref["predictions"]).to_pandas()
    assert set(preds["model"]) == {"persistence", "rolling_mean", "ridge"}
    assert preds["trade_date"].max() == dt.date(2023, 6, 30)  # nothing after the run date
    assert (preds["train_end"] <= preds["trade_date"]).all()
    summary = json.loads(lake.read_text(ref["summary"]))
    assert summary["scored_sessions"] == ref["scored_sessions"] == 30
    assert summary["forecast"]["persistence"]["mase"] == pytest.approx(1.0)
    assert summary["forecast"]["persistence"]["ic"] is None  # strict JSON, no NaN
    assert ref["values"]["persistence"] == pytest.approx(1.0) and ref["metric"] == "mase"
    eq = lake.read_table(ref["equity"]).to_pandas()
    assert {"trade_date", "persistence", "ridge", "rolling_mean", "buy_and_hold"} <= set(eq.columns)


def test_backtest_run_id_separates_configurations():
    a = stage_settings(Settings().replace(**FAST), "backtest")
    b = stage_settings(Settings().replace(**FAST).replace(backtest={"retrain_every": 5}), "backtest")
    assert backtest_run_id(RUN, a, SYMBOLS, "x") != backtest_run_id(RUN, b, SYMBOLS, "x")
    assert backtest_run_id(RUN, a, SYMBOLS, "x") != backtest_run_id(RUN, a, SYMBOLS, "y")
    assert backtest_run_id(RUN, a, SYMBOLS, "x").startswith(RUN + "-")


def test_backtest_task_on_an_empty_lake_says_what_is_missing(lake_root):
    sub = stage_settings(Settings().replace(**FAST), "backtest")
    with pytest.raises(ValueError, match="no curated bars"):
        backtest.fn(lake_root, sub, RUN, SYMBOLS)
