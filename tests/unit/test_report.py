import base64
import datetime as dt
import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from kline.backtest import decide_promotion, run_backtest
from kline.config import FeatureConfig, Settings
from kline.features import build_features
from kline.providers.synthetic import SyntheticProvider
from kline.report import (
    FIGURES,
    ReportInputs,
    headline,
    history_rows,
    loss_history_from_fits,
    markdown_table,
    merge_history,
    metrics_rows,
    render_report,
)

FEAT = FeatureConfig(features=("log_return", "hl_range", "volatility_5"), window=5)
RUN = dt.date(2023, 6, 30)


@pytest.fixture(scope="module")
def rendered(inputs):
    rep = render_report(inputs, dpi=60)
    return rep


@pytest.fixture(scope="module")
def inputs():
    bars = SyntheticProvider(seed=5).fetch(["000001.SH", "600519.SH", "300750.SZ"], dt.date(2022, 1, 1), RUN)
    panel = build_features(bars, FEAT)
    s = Settings(features=FEAT).replace(train={"test_sessions": 40}, backtest={"retrain_every": 20})
    r = run_backtest(panel, bars, s, models=["persistence", "rolling_mean", "ridge"])
    decision = decide_promotion("ridge", "v1", r.forecast, "mase", None)
    fits = [{"model": "ridge", "summary": {"train_loss": [1.0, 0.8, 0.7], "valid_loss": [1.1, 0.9, 0.95], "rows": 3}}]
    return ReportInputs(
        run_date=RUN, candidate="ridge", bars=bars[["symbol", "trade_date", "close"]],
        predictions=r.predictions, forecast=r.forecast, strategy=r.strategy, equity=r.equity,
        loss_history=loss_history_from_fits(fits, "ridge"), decision=decision,
        model_card={"name": "ridge", "version": "v1"}, validation={"success": True, "rows": 100},
        fingerprint="abc123", history=history_rows(dt.date(2023, 6, 29), r.forecast, r.strategy),
    )


def test_report_has_every_figure_embedded_and_sections(rendered):
    rep = rendered
    assert set(rep.figures) == set(FIGURES) == set(rep.pngs)
    srcs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", rep.html)
    assert len(srcs) == len(FIGURES)
    for s in srcs:
        assert base64.b64decode(s)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in rep.html  # self-contained: nothing to fetch
    for text in ("Validation summary", "Model card", "abc123", "Metrics history", "★"):
        assert text in rep.html
    assert html.unescape(re.search(r"id='headline'>([^<]*)</p>", rep.html).group(1)) == rep.summary


def test_headline_sentence_states_the_comparison(inputs):
    s = headline(inputs)
    f = inputs.forecast
    assert s.endswith(".") and "\n" not in s
    assert "3 symbols, 40 sessions" in s
    assert f"{f['ridge']['mase']:.3f} vs {f['persistence']['mase']:.3f}" in s
    wins = f["ridge"]["mase"] < f["persistence"]["mase"]
    assert ("ridge beats persistence" in s) == wins
    assert ("it was promoted" in s) == inputs.decision["promote"]
    rel = abs(f["ridge"]["mase"] / f["persistence"]["mase"] - 1) * 100
    assert f"{rel:.1f} %" in s


def test_headline_for_a_losing_model_says_so(inputs):
    worse = dict(inputs.forecast, lstm={**inputs.forecast["persistence"], "mase": 1.25, "n": 80, "dm_pvalue": 0.01})
    inp = ReportInputs(**{**inputs.__dict__, "candidate": "lstm", "forecast": worse,
                          "decision": {"promote": False, "metric": "mase"}})
    s = headline(inp)
    assert "lstm does not beat persistence" in s and "25.0 % worse" in s
    assert "(significant)" in s and "not promoted" in s


def test_metrics_json_is_strict_json(rendered):
    rep = rendered
    text = json.dumps(rep.metrics, allow_nan=False)  # persistence has NaN IC: must be null
    back = json.loads(text)
    assert back["forecast"]["persistence"]["mase"] == pytest.approx(1.0)
    assert back["forecast"]["persistence"]["ic"] is None
    assert back["held_out"]["sessions"] == 40  # + tomorrow's forecast, not yet realised
    assert back["run_date"] == "2023-06-30"


def test_markdown_table_marks_best():
    rows = metrics_rows({"a": {"mase": 0.9, "rmse": 0.02}, "b": {"mase": 1.1, "rmse": 0.01}}, {})
    md = markdown_table(rows, keys=("mase", "rmse"))
    assert "| a | **0.9000** | 0.0200 |" in md
    assert "| b | 1.1000 | **0.0100** |" in md


def test_history_merge_replaces_same_run_date():
    f = {"lstm": {"mase": 1.1}, "persistence": {"mase": 1.0}}
    h1 = history_rows(dt.date(2024, 1, 2), f, {})
    h2 = history_rows(dt.date(2024, 1, 3), f, {})
    h = merge_history(merge_history(None, h1), h2)
    again = merge_history(h, history_rows(dt.date(2024, 1, 3), {"lstm": {"mase": 0.9}}, {}))
    assert len(h) == 4
    assert len(again) == 3
    assert again[again["run_date"] == dt.date(2024, 1, 3)]["mase"].tolist() == [0.9]
    assert np.isnan(h["sharpe"]).all()


def test_loss_history_from_lstm_fit_summary():
    hist = {"global": [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.2, "lr": 0.001},
                       {"epoch": 2, "train_loss": 0.9, "valid_loss": None, "lr": 0.001}]}
    fits = [{"model": "lstm", "summary": {"rows": 10, "history": hist}}]
    out = loss_history_from_fits(fits)
    assert out["train (global)"] == [1.0, 0.9]
    assert out["valid (global)"][0] == 1.2 and np.isnan(out["valid (global)"][1])


def test_loss_history_from_fits_takes_last_fit_of_model():
    fits = [{"model": "lstm", "summary": {"train_loss": [3.0]}},
            {"model": "lstm", "summary": {"train_loss": [2.0, 1.0], "best_epoch": 2, "note": "x"}},
            {"model": "ridge", "summary": {"train_loss": [9.0]}}]
    assert loss_history_from_fits(fits) == {"train_loss": [2.0, 1.0]}
    assert loss_history_from_fits(fits, "rolling_mean") == {}


def test_report_without_history_or_loss_still_renders(inputs):
    inp = ReportInputs(**{**inputs.__dict__, "history": None, "loss_history": {}, "decision": None,
                          "equity": pd.DataFrame()})
    rep = render_report(inp, dpi=40)
    assert "no promotion decision" in rep.summary
    assert len(re.findall(r"data:image/png;base64,", rep.html)) == len(FIGURES)


@pytest.mark.parametrize("basis, words", [("bootstrap", "only by default"), ("promoted", "promoted on an earlier run")])
def test_headline_says_how_a_sitting_champion_got_there(inputs, basis, words):
    worse = dict(inputs.forecast, lstm={**inputs.forecast["persistence"], "mase": 1.1, "n": 80})
    decision = {"promote": False, "metric": "mase", "candidate_version": "v1", "champion_version": "v1",
                "champion_basis": basis}
    s = headline(ReportInputs(**{**inputs.__dict__, "candidate": "lstm", "forecast": worse, "decision": decision}))
    assert words in s and "does not beat persistence" in s


def test_names_and_values_from_the_data_are_escaped_in_the_page(inputs):
    evil = "<script>alert('x')</script>"
    next_session = {"version": evil, "basis": "champion", "rows": [
        {"symbol": evil, "target_date": "2023-07-03", "pred_return": 0.001, "close": 10.0, "pred_close": 10.01}]}
    inp = ReportInputs(**{**inputs.__dict__, "candidate": evil, "fingerprint": evil, "next_session": next_session,
                          "forecast": {**inputs.forecast, evil: inputs.forecast["ridge"]},
                          "model_card": {"name": evil, "config": {"layers": evil}}, "validation": {evil: 1},
                          "links": {evil: "docs/x' onclick='alert(1)"}})
    page = render_report(inp, dpi=30).html
    assert "<script" not in page.lower() and "onclick='" not in page
    assert page.count("&lt;script&gt;") >= 7  # headline, table row, forecast, card, validation, link, fingerprint
    assert "href='docs/x&#39; onclick=&#39;alert(1)'" in page
