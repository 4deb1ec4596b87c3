import dataclasses
import datetime as dt
import json

import pandas as pd
import pytest

from kline.config import Settings
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from tasks._common import stage_settings
from tasks.backtest import backtest, backtest_run_id, promote

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


def registered_persistence(lake: Lake, version: str) -> dict:
    from kline.baselines import PersistenceForecaster
    from kline.registry import save_version

    f = PersistenceForecaster()
    f.fit(pd.DataFrame({"target_date": []}), dt.date(2023, 5, 1))
    save_version(lake, f, version, {"note": "test"})
    return {"name": "persistence", "version": version}


def test_promote_records_the_decision_and_the_champion(lake_root):
    from kline.registry import get_champion

    lake = curated_lake(lake_root)
    sub = stage_settings(Settings().replace(**FAST), "backtest")
    ref = backtest.fn(lake_root, sub, RUN, SYMBOLS, "fp1")
    from kline.baselines import RidgeForecaster
    from kline.config import FeatureConfig
    from kline.features import build_features
    from kline.registry import save_version

    feats = FeatureConfig(features=("log_return", "hl_range", "volatility_5"), window=5)
    panel = build_features(lake.read_curated_bars(SYMBOLS, end=dt.date(2023, 6, 30)), feats)
    r = RidgeForecaster(feats)
    r.fit(panel, dt.date(2023, 5, 1))
    save_version(lake, r, "20230501-aaaa", {"features": dataclasses.asdict(feats)})
    summary = json.loads(lake.read_text(ref["summary"]))
    ridge_wins = summary["forecast"]["ridge"]["mase"] < 1.0

    d = promote.fn(lake_root, sub, RUN, ref, {"name": "ridge", "version": "20230501-aaaa"})
    assert d["promote"] is ridge_wins
    assert d["persistence_value"] == pytest.approx(1.0)
    assert d["candidate_value"] == pytest.approx(summary["forecast"]["ridge"]["mase"])
    assert json.loads(lake.read_text(f"{ref['dir']}/decision.json")) == d
    champ = get_champion(lake, "ridge")
    assert (champ is not None and champ["version"] == "20230501-aaaa") is ridge_wins
    recorded = json.loads(lake.read_text(f"{lake.paths.model_dir('ridge', '20230501-aaaa')}/promotion-{RUN}.json"))
    assert recorded == d
    # a re-run with other alert settings (a new cache key) reads the recorded decision back
    # instead of judging the candidate against itself; only the decay verdict is new
    again = promote.fn(lake_root, sub, RUN, ref, {"name": "ridge", "version": "20230501-aaaa"},
                       alerts={"decay_mase": 0.0, "decay_sessions": 5})
    assert {k: v for k, v in again.items() if k != "decay"} == d
    assert (again["decay"] is not None) is ridge_wins


def test_promote_keeps_a_better_champion(lake_root):
    from kline.registry import get_champion, set_champion

    lake = curated_lake(lake_root)
    sub = stage_settings(Settings().replace(**FAST), "backtest")
    ref = backtest.fn(lake_root, sub, RUN, SYMBOLS, "fp1")
    registered_persistence(lake, "20230401-old")
    registered_persistence(lake, "20230501-new")
    set_champion(lake, "persistence", "20230401-old", {"metric": "mase", "candidate_value": 0.5})
    d = promote.fn(lake_root, sub, RUN, ref, {"name": "persistence", "version": "20230501-new"})
    # persistence cannot beat itself, and the champion's recorded 0.5 is better still
    assert d["promote"] is False and d["champion_version"] == "20230401-old"
    assert get_champion(lake, "persistence")["version"] == "20230401-old"


def test_backtest_reads_the_features_stage_panel_when_given(lake_root):
    from kline.features import build_features, save_panel

    lake = curated_lake(lake_root)
    s = Settings().replace(**FAST)
    sub = stage_settings(s, "backtest")
    panel = build_features(lake.read_curated_bars(SYMBOLS, end=dt.date(2023, 7, 31)), s.features)
    path = save_panel(lake, panel, "fp0000")  # runs past the run date: the task cuts it
    a = backtest.fn(lake_root, sub, RUN, SYMBOLS, "fp1")
    b = backtest.fn(lake_root, sub, RUN, SYMBOLS, "fp2", features_path=path)
    pa_ = lake.read_table(a["predictions"]).to_pandas()
    pb = lake.read_table(b["predictions"]).to_pandas()
    assert pb["trade_date"].max() == dt.date(2023, 6, 30)
    pd.testing.assert_frame_equal(pa_.drop(columns="realised"), pb.drop(columns="realised"))
