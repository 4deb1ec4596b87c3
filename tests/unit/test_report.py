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


def test_headline_says_how_a_sitting_champion_got_there_and_when_it_is_retired(inputs):
    worse = dict(inputs.forecast, lstm={**inputs.forecast["persistence"], "mase": 1.1, "n": 80})
    decision = {"promote": False, "metric": "mase", "candidate_version": "v1", "champion_version": "v1",
                "reason": "lstm v1 is already the champion"}
    s = headline(ReportInputs(**{**inputs.__dict__, "candidate": "lstm", "forecast": worse, "decision": decision}))
    assert "promoted on evidence on an earlier run" in s and "does not beat persistence" in s
    retired = {**decision, "candidate_version": "v2", "reason": "lstm mase 1.1000 does not beat persistence 1.0000",
               "verdict": {"retire": True, "reason": "champion mase 1.0300 no longer beats persistence 1.0000"}}
    s = headline(ReportInputs(**{**inputs.__dict__, "candidate": "lstm", "forecast": worse, "decision": retired}))
    assert "it was not promoted (lstm mase 1.1000 does not beat persistence" in s
    assert "champion v1 was retired (champion mase 1.0300 no longer beats persistence" in s
    assert "champion stays" not in s


PERSISTENCE_FORECAST = {
    "model": "persistence", "version": None, "basis": "persistence: no champion has shown skill (tomorrow = today)",
    "interval": "p10-p90", "rows": [{"symbol": "600519.SH", "target_date": "2023-07-03", "pred_return": 0.0,
                                     "close": 1700.0, "pred_close": 1700.0, "pred_close_low": 1671.5,
                                     "pred_close_high": 1729.25}]}


def test_with_no_champion_the_report_and_summary_say_the_forecast_is_persistence(inputs):
    decision = {"promote": False, "metric": "mase", "candidate_version": "v2", "champion_version": None,
                "reason": "ridge mase 1.0100 does not beat persistence 1.0000"}
    rep = render_report(ReportInputs(**{**inputs.__dict__, "decision": decision,
                                        "next_session": PERSISTENCE_FORECAST}), dpi=30)
    assert "no champion, so the next-session forecast is persistence" in rep.summary
    assert "no model has shown skill" in rep.summary and "beats persistence" not in rep.summary
    assert "class='headline'" in rep.html  # not marked good
    basis = html.unescape(re.search(r"id='forecast-basis'>(.*?)</p>", rep.html).group(1))
    assert "Persistence" in basis and "no champion" in basis and "today's close" in basis
    for cell in ("1700.00", "1671.50", "1729.25", "low (p10)", "high (p90)"):
        assert cell in rep.html
    assert "persistence: no champion" in rep.summary_markdown and "[1671.50, 1729.25]" in rep.summary_markdown


def test_cross_section_is_shown_for_a_big_universe_and_explained_for_a_small_one(inputs):
    small = {"stocks": 2, "min_stocks": 30, "topk": 50, "n_drop": 5,
             "note": "cross-sectional figures (IC, top-k portfolio) need a universe of at least 30 stocks; this one has 2"}
    rep = render_report(ReportInputs(**{**inputs.__dict__, "cross_section": small}), dpi=30)
    assert "need a universe of at least 30 stocks; this one has 2" in rep.html
    assert "need a universe of at least 30 stocks" in rep.summary_markdown and "Rank ICIR" not in rep.html
    figs = {"ic_mean": 0.031, "ic_ir": 0.25, "ic_t": 3.9, "rank_ic_mean": 0.04, "rank_ic_ir": 0.3, "rank_ic_t": 4.7,
            "excess_return_with_cost.annualized_return": 0.12, "excess_return_with_cost.information_ratio": 1.4,
            "excess_return_with_cost.max_drawdown": -0.08, "excess_return_without_cost.annualized_return": 0.2,
            "benchmark.annualized_return": 0.05, "turnover_mean": 0.1}
    big = {"stocks": 300, "min_stocks": 30, "topk": 50, "n_drop": 5,
           "models": {"lstm": figs, "persistence": {k: float("nan") for k in figs}}}
    rep = render_report(ReportInputs(**{**inputs.__dict__, "cross_section": big}), dpi=30)
    for text in ("Rank ICIR", "+0.0400", "+4.70", "+12.00%", "+1.40", "-8.00%", "300 stocks", "top-50"):
        assert text in rep.html, text
    assert "| lstm | +0.0310" in rep.summary_markdown
    assert json.loads(json.dumps(rep.metrics, allow_nan=False))["cross_section"]["stocks"] == 300


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
