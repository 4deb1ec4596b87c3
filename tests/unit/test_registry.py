import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from kline import registry
from kline.config import FeatureConfig, Settings, TrainConfig
from kline.features import build_features
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.train_stage import train_models
from kline.zoo import make_forecaster

SYMBOLS = ["000001.SH", "600519.SH"]
RUN = dt.date(2023, 6, 30)
FAST = TrainConfig(hidden=4, epochs=3, batch_size=64, patience=2, test_sessions=60)


def panel_for(end=RUN) -> pd.DataFrame:
    bars = SyntheticProvider(seed=2).fetch(SYMBOLS, dt.date(2022, 1, 1), end)
    return build_features(bars, FeatureConfig())


def train(lake, train_cfg=FAST, fp="fp-a", run_date=RUN, panel=None, features=None):
    return train_models(lake, features or FeatureConfig(), train_cfg, run_date, SYMBOLS,
                        panel if panel is not None else panel_for(), fp)


def test_train_registers_lstm_and_baselines_with_self_describing_cards(tmp_path):
    lake = Lake(tmp_path)
    out = train(lake)
    assert out["trained"] and set(out["models"]) == {"lstm", "persistence", "rolling_mean", "ridge"}
    v = out["version"]
    assert out["card"] == f"{tmp_path}/models/lstm/{v}/card.json"
    assert (tmp_path / "models" / "lstm" / v / "weights.pt").is_file()
    assert (tmp_path / "models" / "ridge" / out["models"]["ridge"] / "state.json").is_file()
    card = json.loads((tmp_path / "models" / "lstm" / v / "card.json").read_text())
    for key in ("train", "features", "feature_list", "state", "train_span", "valid_span", "role",
                "data_fingerprint", "metrics", "epochs_run", "wall_s", "code_version", "torch_version",
                "device", "history", "run_date", "train_end"):
        assert key in card, key
    assert card["data_fingerprint"] == "fp-a"
    assert card["state"]["scaler"]["loc"].keys() == set(SYMBOLS)
    assert card["train_span"][1] <= card["train_end"]
    assert len(card["history"]["global"]) == card["epochs_run"]
    # no champion by default: only evidence (the promote stage) makes one
    assert registry.get_champion(lake, "lstm") is None


def test_evidence_is_written_onto_the_card_and_listed(tmp_path):
    lake = Lake(tmp_path)
    v = train(lake)["version"]
    ev = {"held_out": ["2023-01-02", "2023-06-29"], "metrics": {"mase": 1.01, "rmse": 0.02, "n": 240}}
    card = registry.attach_evidence(lake, "lstm", v, ev)
    assert registry.read_card(lake, "lstm", v)["evidence"] == ev == card["evidence"]
    (row,) = [r for r in registry.list_models(lake) if r["name"] == "lstm"]
    assert (row["mase"], row["test_start"], row["test_end"]) == (1.01, "2023-01-02", "2023-06-29")


def test_a_retired_champion_leaves_no_champion(tmp_path):
    lake = Lake(tmp_path)
    v = train(lake)["version"]
    registry.set_champion(lake, "lstm", v, {"rule": "test"})
    pointer = registry.retire_champion(lake, "lstm", {"reason": "no longer beats persistence"})
    assert registry.get_champion(lake, "lstm") is None and pointer["retired"] == v


@pytest.mark.parametrize("name", ["lstm", "ridge", "rolling_mean", "persistence"])
def test_loading_a_version_reproduces_its_predictions_exactly(tmp_path, name):
    lake = Lake(tmp_path)
    panel = panel_for()
    s = Settings(train=FAST)
    f = make_forecaster(name, s)
    f.fit(panel, dt.date(2023, 3, 31))
    registry.save_version(lake, f, "v1", {"features": dataclasses.asdict(s.features)})
    before = f.predict(panel)
    g = registry.load_version(lake, name, "v1")
    pd.testing.assert_frame_equal(before, g.predict(panel))


def test_champion_pointer_and_listing(tmp_path):
    lake = Lake(tmp_path)
    a = train(lake, fp="fp-a")["version"]
    b = train(lake, fp="fp-b")["version"]
    assert a != b
    with pytest.raises(ValueError, match="no registered version"):
        registry.set_champion(lake, "lstm", "19990101-deadbeef", {})
    p = registry.set_champion(lake, "lstm", b, {"metric": "mase", "challenger": 0.98, "champion": 1.0})
    assert registry.get_champion(lake, "lstm") == p
    assert json.loads((tmp_path / "models" / "lstm" / "champion.json").read_text())["version"] == b
    rows = registry.list_models(lake)
    lstm = [r for r in rows if r["name"] == "lstm"]
    assert [r["version"] for r in lstm] == [a, b]
    assert [r["champion"] for r in lstm] == [False, True]
    assert {r["name"] for r in rows} == {"lstm", "persistence", "rolling_mean", "ridge"}
    json.dumps(rows, allow_nan=False)  # strict JSON for `kline models --json`
    assert registry.get_champion(lake, "ridge") is None


def test_on_change_reuses_until_the_data_fingerprint_changes(tmp_path):
    lake = Lake(tmp_path)
    first = train(lake, fp="fp-a")
    again = train(lake, fp="fp-a")
    assert not again["trained"] and again["version"] == first["version"]
    assert again["models"] == first["models"]
    assert train(lake, fp="fp-b")["trained"]


def test_every_n_counts_sessions_and_always_always_trains(tmp_path):
    lake = Lake(tmp_path)
    cfg = dataclasses.replace(FAST, retrain="every_n", retrain_every=3)
    train(lake, cfg, fp="a", run_date=dt.date(2023, 6, 26))
    d = registry.decide_training(lake, FeatureConfig(), cfg, dt.date(2023, 6, 28), "b", SYMBOLS)
    assert not d.train and "2 of 3" in d.reason
    assert registry.decide_training(lake, FeatureConfig(), cfg, dt.date(2023, 6, 29), "b", SYMBOLS).train
    always = dataclasses.replace(FAST, retrain="always")
    d = registry.decide_training(lake, FeatureConfig(), always, dt.date(2023, 6, 26), "a", SYMBOLS)
    assert d.train
    # a different model config is a different lineage: train
    other = dataclasses.replace(FAST, hidden=5)
    assert registry.decide_training(lake, FeatureConfig(), other, RUN, "a", SYMBOLS).reason.startswith("no model")


def test_warm_start_from_the_champion_only_when_features_and_shape_match(tmp_path):
    lake = Lake(tmp_path)
    champ = train(lake, fp="a")["version"]
    assert registry.decide_training(lake, FeatureConfig(), FAST, RUN, "b", SYMBOLS).warm_start is None  # no champion
    registry.set_champion(lake, "lstm", champ, {"rule": "test"})
    d = registry.decide_training(lake, FeatureConfig(), FAST, RUN, "b", SYMBOLS)
    assert d.train and d.warm_start == champ
    second = train(lake, fp="b")
    assert json.loads(open(second["card"]).read())["warm_start"] == champ
    assert registry.decide_training(lake, FeatureConfig(window=10), FAST, RUN, "b", SYMBOLS).warm_start is None
    assert registry.decide_training(lake, FeatureConfig(), dataclasses.replace(FAST, hidden=8), RUN, "b",
                                    SYMBOLS).warm_start is None
    no_warm = dataclasses.replace(FAST, warm_start=False)
    assert registry.decide_training(lake, FeatureConfig(), no_warm, RUN, "c", SYMBOLS).warm_start is None


def test_unknown_policy_is_named(tmp_path):
    with pytest.raises(ValueError, match="sometimes"):
        registry.decide_training(Lake(tmp_path), FeatureConfig(), dataclasses.replace(FAST, retrain="sometimes"),
                                 RUN, "a", SYMBOLS)


def test_a_model_trained_later_is_never_reused_nor_warm_started_from(tmp_path):
    lake = Lake(tmp_path)
    train(lake, fp="a", run_date=dt.date(2023, 6, 26))  # e.g. a backfill to its end date
    earlier = dt.date(2023, 6, 20)  # then a replay of an earlier session
    d = registry.decide_training(lake, FeatureConfig(), FAST, earlier, "a", SYMBOLS)
    assert d.train and d.reason.startswith("no model") and d.warm_start is None
    d = registry.decide_training(lake, FeatureConfig(), FAST, dt.date(2023, 6, 26), "a", SYMBOLS)
    assert not d.train  # the same date with the same data: reused


def test_next_session_forecast_by_the_point_in_time_champion(tmp_path):
    lake = Lake(tmp_path)
    first = train(lake, fp="a", run_date=RUN)
    registry.set_champion(lake, "lstm", first["version"], {"rule": "test"})
    panel = panel_for()
    frame, used = registry.forecast_next_session(lake, panel, RUN)
    assert used == {"model": "lstm", "version": first["version"], "basis": "champion"}
    assert list(frame["symbol"]) == SYMBOLS and list(frame.columns) == registry.FORECAST_COLUMNS
    assert (pd.to_datetime(frame["target_date"]).dt.date > RUN).all()  # the session after the run date
    np.testing.assert_allclose(frame["pred_close"], frame["close"] * np.exp(frame["pred_return"]))
    again = registry.load_version(lake, "lstm", first["version"]).predict(panel, [RUN])
    np.testing.assert_array_equal(frame["pred_return"], again.sort_values("symbol")["pred_return"])
    # replaying an earlier date: the champion saw later data, so persistence forecasts
    early = dt.date(2023, 6, 1)
    frame, used = registry.forecast_next_session(lake, panel, early)
    assert used["model"] == "persistence" and used["version"] is None
    assert (frame["pred_return"] == 0).all()


def test_with_no_champion_the_forecast_is_the_last_close_and_says_so(tmp_path):
    lake = Lake(tmp_path)
    train(lake, fp="a", run_date=RUN)  # a candidate, never promoted
    panel = panel_for()
    frame, used = registry.forecast_next_session(lake, panel, RUN)
    assert used == {"model": "persistence", "version": None, "basis": registry.PERSISTENCE_BASIS}
    last = panel[pd.to_datetime(panel["trade_date"]).dt.date == RUN].set_index("symbol")["close"]
    np.testing.assert_array_equal(frame["pred_close"].to_numpy(), last.loc[frame["symbol"]].to_numpy())
    assert (frame["pred_return"] == 0).all() and set(frame["model"]) == {"persistence"}
    assert set(frame["basis"]) == {registry.PERSISTENCE_BASIS} and "no champion" in registry.PERSISTENCE_BASIS


def _tear(path, keep: float = 1 / 3) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


@pytest.mark.parametrize("what", ["truncated", "bit-flipped-card", "missing"])
def test_a_torn_checkpoint_fails_loading_with_one_line_naming_it(tmp_path, what):
    lake = Lake(tmp_path)
    v = train(lake)["version"]
    d = tmp_path / "models" / "lstm" / v
    if what == "truncated":
        _tear(d / "weights.pt")
        named = d / "weights.pt"
    elif what == "bit-flipped-card":
        (d / "card.json").write_text((d / "card.json").read_text().replace('"state"', '"st\x00te"', 1)[:-40])
        named = d / "card.json"
    else:
        (d / "weights.pt").unlink()
        named = d / "weights.pt"
    with pytest.raises(registry.CheckpointError) as err:
        registry.load_version(lake, "lstm", v)
    msg = str(err.value)
    assert "\n" not in msg and str(named) in msg and "does not load" in msg, msg
    assert isinstance(err.value, ValueError)


def test_a_torn_candidate_never_becomes_champion(tmp_path):
    lake = Lake(tmp_path)
    a = train(lake, fp="fp-a")["version"]
    b = train(lake, fp="fp-b")["version"]
    registry.set_champion(lake, "lstm", a, {"rule": "test"})
    _tear(tmp_path / "models" / "lstm" / b / "weights.pt")
    with pytest.raises(registry.CheckpointError, match=f"not promoting lstm/{b}: model checkpoint .*weights.pt"):
        registry.set_champion(lake, "lstm", b, {"rule": "test"})
    assert registry.get_champion(lake, "lstm")["version"] == a
    assert [h["version"] for h in registry.champion_history(lake, "lstm")] == [a]


def test_a_champion_that_no_longer_loads_forecasts_persistence_and_says_why(tmp_path, caplog):
    lake = Lake(tmp_path)
    first = train(lake, fp="a", run_date=RUN)
    registry.set_champion(lake, "lstm", first["version"], {"rule": "test"})
    weights = tmp_path / "models" / "lstm" / first["version"] / "weights.pt"
    _tear(weights)
    frame, used = registry.forecast_next_session(lake, panel_for(), RUN)
    assert used["model"] == "persistence" and used["version"] is None
    assert used["basis"].startswith("persistence: the champion does not load") and str(weights) in used["basis"]
    assert (frame["pred_return"] == 0).all() and set(frame["basis"]) == {used["basis"]}
    assert any(str(weights) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    # the same inputs are retrained (rewriting the torn version whole), never reused
    d = registry.decide_training(lake, FeatureConfig(), FAST, RUN, "a", SYMBOLS)
    assert d.train and "does not load" in d.reason and d.warm_start is None
    again = train(lake, fp="a", run_date=RUN)
    assert again["version"] == first["version"] and registry.checkpoint_error(lake, "lstm", again["version"]) is None


def test_every_move_of_the_champion_is_in_its_history(tmp_path):
    lake = Lake(tmp_path)
    a = train(lake, fp="fp-a")["version"]
    b = train(lake, fp="fp-b")["version"]
    registry.set_champion(lake, "lstm", a, {"rule": "first"})
    registry.set_champion(lake, "lstm", b, {"rule": "better"})
    registry.retire_champion(lake, "lstm", {"reason": "decayed"})
    with registry.champion_lock(lake, "lstm"):  # re-entrant: the moves inside take it again
        registry.set_champion(lake, "lstm", a, {"rule": "back"})
    h = registry.champion_history(lake, "lstm")
    assert [(x["seq"], x["action"], x["previous"], x["version"]) for x in h] == [
        (1, "promote", None, a), (2, "promote", a, b), (3, "retire", b, None), (4, "promote", None, a)]
    assert h[2]["why"] == {"reason": "decayed"} and registry.get_champion(lake, "lstm")["version"] == a
    assert [v for v in registry.list_versions(lake, "lstm")] == [a, b]  # the history is no version
