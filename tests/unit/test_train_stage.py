import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from kline.config import FeatureConfig, Settings, TrainConfig
from kline.features import build_features
from kline.forecasters import held_out_dates
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.train_stage import holdout_metrics, holdout_train_end, train_models
from kline.zoo import make_forecaster

SYMBOLS = ["000001.SH", "600519.SH"]


def small_panel(cfg: FeatureConfig) -> pd.DataFrame:
    bars = SyntheticProvider(seed=9).fetch(SYMBOLS, dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    return build_features(bars, cfg)


def test_holdout_train_end_keeps_the_last_sessions_for_testing():
    panel = small_panel(FeatureConfig())
    te, n = holdout_train_end(panel, TrainConfig(test_sessions=20))
    known = panel[panel["target"].notna()]
    test_dates = sorted(set(known.loc[known["target_date"] > te, "trade_date"]))
    assert n == 20 and len(test_dates) == 20
    assert (known.loc[known["target_date"] <= te, "trade_date"] < test_dates[0]).all()
    te0, n0 = holdout_train_end(panel, TrainConfig(test_sessions=0))
    assert n0 == 0 and te0 == known["target_date"].max()


def test_the_train_stage_and_the_backtest_share_one_held_out_boundary():
    panel = small_panel(FeatureConfig())
    for cfg in (TrainConfig(test_sessions=40), TrainConfig(test_fraction=0.3)):
        te, n = holdout_train_end(panel, cfg)
        assert held_out_dates(panel, n)[0] == te


def test_no_known_target_is_refused():
    panel = small_panel(FeatureConfig()).assign(target=np.nan)
    with pytest.raises(ValueError, match="no session with a known target"):
        holdout_train_end(panel, TrainConfig())


def test_holdout_metrics_score_only_rows_after_the_boundary():
    panel = small_panel(FeatureConfig())
    te, n = holdout_train_end(panel, TrainConfig(test_sessions=20))
    persistence = make_forecaster("persistence", Settings())
    persistence.fit(panel, te)
    m = holdout_metrics(persistence, panel, te)
    assert m["n"] == 20 * len(SYMBOLS) and m["mase"] == pytest.approx(1.0)
    assert holdout_metrics(persistence, panel, panel["target_date"].max()) == {"n": 0}


def test_a_reused_model_reports_the_card_it_reuses(tmp_path):
    lake = Lake(tmp_path)
    cfg = TrainConfig(hidden=4, epochs=2, batch_size=64, test_sessions=40, retrain="on_change")
    panel = small_panel(FeatureConfig())
    first = train_models(lake, FeatureConfig(), cfg, dt.date(2023, 6, 30), SYMBOLS, panel, "fp")
    again = train_models(lake, FeatureConfig(), cfg, dt.date(2023, 6, 30), SYMBOLS, panel, "fp")
    assert first["trained"] and not again["trained"]
    assert {k: again[k] for k in ("name", "version", "card", "train_end", "models")} == \
        {k: first[k] for k in ("name", "version", "card", "train_end", "models")}
    card = json.loads((tmp_path / "models" / "lstm" / first["version"] / "card.json").read_text())
    assert card["baselines"] == {k: v for k, v in first["models"].items() if k != "lstm"}
    assert card["epochs_run"] == 2 and "test" not in card["metrics"]  # the evidence is the walk-forward's


@pytest.mark.parametrize("run_date", [dt.date(2023, 6, 30), dt.date(2023, 3, 15), dt.date(2022, 11, 1)])
def test_the_production_model_is_trained_through_the_run_date(tmp_path, run_date):
    lake = Lake(tmp_path)
    cfg = TrainConfig(hidden=4, epochs=1, batch_size=64, test_sessions=40, valid_fraction=0.0)
    panel = small_panel(FeatureConfig())  # history runs past every run date: none of it may be read
    out = train_models(lake, FeatureConfig(), cfg, run_date, SYMBOLS, panel, "fp")
    card = json.loads(open(out["card"]).read())
    last = max(d for d in pd.to_datetime(panel["trade_date"]).dt.date if d <= run_date)
    # the last known outcome is the run date's close (the decision of the session before it)
    assert card["train_end"] == card["train_span"][1] == out["train_end"] == last.isoformat()
    assert card["state"]["train_end"] == last.isoformat()
    for name, v in out["models"].items():
        assert json.loads((tmp_path / "models" / name / v / "card.json").read_text())["train_end"] == last.isoformat()


def test_sessions_needed_follows_the_longest_lookback_and_the_window():
    from kline.train_stage import MIN_TRAIN_WINDOWS, sessions_needed

    base = FeatureConfig(features=("log_return", "volatility_20"), window=20)
    assert sessions_needed(base, TrainConfig()) == 2 * (20 + 20 + MIN_TRAIN_WINDOWS)
    longer = FeatureConfig(features=("log_return", "rank_volume_z_60"), window=10)
    assert sessions_needed(longer, TrainConfig()) == 2 * (60 + 10 + MIN_TRAIN_WINDOWS)
    # the seed preset trains on the close alone with 10-session windows, whatever the features say
    assert sessions_needed(longer, TrainConfig(preset="seed")) == 2 * (1 + 10 + MIN_TRAIN_WINDOWS)
