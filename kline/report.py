"""The run report: a self-contained HTML page, a markdown summary and metrics.json's content.

Rendering only: functions here return figures (``kline.figures``), PNG bytes and text;
``tasks/report.py`` saves them under ``reports/<run_date>/`` and publishes the Prefect
artifacts. The page is ``templates/report.html.j2``, rendered with autoescape.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from matplotlib.figure import Figure

from kline import figures
from kline.backtest import BUY_AND_HOLD, REFERENCE, TABLE_FORECAST, TABLE_STRATEGY
from kline.figures import FIGURES, figure_png
from kline.jsonable import jsonable
from kline.metrics import LOWER_IS_BETTER, better

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
    next_session: dict | None = None  # the forecast stage's: {model, version, basis, interval, rows: [...]}
    cross_section: dict | None = None  # kline.backtest.cross_section_figures
    links: dict[str, str] = field(default_factory=dict)  # label -> URL relative to the report (Data Docs)


@dataclass
class Report:
    figures: dict[str, Figure]
    pngs: dict[str, bytes]  # the same figures rendered once, as embedded in the page
    summary: str  # the one plain sentence
    summary_markdown: str
    html: str
    metrics: dict  # JSON-able, what metrics.json holds


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
    return f"On {n} held-out next-session returns{span}, {verdict}; {promotion_clause(inp.decision)}." + \
        forecast_clause(inp.next_session)


def promotion_clause(d: dict | None) -> str:
    """What the promote stage did, in words: promoted, kept, retired, or not promoted and why."""
    if d is None:
        return "no promotion decision was made"
    verdict = d.get("verdict") or {}
    retired = (f"; champion {d.get('champion_version')} was retired ({verdict.get('reason')})"
               if verdict.get("retire") else "")
    if d.get("promote"):
        return f"it was promoted to champion ({d.get('candidate_version')}): {d.get('reason')}" + retired
    if d.get("champion_version") and d.get("champion_version") == d.get("candidate_version") and not retired:
        return f"it is already the champion ({d.get('candidate_version')}), promoted on evidence on an earlier run"
    kept = f", champion stays {d['champion_version']}" if d.get("champion_version") and not retired else ""
    return f"it was not promoted ({d.get('reason', 'no reason recorded')}{kept})" + retired


def forecast_clause(fc: dict | None) -> str:
    """Which model the next-session forecast comes from, said plainly; '' without one."""
    if not fc or not fc.get("rows"):
        return ""
    if fc.get("model") == "persistence":
        return (" There is no champion, so the next-session forecast is persistence (tomorrow's close = "
                "today's): no model has shown skill over it.")
    return f" The next-session forecast is by champion {fc.get('version')}."


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


def _metrics_table(rows: list[dict], keys: Sequence[str]) -> dict:
    """Column labels and, per model, (formatted value, best in its column) for ``keys``."""
    marks = best_marks(rows)
    return {"head": [_LABELS.get(k, k) for k in keys],
            "rows": [(r["model"], [(_fmt(k, r.get(k)), marks.get(k) == r["model"]) for k in keys]) for r in rows]}


def markdown_table(rows: list[dict], keys: Sequence[str] = ("mase", "rmse", "directional_accuracy",
                                                             "ic", "r2_oos", "dm_pvalue", "cagr", "sharpe")) -> str:
    t = _metrics_table(rows, keys)
    lines = ["| model | " + " | ".join(t["head"]) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {model} | " + " | ".join(f"**{s}**" if best else s for s, best in cells) + " |"
              for model, cells in t["rows"]]
    return "\n".join(lines)


_PAGE = Environment(loader=PackageLoader("kline", "templates"), autoescape=True, undefined=StrictUndefined,
                    trim_blocks=True, lstrip_blocks=True).get_template("report.html.j2")


def _kv_items(d: dict | None) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(jsonable(v), ensure_ascii=False, indent=1) if isinstance(v, dict | list) else str(v))
            for k, v in (d or {}).items()]


def _next_session_table(fc: dict | None) -> dict | None:
    """The forecast the run publishes; the page reads it with the held-out comparison."""
    if not fc or not fc.get("rows"):
        return None
    interval = str(fc.get("interval") or "interval")
    rows = [[r["symbol"], r["target_date"] + (" (provisional)" if r.get("provisional") else ""), f"{r['close']:.2f}",
             f"{r['pred_return']:+.5f}", f"{r['pred_close']:.2f}", _price(r.get("pred_close_low")),
             _price(r.get("pred_close_high"))] for r in fc["rows"]]
    return {"basis": str(fc.get("basis")), "version": str(fc.get("version") or "–"), "model": str(fc.get("model")),
            "interval": interval, "rows": rows,
            "head": ["symbol", "for session", "close", "predicted log return", "predicted close",
                     f"low ({interval.split('-')[0]})", f"high ({interval.split('-')[-1]})"]}


def _price(v) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.2f}"


# the cross-section table: (label, key of evaluate_cross_section, format)
CROSS_SECTION_COLUMNS = [
    ("IC", "ic_mean", "{:+.4f}"), ("ICIR", "ic_ir", "{:+.3f}"), ("IC t", "ic_t", "{:+.2f}"),
    ("Rank IC", "rank_ic_mean", "{:+.4f}"), ("Rank ICIR", "rank_ic_ir", "{:+.3f}"), ("Rank IC t", "rank_ic_t", "{:+.2f}"),
    ("Excess ann. (net)", "excess_return_with_cost.annualized_return", "{:+.2%}"),
    ("IR (net)", "excess_return_with_cost.information_ratio", "{:+.2f}"),
    ("Max DD (net excess)", "excess_return_with_cost.max_drawdown", "{:.2%}"),
    ("Excess ann. (gross)", "excess_return_without_cost.annualized_return", "{:+.2%}"),
    ("Benchmark ann.", "benchmark.annualized_return", "{:+.2%}"), ("Turnover/day", "turnover_mean", "{:.2%}"),
]


def cross_section_table(cs: dict | None) -> dict | None:
    """Head and rows of the cross-sectional figures, or ``{"note": ...}`` when the universe
    is too small; None when the backtest recorded none."""
    if not cs:
        return None
    if not cs.get("models"):
        return {"note": cs.get("note", "no cross-sectional figures")}
    def cell(v, f):
        return "–" if v is None or not math.isfinite(float(v)) else f.format(float(v))
    rows = [[m, *[cell(figs.get(k), f) for _, k, f in CROSS_SECTION_COLUMNS]] for m, figs in sorted(cs["models"].items())]
    return {"head": ["model", *[label for label, _, _ in CROSS_SECTION_COLUMNS]], "rows": rows,
            "stocks": cs.get("stocks"), "topk": cs.get("topk"), "n_drop": cs.get("n_drop")}


def _history_table(history: pd.DataFrame | None) -> dict | None:
    if history is None or history.empty:
        return None
    h = history.sort_values(["run_date", "model"])
    num = [c for c in h.columns if pd.api.types.is_float_dtype(h[c])]
    rows = [[("–" if pd.isna(v) else f"{v:.4f}") if c in num else str(v) for c, v in r.items()] for _, r in h.iterrows()]
    return {"head": list(h.columns), "rows": rows}


def render_html(inp: ReportInputs, figures_png: dict[str, bytes], sentence: str, rows: list[dict]) -> str:
    """The self-contained page: every figure embedded as a base64 data URI, every value escaped."""
    return _PAGE.render(
        run_date=inp.run_date.isoformat(), sentence=sentence, promoted=bool(inp.decision and inp.decision.get("promote")),
        calendar_note=calendar_note(inp.next_session), links=inp.links,
        forecast_table=_metrics_table(rows, TABLE_FORECAST), strategy_table=_metrics_table(rows, TABLE_STRATEGY),
        decision=_kv_items(inp.decision), next_session=_next_session_table(inp.next_session),
        cross_section=cross_section_table(inp.cross_section),
        figures={k: base64.b64encode(v).decode("ascii") for k, v in figures_png.items()},
        history=_history_table(inp.history), validation=_kv_items(inp.validation),
        model_card=_kv_items(inp.model_card), fingerprint=inp.fingerprint,
    )


def calendar_note(fc: dict | None) -> str:
    """One line when the run or its forecast sits past the published calendar, else ''."""
    cal = (fc or {}).get("calendar") or {}
    if not (fc or {}).get("provisional"):
        return ""
    return (f"PROVISIONAL CALENDAR: sessions after {cal.get('known_through')} are assumed "
            f"({cal.get('calendar')} known through then from {cal.get('source')}; weekdays minus fixed-date "
            "closures until the exchange's holidays are published). The run date or the forecast's "
            "session may not be a trading day.")


def _summary_markdown(inp: ReportInputs, sentence: str, rows: list[dict]) -> str:
    md = f"# kline report {inp.run_date.isoformat()}\n\n{sentence}\n\n{markdown_table(rows)}\n"
    if inp.decision:
        md += f"\nPromotion: {'yes' if inp.decision.get('promote') else 'no'} — {inp.decision.get('reason', '')}\n"
    if note := calendar_note(inp.next_session):
        md += f"\n**{note}**\n"
    if inp.next_session and inp.next_session.get("rows"):
        fc = inp.next_session
        by = fc.get("basis") if fc.get("model") == "persistence" else f"{fc.get('basis')} {fc.get('version')}"
        md += (f"\nNext-session forecast ({by}; {fc.get('interval', 'interval')} of the walk-forward residuals): "
               + ", ".join(f"{r['symbol']} {r['pred_close']:.2f} [{_price(r.get('pred_close_low'))}, "
                           f"{_price(r.get('pred_close_high'))}]" for r in fc["rows"]) + "\n")
    cs = cross_section_table(inp.cross_section)
    if cs and "note" in cs:
        md += f"\nCross-section: {cs['note']}.\n"
    elif cs:
        md += "\nCross-section (walk-forward, stocks only):\n\n| " + " | ".join(cs["head"]) + " |\n" + \
              "|---" * len(cs["head"]) + "|\n" + "".join("| " + " | ".join(r) + " |\n" for r in cs["rows"])
    return md


def _metrics_json(inp: ReportInputs, sentence: str) -> dict:
    known = inp.predictions.loc[inp.predictions["realised"].notna(), "trade_date"]
    return jsonable({
        "run_date": inp.run_date, "candidate": inp.candidate, "summary": sentence,
        "held_out": {"sessions": int(known.nunique()) if len(known) else 0,
                     "start": min(known) if len(known) else None, "end": max(known) if len(known) else None},
        "forecast": inp.forecast, "strategy": inp.strategy, "decision": inp.decision,
        "cross_section": inp.cross_section,
        "next_session": inp.next_session, "provisional": bool((inp.next_session or {}).get("provisional")),
        "fingerprint": inp.fingerprint, "lower_is_better": sorted(LOWER_IS_BETTER),
    })


def render_report(inp: ReportInputs, dpi: int = 100) -> Report:
    """All figures, the sentence, the markdown summary, the HTML page and metrics.json's content."""
    figs = {
        "data": figures.fig_data(inp.bars),
        "loss": figures.fig_loss(inp.loss_history),
        "result": figures.fig_result(inp.bars, inp.predictions, inp.candidate),
        "equity": figures.fig_equity(inp.equity),
        "drawdown": figures.fig_drawdown(inp.equity),
        "scatter": figures.fig_scatter(inp.predictions, inp.candidate),
        "history": figures.fig_history(inp.history, "mase", _LABELS["mase"]),
    }
    pngs = {k: figure_png(figs[k], dpi) for k in FIGURES}
    sentence = headline(inp)
    rows = metrics_rows(inp.forecast, inp.strategy)
    return Report(figs, pngs, sentence, _summary_markdown(inp, sentence, rows),
                  render_html(inp, pngs, sentence, rows), _metrics_json(inp, sentence))
