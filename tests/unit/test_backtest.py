import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from kline.backtest import (
    BUY_AND_HOLD,
    BacktestError,
    attach_realised,
    decide_promotion,
    judge_candidate,
    residual_quantiles,
    run_backtest,
    score,
    walk_forward,
    with_interval,
)
from kline.baselines import RidgeForecaster, RollingMeanForecaster
from kline.config import FeatureConfig, PromotionConfig, Settings
from kline.features import build_features
from kline.forecasters import PREDICTION_COLUMNS, held_out_dates, prediction_frame
from kline.providers.synthetic import SyntheticProvider, synthetic_universe

SYMBOLS = ["000001.SH", "600519.SH"]
FEAT = FeatureConfig(features=("log_return", "hl_range", "volatility_5"), window=5)


@pytest.fixture(scope="module")
def bars():
    return SyntheticProvider(seed=11).fetch(SYMBOLS, dt.date(2022, 1, 1), dt.date(2023, 6, 30))


@pytest.fixture(scope="module")
def panel(bars):
    return build_features(bars, FEAT)


class Oracle:
    """Predicts the realised target it is handed: must get nothing through the walk-forward."""

    name = "oracle"

    def fit(self, panel, train_end):
        self.train_end = train_end
        self.max_target_date = max(panel["target_date"]) if len(panel) else None
        return {}

    def predict(self, panel, dates=None):
        m = panel["trade_date"].isin(dates)
        p = panel[m]
        return prediction_frame(p["symbol"], p["trade_date"], p["target_date"], p["target"], self.name,
                                "v", self.train_end)


def test_every_prediction_records_a_fit_no_later_than_its_date(panel):
    test = held_out_dates(panel, 50)
    preds, fits = walk_forward(panel, lambda: RollingMeanForecaster(k=5), test, retrain_every=20)
    assert list(preds.columns) == PREDICTION_COLUMNS
    assert (preds["train_end"] <= preds["trade_date"]).all()
    assert sorted(preds["train_end"].unique()) == [test[0], test[20], test[40]]
    assert [f["train_end"] for f in fits] == [test[0].isoformat(), test[20].isoformat(), test[40].isoformat()]
    assert set(preds["trade_date"]) == set(test)
    assert len(test) == 51 and len(preds) == 2 * 51  # 50 scored sessions + tomorrow


def test_walk_forward_hides_every_outcome_after_train_end(panel):
    test = held_out_dates(panel, 30)
    made = []

    def make():
        made.append(Oracle())
        return made[-1]

    preds, _ = walk_forward(panel, make, test, retrain_every=10)
    # the oracle reads `target`; with outcomes after train_end blanked it can only predict
    # rows whose next session had closed by train_end: none of the held-out dates
    assert preds.empty
    for o in made:
        assert o.max_target_date <= o.train_end


class Recorder:
    """A forecaster that remembers every (symbol, decision date) whose outcome its fit read,
    and, warm started, every row its predecessors read: their ``weights`` carry them on."""

    name = "recorder"

    def fit(self, panel, train_end, init_weights=None):
        known = panel[np.isfinite(panel["target"].to_numpy("float64"))]
        seen = set(zip(known["symbol"], pd.to_datetime(known["trade_date"]).dt.date, strict=True))
        self.weights = {"seen": seen | (init_weights or {}).get("seen", set())}
        self.warm, self.train_end = init_weights is not None, train_end
        return {"rows": len(known)}

    def predict(self, panel, dates=None):
        p = panel[pd.to_datetime(panel["trade_date"]).dt.date.isin(set(dates))]
        return prediction_frame(p["symbol"], p["trade_date"], p["target_date"], np.zeros(len(p)), self.name,
                                f"fit-{self.train_end}", self.train_end)


@pytest.mark.parametrize("case", range(12))
def test_walk_forward_rows_were_never_seen_by_the_fit_that_predicts_them(panel, case):
    """Property over random held-out lengths, refit intervals, windows and warm starts: no
    predicted row is a row whose outcome the evaluated fit (or a fit it started from) read."""
    rng = np.random.default_rng(case)
    n_test = int(rng.integers(5, 120))
    every = int(rng.integers(1, 70))
    window = str(rng.choice(["expanding", "rolling"]))
    warm = bool(rng.integers(0, 2))
    test = held_out_dates(panel, n_test)
    made = []

    def make():
        made.append(Recorder())
        return made[-1]

    preds, fits = walk_forward(panel, make, test, every, window, rolling_sessions=int(rng.integers(20, 300)),
                               warm_start=warm)
    by_fit = {f"fit-{m.train_end}": m for m in made}
    assert len(by_fit) == len(made) == len(fits)
    assert [f["warm_start"] for f in fits] == [warm and i > 0 for i in range(len(fits))]
    for version, rows in preds.groupby("version"):
        seen = by_fit[version].weights["seen"]
        predicted = set(zip(rows["symbol"], rows["trade_date"], strict=True))
        assert not predicted & seen, (case, version)
        assert (rows["target_date"] > rows["train_end"]).all()
    assert set(preds["trade_date"]) == set(test)


def test_leakage_perturbing_after_cutoff_changes_no_earlier_prediction(bars):
    test_n = 60
    base = build_features(bars, FEAT)
    test = held_out_dates(base, test_n)
    cutoff = test[25]  # inside the second refit block
    rng = np.random.default_rng(0)
    b2 = bars.copy()
    after = b2["trade_date"] > cutoff
    for c in ("open", "high", "low", "close"):
        b2.loc[after, c] = b2.loc[after, c] * rng.uniform(0.8, 1.25, after.sum())
    b2.loc[after, "volume"] = b2.loc[after, "volume"] * 3
    pert = build_features(b2, FEAT)
    for make in (lambda: RidgeForecaster(FEAT, alpha=1.0), lambda: RollingMeanForecaster(k=5)):
        a, _ = walk_forward(base, make, test, retrain_every=20)
        b, _ = walk_forward(pert, make, test, retrain_every=20)
        a_early, b_early = a[a["trade_date"] <= cutoff], b[b["trade_date"] <= cutoff]
        pd.testing.assert_frame_equal(a_early.reset_index(drop=True), b_early.reset_index(drop=True))
        # and the perturbation did reach the later predictions (the test can fail)
        assert not np.allclose(a[a["trade_date"] > cutoff]["pred_return"], b[b["trade_date"] > cutoff]["pred_return"])


def test_rolling_window_trains_on_the_last_sessions_only(panel):
    seen = []

    class Recorder(Oracle):
        def fit(self, panel, train_end):
            seen.append(sorted(set(panel["trade_date"])))
            return super().fit(panel, train_end)

    test = held_out_dates(panel, 20)
    walk_forward(panel, Recorder, test, retrain_every=10, window="rolling", rolling_sessions=40)
    for dates in seen:
        assert len(dates) <= 40
    walk_forward(panel, Recorder, test, retrain_every=10, window="expanding")
    assert len(seen[-1]) > 100


def test_walk_forward_rejects_bad_parameters(panel):
    with pytest.raises(BacktestError, match="retrain_every"):
        walk_forward(panel, Oracle, held_out_dates(panel, 5), retrain_every=0)
    with pytest.raises(BacktestError, match="window"):
        walk_forward(panel, Oracle, held_out_dates(panel, 5), retrain_every=5, window="sliding")
    with pytest.raises(BacktestError, match="cannot hold out"):
        run_backtest(panel.head(1), panel.head(0), Settings(features=FEAT), models=["persistence"])


def test_score_compares_models_on_the_same_rows():
    d = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
    rows = []
    for i, day in enumerate(d):
        rows.append(("A", day, 0.0, "persistence", [0.01, -0.02, 0.03][i]))
        if i > 0:  # model x has no prediction on the first day
            rows.append(("A", day, 0.01, "x", [0.01, -0.02, 0.03][i]))
    p = pd.DataFrame(rows, columns=["symbol", "trade_date", "pred_return", "model", "realised"])
    out = score(p)
    assert out["persistence"]["n"] == out["x"]["n"] == 2
    assert out["persistence"]["mase"] == pytest.approx(1.0)
    assert out["x"]["mase"] == pytest.approx((0.03 + 0.02) / 0.05)


def test_attach_realised_uses_the_panel_target(panel):
    test = held_out_dates(panel, 5)
    preds, _ = walk_forward(panel, lambda: RollingMeanForecaster(k=5), test, retrain_every=5)
    out = attach_realised(preds, panel)
    row = out.iloc[0]
    expect = panel[(panel["symbol"] == row["symbol"]) & (panel["trade_date"] == row["trade_date"])]["target"]
    assert row["realised"] == pytest.approx(float(expect.iloc[0]))
    assert out["realised"].isna().sum() == 2  # the last date: tomorrow is not known yet


SIG = {"dm_stat": -2.5, "dm_pvalue": 0.01, "sessions": 40}
FC = {"lstm": {"mase": 0.98, **SIG}, "persistence": {"mase": 1.0}}


def test_promotion_needs_to_beat_persistence_and_champion_significantly():
    d = decide_promotion("lstm", "v2", FC, "mase", None)
    assert d["promote"] and d["persistence_value"] == 1.0 and d["champion_version"] is None
    d = decide_promotion("lstm", "v2", {"lstm": {"mase": 1.02, **SIG}, "persistence": {"mase": 1.0}}, "mase", None)
    assert not d["promote"] and "persistence" in d["reason"]
    d = decide_promotion("lstm", "v2", {**FC, "champion": {"mase": 0.97}}, "mase", {"version": "v1"})
    assert not d["promote"] and d["champion_value"] == 0.97
    d = decide_promotion("lstm", "v2", {**FC, "champion": {"mase": 0.99}}, "mase", {"version": "v1"})
    assert d["promote"] and "v1" in d["reason"]
    d = decide_promotion("lstm", "v1", {**FC, "champion": {"mase": 0.99}}, "mase", {"version": "v1"})
    assert not d["promote"]
    # a champion with no out-of-sample row in common cannot be beaten by default
    d = decide_promotion("lstm", "v2", FC, "mase", {"version": "v1"})
    assert not d["promote"] and "nothing to compare" in d["reason"]


def test_promotion_needs_a_significant_diebold_mariano_and_enough_sessions():
    weak = {"lstm": {"mase": 0.98, "dm_stat": -1.2, "dm_pvalue": 0.23, "sessions": 40}, "persistence": {"mase": 1.0}}
    d = decide_promotion("lstm", "v2", weak, "mase", None)
    assert not d["promote"] and "not significantly" in d["reason"] and d["max_p"] == 0.10
    assert decide_promotion("lstm", "v2", weak, "mase", None, PromotionConfig(max_p=0.3))["promote"]
    few = {"lstm": {"mase": 0.98, **SIG, "sessions": 5}, "persistence": {"mase": 1.0}}
    d = decide_promotion("lstm", "v2", few, "mase", None)
    assert not d["promote"] and "5 held-out session(s)" in d["reason"]


def test_promotion_higher_is_better_metric_and_nan():
    fc = {"lstm": {"directional_accuracy": 0.53, **SIG}, "persistence": {"directional_accuracy": float("nan")}}
    assert not decide_promotion("lstm", "v", fc, "directional_accuracy")["promote"]
    fc = {"lstm": {"ic": 0.05, **SIG}, "persistence": {"ic": 0.01}}
    assert decide_promotion("lstm", "v", fc, "ic")["promote"]
    with pytest.raises(BacktestError):
        decide_promotion("ridge", "v", fc, "ic")


def test_run_backtest_baselines_end_to_end(bars, panel):
    s = Settings(features=FEAT).replace(train={"test_sessions": 40}, backtest={"retrain_every": 20})
    r = run_backtest(panel, bars, s, models=["persistence", "rolling_mean", "ridge"])
    assert set(r.forecast) == {"persistence", "rolling_mean", "ridge"}
    assert r.forecast["persistence"]["mase"] == pytest.approx(1.0)
    assert set(r.strategy) == {"persistence", "rolling_mean", "ridge", BUY_AND_HOLD}
    # persistence predicts 0 <= threshold: never long, so its equity stays at the capital
    assert r.equity["persistence"].iloc[-1] == pytest.approx(2 * s.backtest.capital)
    assert r.strategy[BUY_AND_HOLD]["trades"] == 0 and r.strategy[BUY_AND_HOLD]["costs"] > 0
    assert list(r.equity.columns) == ["persistence", "ridge", "rolling_mean", BUY_AND_HOLD]
    # 40 scored sessions in blocks of 20, tomorrow's forecast folded into the last block
    assert len({f["train_end"] for f in r.fits}) == 2
    assert len(r.test_dates) == 41
    assert dataclasses.is_dataclass(r)


def test_domain_modules_import_neither_prefect_nor_pyplot():
    import subprocess
    import sys

    code = ("import sys, kline.backtest, kline.metrics, kline.simulation, kline.report; "
            "print('prefect' in sys.modules, 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_backtest_holds_out_what_the_resolved_preset_holds_out(bars):
    one = build_features(bars[bars["symbol"] == "000001.SH"], FeatureConfig())
    known = one.loc[np.isfinite(one["target"]), "trade_date"].nunique()
    seed = Settings().replace(train={"preset": "seed"})  # the article's 70/30 split, not test_sessions
    r = run_backtest(one, bars, seed, models=["persistence"])
    assert len(r.test_dates) == round(0.3 * known) + 1  # + tomorrow's forecast


def test_cross_section_figures_for_a_universe_of_30_stocks_and_a_note_below():
    """36 stocks with the planted signal (0.3, seen through ``volume_z_20``): ridge on that
    feature finds it (rank IC t > 3); persistence's constant score has no IC."""
    syms = synthetic_universe(36)
    bars = SyntheticProvider(seed=4, signal=0.3).fetch(syms, dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    feats = FeatureConfig(features=("volume_z_20",), window=2)
    panel = build_features(bars, feats)
    s = Settings(features=feats).replace(train={"test_sessions": 120}, backtest={"retrain_every": 60, "topk": 8,
                                                                                 "n_drop": 2})
    r = run_backtest(panel, bars, s, models=["persistence", "ridge"])
    cs = r.summary()["cross_section"]
    predicted = sorted(r.predictions["symbol"].unique())  # stocks listed after the held-out start have none
    assert cs["stocks"] == len(predicted) >= 30 and (cs["topk"], cs["n_drop"]) == (8, 2) and "note" not in cs
    ridge = cs["models"]["ridge"]
    assert ridge["rank_ic_mean"] > 0 and ridge["rank_ic_t"] > 3 and ridge["ic_days"] == 120
    assert ridge["k"] == 8 and np.isfinite(ridge["excess_return_with_cost.information_ratio"])
    assert np.isnan(cs["models"]["persistence"]["ic_mean"])

    small = run_backtest(panel[panel["symbol"].isin(predicted[:29])], bars, s, models=["persistence"])
    note = small.summary()["cross_section"]
    assert "models" not in note and note["stocks"] == 29 and "at least 30 stocks; this one has 29" in note["note"]


def test_forecast_interval_from_walk_forward_residuals():
    dates = pd.bdate_range("2023-01-02", periods=100).date
    rng = np.random.default_rng(1)
    rows = []
    for sym, scale in (("A", 0.01), ("B", 0.05)):
        real = rng.normal(0, scale, len(dates))
        rows.append(pd.DataFrame({"symbol": sym, "trade_date": dates, "model": "lstm", "pred_return": 0.001,
                                  "realised": real}))
    rows.append(pd.DataFrame({"symbol": "C", "trade_date": dates[:5], "model": "lstm", "pred_return": 0.0,
                              "realised": [0.1] * 5}))  # too few residuals of its own: pooled
    preds = pd.concat(rows, ignore_index=True)
    q = residual_quantiles(preds, "lstm", (0.1, 0.9))
    a = preds[preds["symbol"] == "A"]
    assert q["A"] == pytest.approx(tuple(np.quantile(a["realised"] - 0.001, [0.1, 0.9])))
    assert q["B"][1] - q["B"][0] > 3 * (q["A"][1] - q["A"][0]) and "C" not in q and "" in q
    fc = pd.DataFrame({"symbol": ["A", "C", "D"], "pred_return": [0.002, 0.0, 0.0], "close": [10.0, 20.0, 30.0]})
    out = with_interval(fc, q, (0.1, 0.9))
    assert out.loc[0, "pred_return_low"] == pytest.approx(0.002 + q["A"][0])
    assert out.loc[0, "pred_close_high"] == pytest.approx(10.0 * np.exp(0.002 + q["A"][1]))
    assert out.loc[1, "pred_return_low"] == pytest.approx(q[""][0])  # pooled
    assert (out["pred_close_low"] < out["pred_close_high"]).all() and set(out["interval"]) == {"p10-p90"}
    none = with_interval(fc, {}, (0.1, 0.9))
    assert none["pred_close_low"].isna().all()


def _frame(model, dates, syms, realised, pred):
    n = len(dates) * len(syms)
    return pd.DataFrame({"symbol": np.repeat(syms, len(dates)), "trade_date": np.tile(dates, len(syms)),
                         "model": model, "pred_return": pred[:n], "realised": realised[:n]})


def test_judge_candidate_compares_candidate_champion_and_persistence_on_the_same_rows():
    rng = np.random.default_rng(3)
    dates, syms = list(pd.bdate_range("2023-01-02", periods=80).date), ["A", "B", "C"]
    realised = rng.normal(0, 0.02, 240)
    skilled = 0.6 * realised + rng.normal(0, 0.006, 240)  # a clear, significant skill
    preds = pd.concat([_frame("lstm", dates, syms, realised, skilled),
                       _frame("persistence", dates, syms, realised, np.zeros(240))], ignore_index=True)
    d = judge_candidate(preds, "lstm", "v2", "mase", PromotionConfig())
    assert d["promote"] and d["verdict"] is None and d["metrics"]["lstm"]["n"] == 240
    assert d["held_out"] == [dates[0].isoformat(), dates[-1].isoformat()] and d["dm_pvalue"] < 0.01

    # a champion trained through session 55: its own rows are the last 25 sessions only
    late = dates[55:]
    mask = np.isin(np.tile(dates, 3), late)
    champ_real, champ_pred = realised[mask], 0.9 * realised[mask]  # better than the candidate there
    champion = _frame("champion", late, syms, champ_real, champ_pred)
    d = judge_candidate(preds, "lstm", "v2", "mase", PromotionConfig(), champion, "v1")
    assert not d["verdict"]["retire"] and d["verdict"]["sessions"] == 25
    assert {m["n"] for m in d["metrics"].values()} == {75}  # 25 sessions x 3 symbols, for all three
    assert not d["promote"] and "does not beat champion v1" in d["reason"] and d["champion_version"] == "v1"

    # a champion that no longer beats persistence is retired and the candidate judged without it
    bad = _frame("champion", late, syms, champ_real, -champ_real)
    d = judge_candidate(preds, "lstm", "v2", "mase", PromotionConfig(), bad, "v1")
    assert d["verdict"]["retire"] and "no longer beats persistence" in d["verdict"]["reason"]
    assert d["promote"] and d["metrics"]["lstm"]["n"] == 240 and "champion" not in d["metrics"]
    d = judge_candidate(preds, "lstm", "v1", "mase", PromotionConfig(), bad, "v1")  # the retired one itself
    assert d["verdict"]["retire"] and not d["promote"] and "retired" in d["reason"]

    # a champion too young to judge stays, and blocks promotion until it has sessions in common
    young = _frame("champion", dates[75:], syms, realised[np.isin(np.tile(dates, 3), dates[75:])],
                   np.zeros(15))
    d = judge_candidate(preds, "lstm", "v2", "mase", PromotionConfig(), young, "v1")
    assert not d["verdict"]["retire"] and d["verdict"]["sessions"] == 5
    assert not d["promote"] and "5 held-out session(s)" in d["reason"]


@pytest.mark.parametrize("signal", [0.3, 0.0])
def test_the_lstm_finds_a_planted_signal_and_claims_no_skill_without_one(signal):
    """40 stocks; the planted signal of ``kline.providers.synthetic`` at strength 0.3 (its
    module doc: a daily rank IC up to about 0.8 x 0.3 through ``volume_z_20``), or none. With it, the LSTM's walk-forward has a
    positive rank IC with t > 3, its top-k portfolio beats the equal-weight universe after
    costs and it earns promotion; without it, none of that."""
    syms = synthetic_universe(40)
    bars = SyntheticProvider(seed=8, signal=signal).fetch(syms, dt.date(2022, 1, 1), dt.date(2023, 12, 29))
    feats = FeatureConfig(features=("log_return", "volume_z_20"), window=5)
    s = Settings(features=feats).replace(
        train={"test_sessions": 150, "hidden": 8, "epochs": 8, "patience": 3, "batch_size": 512},
        backtest={"retrain_every": 75, "topk": 8, "n_drop": 2})
    r = run_backtest(build_features(bars, feats), bars, s, models=["lstm", "persistence"])
    cs = r.summary()["cross_section"]["models"]["lstm"]
    decision = judge_candidate(r.predictions, "lstm", "v1", "mase", s.promotion)
    if signal:
        assert cs["rank_ic_mean"] > 0 and cs["rank_ic_t"] > 3 and cs["ic_t"] > 3
        assert cs["excess_return_with_cost.annualized_return"] > 0
        assert cs["portfolio.annualized_return"] > cs["benchmark.annualized_return"]
        assert decision["promote"], decision["reason"]
    else:
        assert abs(cs["rank_ic_t"]) < 3 and abs(cs["ic_t"]) < 3
        assert cs["excess_return_without_cost.t"] < 2 and cs["excess_return_with_cost.t"] < 2
        assert not decision["promote"]
