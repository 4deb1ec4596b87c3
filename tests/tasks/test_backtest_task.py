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


FEATS = {"features": ("log_return", "hl_range", "volatility_5"), "window": 5}


def registered(lake: Lake, name: str, version: str, train_end: dt.date) -> dict:
    """``name`` fitted on the curated bars up to ``train_end`` and registered as trained then."""
    from kline.config import FeatureConfig
    from kline.features import build_features
    from kline.registry import save_version
    from kline.zoo import make_forecaster

    feats = FeatureConfig(**FEATS)
    panel = build_features(lake.read_curated_bars(SYMBOLS, end=train_end), feats)
    f = make_forecaster(name, Settings(features=feats))
    f.fit(panel, train_end)
    save_version(lake, f, version, {"features": dataclasses.asdict(feats), "run_date": train_end.isoformat()})
    return {"name": name, "version": version}


def features_path(lake: Lake) -> str:
    from kline.config import FeatureConfig
    from kline.features import build_features, save_panel

    panel = build_features(lake.read_curated_bars(SYMBOLS, end=dt.date(2023, 6, 30)), FeatureConfig(**FEATS))
    return save_panel(lake, panel, "test")


def test_promote_records_the_decision_and_the_evidence(lake_root):
    from kline.registry import get_champion, read_card

    lake = curated_lake(lake_root)
    sub = stage_settings(Settings().replace(**FAST), "promote")
    ref = backtest.fn(lake_root, stage_settings(Settings().replace(**FAST), "backtest"), RUN, SYMBOLS, "fp1")
    cand = registered(lake, "ridge", "20230630-aaaa", dt.date(2023, 6, 30))
    summary = json.loads(lake.read_text(ref["summary"]))
    ridge = summary["forecast"]["ridge"]
    earns = ridge["mase"] < 1.0 and ridge["dm_pvalue"] < 0.10 and ridge["dm_stat"] < 0

    d = promote.fn(lake_root, sub, RUN, ref, cand, features_path=features_path(lake))
    assert d["promote"] is earns and d["max_p"] == 0.10
    assert d["persistence_value"] == pytest.approx(1.0)
    assert d["candidate_value"] == pytest.approx(ridge["mase"]) and d["dm_pvalue"] == pytest.approx(ridge["dm_pvalue"])
    assert json.loads(lake.read_text(f"{ref['dir']}/decision.json")) == d
    champ = get_champion(lake, "ridge")
    assert (champ is not None and champ["version"] == "20230630-aaaa") is earns
    recorded = json.loads(lake.read_text(f"{lake.paths.model_dir('ridge', '20230630-aaaa')}/promotion-{RUN}.json"))
    assert recorded == d
    evidence = read_card(lake, "ridge", "20230630-aaaa")["evidence"]
    assert evidence["backtest_run"] == ref["run"] and evidence["metrics"]["mase"] == pytest.approx(ridge["mase"])
    assert evidence["held_out"] == [ref["test_start"], ref["test_end"]]
    # a re-run with other alert settings (a new cache key) reads the recorded decision back
    # instead of judging the candidate against itself; only the decay verdict is new
    again = promote.fn(lake_root, sub, RUN, ref, cand, alerts={"decay_mase": 0.0, "decay_sessions": 5},
                       features_path=features_path(lake))
    assert {k: v for k, v in again.items() if k != "decay"} == d
    assert (again["decay"] is not None) is earns


def test_a_candidate_that_loses_to_persistence_is_not_promoted_and_persistence_forecasts(lake_root):
    from kline.registry import PERSISTENCE_BASIS, get_champion
    from tasks.forecast import forecast

    lake = curated_lake(lake_root)
    ref = backtest.fn(lake_root, stage_settings(Settings().replace(**FAST), "backtest"), RUN, SYMBOLS, "fp1")
    summary = json.loads(lake.read_text(ref["summary"]))
    assert summary["forecast"]["rolling_mean"]["mase"] > 1.0  # drift loses to "tomorrow = today" here
    cand = registered(lake, "rolling_mean", "20230630-loser", dt.date(2023, 6, 30))
    fpath = features_path(lake)
    d = promote.fn(lake_root, stage_settings(Settings().replace(**FAST), "promote"), RUN, ref, cand,
                   features_path=fpath)
    assert d["promote"] is False and "does not beat persistence" in d["reason"]
    assert get_champion(lake, "rolling_mean") is None
    out = forecast.fn(lake_root, RUN, SYMBOLS, fpath, d, ref, [0.1, 0.9])
    assert out["model"] == "persistence" and out["version"] is None and out["basis"] == PERSISTENCE_BASIS
    csv = pd.read_csv(out["path"])
    assert set(csv["basis"]) == {PERSISTENCE_BASIS} and set(csv["model"]) == {"persistence"}
    assert (csv["pred_close"] == csv["close"]).all() and (csv["pred_return"] == 0).all()
    bars = lake.read_curated_bars(SYMBOLS, end=dt.date(2023, 6, 30))
    last = bars[bars["trade_date"] == dt.date(2023, 6, 30)].set_index("symbol")["close"]
    assert csv.set_index("symbol")["close"].to_dict() == pytest.approx(last.to_dict())


def test_a_champion_that_no_longer_beats_persistence_is_retired(lake_root):
    from kline.registry import get_champion, set_champion

    lake = curated_lake(lake_root)
    ref = backtest.fn(lake_root, stage_settings(Settings().replace(**FAST), "backtest"), RUN, SYMBOLS, "fp1")
    old = registered(lake, "rolling_mean", "20230301-old", dt.date(2023, 3, 1))  # a drift "champion"
    set_champion(lake, "rolling_mean", old["version"], {"rule": "set by hand"})
    cand = registered(lake, "rolling_mean", "20230630-new", dt.date(2023, 6, 30))
    d = promote.fn(lake_root, stage_settings(Settings().replace(**FAST), "promote"), RUN, ref, cand,
                   features_path=features_path(lake))
    v = d["verdict"]
    assert v["retire"] is True and v["sessions"] == 30 and v["champion_value"] >= v["persistence_value"]
    assert "no longer beats persistence" in v["reason"] and d["champion_version"] == "20230301-old"
    assert get_champion(lake, "rolling_mean") is None and d["promote"] is False
    pointer = json.loads(lake.read_text(lake.paths.champion("rolling_mean")))
    assert pointer["retired"] == "20230301-old" and pointer["verdict"]["retire"] is True


def test_a_young_champion_is_kept_until_it_has_sessions_to_judge(lake_root):
    from kline.registry import get_champion, set_champion

    lake = curated_lake(lake_root)
    ref = backtest.fn(lake_root, stage_settings(Settings().replace(**FAST), "backtest"), RUN, SYMBOLS, "fp1")
    young = registered(lake, "rolling_mean", "20230620-young", dt.date(2023, 6, 20))
    set_champion(lake, "rolling_mean", young["version"], {"rule": "set by hand"})
    cand = registered(lake, "rolling_mean", "20230630-cand", dt.date(2023, 6, 30))
    d = promote.fn(lake_root, stage_settings(Settings().replace(**FAST), "promote"), RUN, ref, cand,
                   features_path=features_path(lake))
    assert d["verdict"]["retire"] is False and d["verdict"]["sessions"] < 20
    assert get_champion(lake, "rolling_mean")["version"] == "20230620-young" and d["promote"] is False


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


def test_a_champion_whose_checkpoint_no_longer_loads_is_retired_naming_the_file(lake_root):
    from kline.registry import champion_history, get_champion, set_champion

    lake = curated_lake(lake_root)
    ref = backtest.fn(lake_root, stage_settings(Settings().replace(**FAST), "backtest"), RUN, SYMBOLS, "fp1")
    old = registered(lake, "rolling_mean", "20230301-old", dt.date(2023, 3, 1))
    set_champion(lake, "rolling_mean", old["version"], {"rule": "set by hand"})
    state = f"{lake.paths.model_dir('rolling_mean', old['version'])}/state.json"
    with open(state, "r+b") as f:  # torn at rest after it was promoted
        f.truncate(5)
    cand = registered(lake, "rolling_mean", "20230630-new", dt.date(2023, 6, 30))
    d = promote.fn(lake_root, stage_settings(Settings().replace(**FAST), "promote"), RUN, ref, cand,
                   features_path=features_path(lake))
    assert d["verdict"]["retire"] is True and d["champion_version"] == "20230301-old"
    assert d["verdict"]["reason"].startswith(f"model checkpoint {state} does not load"), d["verdict"]
    champ = get_champion(lake, "rolling_mean")
    assert champ is None or champ["version"] == "20230630-new"  # never the torn one
    assert [h["action"] for h in champion_history(lake, "rolling_mean")][:2] == ["promote", "retire"]
