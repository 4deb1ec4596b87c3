"""The report's matplotlib figures, drawn on the Agg canvas without pyplot (no display, no
global state). Each function returns a Figure; an empty input gives a figure that says so."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kline.backtest import BUY_AND_HOLD
from kline.metrics import drawdown

# Figure names (PNG file stems), in page order; the first three are the seed's.
FIGURES = ("data", "loss", "result", "equity", "drawdown", "scatter", "history")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


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


def line_figure(
    size: tuple[float, float], lines: list[tuple[str, object, object, dict]], *, empty: str, title: str,
    ylabel: str, xlabel: str | None = None, hline: dict | None = None, legend_size: float | None = 8,
    dates: bool = True,
) -> Figure:
    """One axis of labelled lines ``(label, x, y, plot kwargs)``, an optional horizontal
    reference line (``axhline`` kwargs), a legend, and slanted x labels when x holds dates;
    without lines, a figure that says ``empty``."""
    fig = _figure(size)
    if not lines:
        return _empty(fig, empty)
    ax = fig.add_subplot(111)
    for label, x, y, style in lines:
        ax.plot(x, y, label=label, **style)
    if hline is not None:
        ax.axhline(**hline)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    if dates:
        fig.autofmt_xdate()
    return fig


DATA_PANELS = 12  # data.png draws at most this many symbols (300 panels took ~1 min and 7 MB)


def fig_data(bars: pd.DataFrame, max_panels: int = DATA_PANELS) -> Figure:
    """Close price history, one panel per symbol (the seed's data.png), for the first
    ``max_panels`` symbols in code order; the title says how many are left out."""
    every = sorted(bars["symbol"].unique()) if len(bars) else []
    if not every:
        return _empty(_figure((10, 3)), "no bars")
    syms = every[:max_panels]
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
    fig.suptitle("Close price history" + (f" ({len(syms)} of {len(every)} symbols)" if len(every) > len(syms) else ""))
    fig.tight_layout()
    return fig


def fig_loss(loss_history: dict[str, list[float]]) -> Figure:
    """Training and validation loss per epoch of the last LSTM fit (the seed's loss.png)."""
    lines = [(k, range(1, len(v) + 1), v, {}) for k, v in loss_history.items()]
    return line_figure((7, 3.5), lines, empty="no LSTM loss history in this run", xlabel="epoch",
                       ylabel="loss (scaled target)", title="LSTM loss curves (last walk-forward fit)",
                       legend_size=None, dates=False)


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


def _strategies(equity: pd.DataFrame) -> list[str]:
    return [] if equity.empty else list(equity.columns)  # no sessions simulated: nothing to draw


def fig_equity(equity: pd.DataFrame) -> Figure:
    """Equity of each strategy / starting equity, against buy-and-hold."""
    idx = pd.to_datetime(pd.Series(equity.index))
    lines = []
    for c in _strategies(equity):
        e = equity[c].to_numpy(float)
        lines.append((c, idx, e / e[0], {"lw": 1.6, "ls": "--"} if c == BUY_AND_HOLD else {"lw": 1.0, "ls": "-"}))
    return line_figure((10, 4), lines, empty="no simulation", ylabel="equity / start",
                       title="Long/flat strategies after A-share costs vs buy-and-hold",
                       hline={"y": 1, "color": "grey", "lw": 0.5})


def fig_drawdown(equity: pd.DataFrame) -> Figure:
    """Drawdown (%) of each strategy from its running peak."""
    idx = pd.to_datetime(pd.Series(equity.index))
    lines = [(c, idx, drawdown(equity[c]).to_numpy() * 100, {"lw": 1.0}) for c in _strategies(equity)]
    return line_figure((10, 3), lines, empty="no simulation", title="Drawdown from running peak",
                       ylabel="drawdown %")


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


def fig_history(history: pd.DataFrame | None, metric: str = "mase", label: str | None = None) -> Figure:
    """``metric`` (shown as ``label``) per model across run dates (model decay)."""
    lines = [] if history is None or metric not in history else [
        (m, pd.to_datetime(g["run_date"]), g[metric], {"marker": "o", "ms": 3})
        for m, g in history.sort_values("run_date").groupby("model")]
    ref = {"y": 1.0, "color": "grey", "ls": "--", "lw": 0.8} if metric == "mase" else None
    return line_figure((10, 3.5), lines, empty="no metrics history yet", title=f"{label or metric} by run date",
                       ylabel=label or metric, hline=ref)
