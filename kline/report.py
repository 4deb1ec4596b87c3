"""The run report: matplotlib figures, a self-contained HTML page and a markdown summary.

Rendering only: functions here return figures, PNG bytes and text; ``tasks/report.py``
saves them under ``reports/<run_date>/`` and publishes the Prefect artifacts. Figures are
drawn on the Agg canvas without pyplot (no display, no global state).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kline.backtest import BUY_AND_HOLD, REFERENCE, TABLE_FORECAST, TABLE_STRATEGY
from kline.jsonable import jsonable as json_clean
from kline.metrics import LOWER_IS_BETTER, better, drawdown

# Figure names (PNG file stems), in page order; the first three are the seed's.
FIGURES = ("data", "loss", "result", "equity", "drawdown", "scatter", "history")
HISTORY_METRICS = ["mase", "rmse", "directional_accuracy", "ic", "r2_oos", "sharpe"]
_LABELS = {
    "n": "n", "mase": "MASE", "rmse": "RMSE", "mae": "MAE", "directional_accuracy": "Dir. acc.",
    "da_pvalue": "Dir. p", "ic": "IC", "rank_ic": "Rank IC", "r2_oos": "R² oos", "dm_stat": "DM stat",
    "dm_pvalue": "DM p", "cagr": "CAGR", "volatility": "Vol", "sharpe": "Sharpe",
    "max_drawdown": "Max DD", "calmar": "Calmar", "turnover": "Turnover/yr", "hit_rate": "Hit rate",
    "costs": "Costs",
}
# Metrics where the best value is marked, and which way is best.
_MARKED = {"mase", "rmse", "mae", "directional_accuracy", "ic", "rank_ic", "r2_oos", "cagr", "sharpe",
           "max_drawdown", "calmar"}


@dataclass
class ReportInputs:
    """What one run date's report shows. Frames are small: the held-out predictions and the
    report symbols' bars; everything else is JSON-able dicts."""

    run_date: dt.date
    candidate: str  # the model the report is about (normally "lstm")
    bars: pd.DataFrame  # symbol, trade_date, close: price history (data.png, result.png)
    predictions: pd.DataFrame  # PREDICTION_COLUMNS + realised, every model
    forecast: dict[str, dict[str, float]]  # model -> forecast metrics
    strategy: dict[str, dict[str, float]]  # model / buy_and_hold -> strategy metrics
    equity: pd.DataFrame  # index trade_date, one column per strategy
    loss_history: dict[str, list[float]] = field(default_factory=dict)  # series -> per epoch
    decision: dict | None = None  # kline.backtest.decide_promotion
    model_card: dict | None = None
    validation: dict | None = None  # the run's validation summary
    fingerprint: str = ""  # data fingerprint of the curated input
    history: pd.DataFrame | None = None  # metrics history (history_rows), earlier run dates
    next_session: dict | None = None  # {version, basis, rows: [{symbol, target_date, pred_return, close, pred_close}]}
    links: dict[str, str] = field(default_factory=dict)  # label -> URL relative to the report (Data Docs)


@dataclass
class Report:
    figures: dict[str, Figure]
    pngs: dict[str, bytes]  # the same figures rendered once, as embedded in the page
    summary: str  # the one plain sentence
    summary_markdown: str
    html: str
    metrics: dict  # JSON-able, what metrics.json holds


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def loss_history_from_fits(fits: Sequence[dict], model: str = "lstm") -> dict[str, list[float]]:
    """Per-epoch loss series of the last fit of ``model``: the LSTM's ``history`` (model key
    -> per-epoch dicts with ``train_loss``/``valid_loss``; at most 3 keys shown), else every
    list of numbers in its summary whose key mentions "loss"."""
    for f in reversed(list(fits)):
        if f.get("model") != model:
            continue
        out: dict[str, list[float]] = {}
        hist = (f.get("summary") or {}).get("history")
        if isinstance(hist, dict):
            for key in sorted(hist)[:3]:
                epochs = hist[key] if isinstance(hist[key], list) else []
                for part in ("train", "valid"):
                    vals = [e.get(f"{part}_loss") for e in epochs if isinstance(e, dict)]
                    if any(v is not None for v in vals):
                        out[f"{part} ({key})"] = [math.nan if v is None else float(v) for v in vals]
            return out
        for k, v in (f.get("summary") or {}).items():
            if "loss" in k and isinstance(v, list) and v and all(isinstance(x, int | float) for x in v):
                out[k] = [float(x) for x in v]
        return out
    return {}


# -- the sentence -----------------------------------------------------------------------------


def headline(inp: ReportInputs) -> str:
    """One plain sentence: does the candidate beat persistence on held-out data, by how much,
    and was it promoted."""
    metric = (inp.decision or {}).get("metric", "mase")
    cand, ref = inp.forecast.get(inp.candidate), inp.forecast.get(REFERENCE)
    if not cand or not ref:
        return f"No held-out comparison of {inp.candidate} with {REFERENCE} is available for this run."
    v, r = cand.get(metric, math.nan), ref.get(metric, math.nan)
    n = cand.get("n", 0)
    known = inp.predictions[inp.predictions["realised"].notna() & (inp.predictions["model"] == inp.candidate)]
    dates = pd.to_datetime(known["trade_date"])
    span = ""
    if len(dates):
        span = (f" ({known['symbol'].nunique()} symbols, {dates.nunique()} sessions "
                f"{dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d})")
    label = _LABELS.get(metric, metric)
    if not (np.isfinite(v) and np.isfinite(r)):
        verdict = f"{inp.candidate}'s {label} cannot be compared with {REFERENCE}'s"
    else:
        rel = abs(v / r - 1) * 100 if r else math.nan
        wins = better(metric, v, r)
        verdict = (f"{inp.candidate} {'beats' if wins else 'does not beat'} {REFERENCE} "
                   f"(\"tomorrow = today\"): {label} {v:.3f} vs {r:.3f}, "
                   f"{rel:.1f} % {'better' if wins else 'worse'}")
        dm_p = cand.get("dm_pvalue", math.nan)
        if np.isfinite(dm_p):
            verdict += f", Diebold-Mariano p = {dm_p:.2f}" + (" (significant)" if dm_p < 0.05 else " (not significant)")
    d = inp.decision
    if d is None:
        promo = "no promotion decision was made"
    elif d.get("promote"):
        promo = f"it was promoted to champion ({d.get('candidate_version')})"
    elif d.get("champion_version") and d.get("champion_version") == d.get("candidate_version"):
        if d.get("champion_basis") == "bootstrap":
            promo = (f"it is the champion ({d.get('candidate_version')}) only by default, as the first "
                     "registered version, never promoted on merit")
        else:
            promo = f"it is already the champion ({d.get('candidate_version')}), promoted on an earlier run"
    else:
        promo = "it was not promoted" + (f" (champion stays {d['champion_version']})" if d.get("champion_version") else "")
    return f"On {n} held-out next-session returns{span}, {verdict}; {promo}."


# -- figures ----------------------------------------------------------------------------------


def _figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas, outside pyplot: no display, no global figure registry."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _empty(fig: Figure, text: str) -> Figure:
    ax = fig.add_subplot(111)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    return fig


def fig_data(bars: pd.DataFrame) -> Figure:
    """Close price history, one panel per symbol (the seed's data.png)."""
    syms = sorted(bars["symbol"].unique()) if len(bars) else []
    if not syms:
        return _empty(_figure((10, 3)), "no bars")
    cols = min(3, len(syms))
    rows = math.ceil(len(syms) / cols)
    fig = _figure((4.2 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, s in zip(axes.flat, syms, strict=False):
        b = bars[bars["symbol"] == s]
        ax.plot(pd.to_datetime(b["trade_date"]), b["close"], lw=0.8)
        ax.set_title(s, fontsize=10)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", labelrotation=30)
    for ax in list(axes.flat)[len(syms):]:
        ax.set_axis_off()
    fig.suptitle("Close price history")
    fig.tight_layout()
    return fig


def fig_loss(loss_history: dict[str, list[float]]) -> Figure:
    """Training and validation loss per epoch of the last LSTM fit (the seed's loss.png)."""
    fig = _figure((7, 3.5))
    if not loss_history:
        return _empty(fig, "no LSTM loss history in this run")
    ax = fig.add_subplot(111)
    for k, v in loss_history.items():
        ax.plot(range(1, len(v) + 1), v, label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (scaled target)")
    ax.set_title("LSTM loss curves (last walk-forward fit)")
    ax.legend()
    return fig


def fig_result(bars: pd.DataFrame, predictions: pd.DataFrame, model: str, symbol: str | None = None) -> Figure:
    """Real close vs the close implied by ``model``'s predictions, held-out span shaded (the
    seed's result.png), with the predicted vs realised *returns* below, which a price-level
    plot hides."""
    p = predictions[predictions["model"] == model]
    if p.empty:
        return _empty(_figure((10, 5)), f"no {model} predictions")
    symbol = symbol or sorted(p["symbol"].unique())[0]
    p = p[p["symbol"] == symbol].sort_values("trade_date")
    b = bars[bars["symbol"] == symbol].sort_values("trade_date")
    fig = _figure((10, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    bd = pd.to_datetime(b["trade_date"])
    ax1.plot(bd, b["close"], lw=0.8, color="black", label="real close")
    closes = b.set_index(pd.to_datetime(b["trade_date"]))["close"]
    dec = pd.to_datetime(p["trade_date"])
    base = closes.reindex(dec).to_numpy()
    ax1.plot(pd.to_datetime(p["target_date"]), base * np.exp(p["pred_return"].to_numpy()), lw=0.8,
             color="tab:red", label=f"{model}: predicted next close")
    start = dec.min()
    for ax in (ax1, ax2):
        ax.axvspan(start, bd.max(), color="tab:blue", alpha=0.07)
        ax.axvline(start, color="tab:blue", ls="--", lw=1)
    ax1.text(start, ax1.get_ylim()[1], " held-out (walk-forward) ", va="top", fontsize=8, color="tab:blue")
    ax1.set_title(f"{symbol}: prediction vs real, train | test split at {start:%Y-%m-%d}")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.plot(dec, p["realised"], lw=0.7, color="black", label="realised return")
    ax2.plot(dec, p["pred_return"], lw=0.9, color="tab:red", label="predicted return")
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set_ylabel("log return")
    ax2.legend(loc="upper left", fontsize=8)
    ax1.set_xlim(bd.min(), bd.max())
    fig.autofmt_xdate()
    return fig


def fig_equity(equity: pd.DataFrame) -> Figure:
    """Equity of each strategy / starting equity, against buy-and-hold."""
    fig = _figure((10, 4))
    if equity.empty:
        return _empty(fig, "no simulation")
    ax = fig.add_subplot(111)
    idx = pd.to_datetime(pd.Series(equity.index))
    for c in equity.columns:
        e = equity[c].to_numpy(float)
        ax.plot(idx, e / e[0], lw=1.6 if c == BUY_AND_HOLD else 1.0,
                ls="--" if c == BUY_AND_HOLD else "-", label=c)
    ax.axhline(1, color="grey", lw=0.5)
    ax.set_ylabel("equity / start")
    ax.set_title("Long/flat strategies after A-share costs vs buy-and-hold")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def fig_drawdown(equity: pd.DataFrame) -> Figure:
    fig = _figure((10, 3))
    if equity.empty:
        return _empty(fig, "no simulation")
    ax = fig.add_subplot(111)
    idx = pd.to_datetime(pd.Series(equity.index))
    for c in equity.columns:
        ax.plot(idx, drawdown(equity[c]).to_numpy() * 100, lw=1.0, label=c)
    ax.set_ylabel("drawdown %")
    ax.set_title("Drawdown from running peak")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


def fig_scatter(predictions: pd.DataFrame, model: str) -> Figure:
    """Predicted vs realised next-session log returns of ``model`` on held-out data."""
    fig = _figure((5.5, 5))
    p = predictions[(predictions["model"] == model) & predictions["realised"].notna()]
    if p.empty:
        return _empty(fig, f"no scored {model} predictions")
    ax = fig.add_subplot(111)
    ax.scatter(p["pred_return"], p["realised"], s=6, alpha=0.5)
    lim = float(np.nanmax(np.abs(p["realised"]))) if len(p) else 0.05
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.plot([-lim, lim], [-lim, lim], color="tab:red", lw=0.8, label="perfect forecast")
    ax.set_xlabel("predicted log return")
    ax.set_ylabel("realised log return")
    ax.set_title(f"{model}: predicted vs realised (held-out)")
    ax.legend(fontsize=8)
    return fig


def fig_history(history: pd.DataFrame | None, metric: str = "mase") -> Figure:
    """``metric`` per model across run dates (model decay)."""
    fig = _figure((10, 3.5))
    if history is None or history.empty or metric not in history:
        return _empty(fig, "no metrics history yet")
    ax = fig.add_subplot(111)
    for m, g in history.sort_values("run_date").groupby("model"):
        ax.plot(pd.to_datetime(g["run_date"]), g[metric], marker="o", ms=3, label=m)
    if metric == "mase":
        ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.set_title(f"{_LABELS.get(metric, metric)} by run date")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return fig


# -- tables, history, page ----------------------------------------------------------------------


def metrics_rows(forecast: dict, strategy: dict) -> list[dict]:
    """One row per model (and buy-and-hold): headline forecast and strategy metrics."""
    names = sorted(forecast) + ([BUY_AND_HOLD] if BUY_AND_HOLD in strategy else [])
    rows = []
    for n in names:
        f, s = forecast.get(n, {}), strategy.get(n, {})
        rows.append({"model": n, **{k: f.get(k) for k in TABLE_FORECAST}, **{k: s.get(k) for k in TABLE_STRATEGY}})
    return rows


def best_marks(rows: list[dict]) -> dict[str, str]:
    """Metric -> the model with its best value (only metrics where "best" means something)."""
    out = {}
    for k in _MARKED:
        vals = {r["model"]: r.get(k) for r in rows if r.get(k) is not None and np.isfinite(r.get(k))}
        best = None
        for m in sorted(vals):
            if best is None or better(k, vals[m], vals[best]):  # drawdowns are <= 0: higher is better
                best = m
        if best is not None:
            out[k] = best
    return out


def history_rows(run_date: dt.date, forecast: dict, strategy: dict) -> pd.DataFrame:
    """This run's headline metrics, one row per model, to append to the metrics history."""
    rows = []
    for m in sorted(forecast):
        r = {"run_date": run_date, "model": m}
        for k in HISTORY_METRICS:
            r[k] = (strategy if k == "sharpe" else forecast).get(m, {}).get(k, math.nan)
        rows.append(r)
    df = pd.DataFrame(rows, columns=["run_date", "model", *HISTORY_METRICS])
    return df.astype({k: "float64" for k in HISTORY_METRICS})


def merge_history(history: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """``history`` with ``new``'s run dates replaced (re-running a date leaves it once)."""
    if history is None or history.empty:
        return new.reset_index(drop=True)
    keep = history[~history["run_date"].isin(set(new["run_date"]))]
    out = pd.concat([keep, new], ignore_index=True)
    return out.sort_values(["run_date", "model"], kind="stable").reset_index(drop=True)


def _fmt(k: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if k in ("n", "trades") or isinstance(v, int):
        return f"{int(v)}"
    if k in ("cagr", "volatility", "max_drawdown", "directional_accuracy", "hit_rate"):
        return f"{v * 100:.2f} %"
    if k == "costs":
        return f"{v:,.0f}"
    if k in ("da_pvalue", "dm_pvalue"):
        return f"{v:.3f}"
    return f"{v:.4f}"


def markdown_table(rows: list[dict], keys: Sequence[str] = ("mase", "rmse", "directional_accuracy",
                                                             "ic", "r2_oos", "dm_pvalue", "cagr", "sharpe")) -> str:
    marks = best_marks(rows)
    head = "| model | " + " | ".join(_LABELS[k] for k in keys) + " |"
    sep = "|---" * (len(keys) + 1) + "|"
    lines = [head, sep]
    for r in rows:
        cells = []
        for k in keys:
            s = _fmt(k, r.get(k))
            cells.append(f"**{s}**" if marks.get(k) == r["model"] else s)
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _html_table(rows: list[dict], keys: Sequence[str]) -> str:
    marks = best_marks(rows)
    out = ["<table class='metrics'><thead><tr><th>model</th>"]
    out += [f"<th>{html.escape(_LABELS.get(k, k))}</th>" for k in keys]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append(f"<tr><td>{html.escape(r['model'])}</td>")
        for k in keys:
            s = html.escape(_fmt(k, r.get(k)))
            out.append(f"<td class='best'>{s} ★</td>" if marks.get(k) == r["model"] else f"<td>{s}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(d: dict | None) -> str:
    if not d:
        return "<p>none recorded</p>"
    rows = []
    for k, v in d.items():
        val = json.dumps(json_clean(v), ensure_ascii=False, indent=1) if isinstance(v, dict | list) else str(v)
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td><pre>{html.escape(val)}</pre></td></tr>")
    return "<table class='kv'>" + "".join(rows) + "</table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
.headline{font-size:1.25em;padding:.8em 1em;border-left:5px solid #c33;background:#fbf3f3}
.headline.good{border-color:#2a7;background:#f0faf4}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child,.kv th{text-align:left}
td.best{font-weight:bold;background:#eef7ee}
.kv pre{margin:0;text-align:left;white-space:pre-wrap;font-size:.95em}
img{max-width:100%;display:block;margin:.5em 0 1.5em}
"""


def render_html(inp: ReportInputs, figures_png: dict[str, bytes], sentence: str, rows: list[dict]) -> str:
    """The self-contained page: every figure embedded as a base64 data URI."""
    good = bool(inp.decision and inp.decision.get("promote"))

    def img(name: str, alt: str) -> str:
        b64 = base64.b64encode(figures_png[name]).decode("ascii")
        return f"<img id='fig-{name}' alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"

    forecast_keys = list(TABLE_FORECAST)
    strategy_keys = list(TABLE_STRATEGY)
    hist = ""
    if inp.history is not None and not inp.history.empty:
        h = inp.history.sort_values(["run_date", "model"])
        hist = h.to_html(index=False, float_format=lambda x: f"{x:.4f}", na_rep="–", classes="history")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>kline report {inp.run_date.isoformat()}</title><style>{_CSS}</style></head><body>",
        f"<h1>kline daily report — {inp.run_date.isoformat()}</h1>",
        f"<p class='headline{' good' if good else ''}' id='headline'>{html.escape(sentence)}</p>",
        f"<p class='provisional'>{html.escape(calendar_note(inp.next_session))}</p>" if calendar_note(inp.next_session) else "",
        _links_html(inp.links),
        "<h2>Forecast metrics (held-out, walk-forward; ★ best)</h2>",
        "<p>MASE: MAE / MAE of the random walk (predicted return 0) on the same sessions; "
        "R² oos against a zero forecast; DM: Diebold-Mariano vs the random walk (absolute loss), "
        "negative = better.</p>",
        _html_table(rows, forecast_keys),
        "<h2>Trading simulation (long/flat, A-share rules and costs)</h2>",
        "<p>CAGR on ACT/365.25 calendar days; Sharpe with zero risk-free rate; costs in currency.</p>",
        _html_table(rows, strategy_keys),
        "<h2>Promotion decision</h2>", _kv_table(inp.decision),
        _next_session_html(inp.next_session),
        "<h2>What the seed produced</h2>",
        img("data", "price history"), img("loss", "loss curves"), img("result", "prediction vs real"),
        "<h2>Held-out evaluation</h2>",
        img("scatter", "predicted vs realised"), img("equity", "equity curves"), img("drawdown", "drawdown"),
        "<h2>Metrics history</h2>", img("history", "metrics history"), hist,
        "<h2>Validation summary</h2>", _kv_table(inp.validation),
        "<h2>Model card</h2>", _kv_table(inp.model_card),
        f"<h2>Data fingerprint</h2><p><code>{html.escape(inp.fingerprint or 'n/a')}</code></p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def calendar_note(fc: dict | None) -> str:
    """One line when the run or its forecast sits past the published calendar, else ''."""
    cal = (fc or {}).get("calendar") or {}
    if not (fc or {}).get("provisional"):
        return ""
    return (f"PROVISIONAL CALENDAR: sessions after {cal.get('known_through')} are assumed "
            f"({cal.get('calendar')} known through then from {cal.get('source')}; weekdays minus fixed-date "
            "closures until the exchange's holidays are published). The run date or the forecast's "
            "session may not be a trading day.")


def _links_html(links: dict[str, str]) -> str:
    if not links:
        return ""
    items = " · ".join(f"<a href='{html.escape(url)}'>{html.escape(label)}</a>" for label, url in links.items())
    return f"<p id='links'>{items}</p>"


def _next_session_html(fc: dict | None) -> str:
    """The forecast the run publishes, with the caveat the evaluation above earns it."""
    if not fc or not fc.get("rows"):
        return ""
    note = calendar_note(fc)
    rows = [{"symbol": r["symbol"], "for session": r["target_date"] + (" (provisional)" if r.get("provisional") else ""),
             "close": f"{r['close']:.2f}",
             "predicted log return": f"{r['pred_return']:+.5f}", "predicted close": f"{r['pred_close']:.2f}"}
            for r in fc["rows"]]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return (f"<h2>Next-session forecast</h2><p>By {html.escape(str(fc.get('basis')))} "
            f"<code>{html.escape(str(fc.get('version')))}</code>. Read it with the held-out comparison "
            "above: a model that does not beat persistence there adds nothing to \"tomorrow = today\".</p>"
            + (f"<p class='provisional' id='calendar-note'><b>{html.escape(note)}</b></p>" if note else "")
            + f"<table><tr>{head}</tr>{body}</table>")


def render_report(inp: ReportInputs, dpi: int = 100) -> Report:
    """All figures, the sentence, the markdown summary, the HTML page and metrics.json's content."""
    figs = {
        "data": fig_data(inp.bars),
        "loss": fig_loss(inp.loss_history),
        "result": fig_result(inp.bars, inp.predictions, inp.candidate),
        "equity": fig_equity(inp.equity),
        "drawdown": fig_drawdown(inp.equity),
        "scatter": fig_scatter(inp.predictions, inp.candidate),
        "history": fig_history(inp.history),
    }
    pngs = {k: figure_png(f, dpi) for k, f in figs.items()}
    sentence = headline(inp)
    rows = metrics_rows(inp.forecast, inp.strategy)
    md = f"# kline report {inp.run_date.isoformat()}\n\n{sentence}\n\n{markdown_table(rows)}\n"
    if inp.decision:
        md += f"\nPromotion: {'yes' if inp.decision.get('promote') else 'no'} — {inp.decision.get('reason', '')}\n"
    if calendar_note(inp.next_session):
        md += f"\n**{calendar_note(inp.next_session)}**\n"
    if inp.next_session and inp.next_session.get("rows"):
        md += (f"\nNext-session forecast ({inp.next_session.get('basis')} {inp.next_session.get('version')}): "
               + ", ".join(f"{r['symbol']} {r['pred_return']:+.4f}" for r in inp.next_session["rows"]) + "\n")
    known = inp.predictions[inp.predictions["realised"].notna()]
    metrics = json_clean({
        "run_date": inp.run_date,
        "candidate": inp.candidate,
        "summary": sentence,
        "held_out": {
            "sessions": int(known["trade_date"].nunique()) if len(known) else 0,
            "start": min(known["trade_date"]) if len(known) else None,
            "end": max(known["trade_date"]) if len(known) else None,
        },
        "forecast": inp.forecast,
        "strategy": inp.strategy,
        "decision": inp.decision,
        "next_session": inp.next_session,
        "provisional": bool((inp.next_session or {}).get("provisional")),
        "fingerprint": inp.fingerprint,
        "lower_is_better": sorted(LOWER_IS_BETTER),
    })
    page = render_html(inp, pngs, sentence, rows)
    return Report(figs, pngs, sentence, md, page, metrics)
