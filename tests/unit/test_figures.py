import datetime as dt

import numpy as np
import pandas as pd

from kline.backtest import BUY_AND_HOLD
from kline.figures import (
    DATA_PANELS,
    fig_data,
    fig_equity,
    fig_history,
    fig_loss,
    figure_png,
    line_figure,
)


def test_line_figure_draws_labelled_lines_a_reference_and_a_legend():
    fig = line_figure((4, 3), [("a", [1, 2, 3], [1.0, 2.0, 3.0], {"lw": 2}), ("b", [1, 2], [0.5, 0.5], {})],
                      empty="nothing", title="T", ylabel="y", xlabel="x", hline={"y": 1, "color": "grey"},
                      dates=False)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3 and [line.get_label() for line in ax.get_lines()][:2] == ["a", "b"]
    assert ax.get_lines()[0].get_linewidth() == 2 and list(ax.get_lines()[2].get_ydata()) == [1, 1]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("T", "x", "y")
    assert figure_png(fig, dpi=30)[:4] == b"\x89PNG"


def test_line_figure_without_lines_says_so():
    (ax,) = line_figure((4, 3), [], empty="no simulation", title="T", ylabel="y").axes
    assert [t.get_text() for t in ax.texts] == ["no simulation"] and not ax.get_lines()


def test_equity_is_relative_to_start_with_buy_and_hold_dashed():
    idx = [dt.date(2024, 1, d) for d in (2, 3, 4)]
    eq = pd.DataFrame({"ridge": [100.0, 110.0, 99.0], BUY_AND_HOLD: [50.0, 55.0, 60.0]}, index=idx)
    ax = fig_equity(eq).axes[0]
    ridge, hold = ax.get_lines()[:2]
    assert np.allclose(ridge.get_ydata(), [1.0, 1.1, 0.99]) and np.allclose(hold.get_ydata(), [1.0, 1.1, 1.2])
    assert hold.get_linestyle() == "--" and ridge.get_linestyle() == "-"
    assert [t.get_text() for t in fig_equity(eq.iloc[:0]).axes[0].texts] == ["no simulation"]


def test_history_and_loss_figures():
    h = pd.DataFrame({"run_date": [dt.date(2024, 1, 3), dt.date(2024, 1, 2)] * 2,
                      "model": ["lstm", "lstm", "persistence", "persistence"], "mase": [1.2, 1.1, 1.0, 1.0]})
    ax = fig_history(h, "mase", "MASE").axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["lstm", "persistence"]
    assert list(ax.get_lines()[0].get_ydata()) == [1.1, 1.2]  # in run-date order
    assert ax.get_ylabel() == "MASE" and ax.get_title() == "MASE by run date"
    assert [t.get_text() for t in fig_history(None).axes[0].texts] == ["no metrics history yet"]
    loss = fig_loss({"train": [1.0, 0.5]}).axes[0]
    assert list(loss.get_lines()[0].get_xdata()) == [1, 2] and loss.get_xlabel() == "epoch"


def test_the_data_figure_draws_a_bounded_number_of_symbols_and_says_so():
    days = [dt.date(2024, 1, d) for d in (2, 3, 4)]
    syms = [f"6000{i:02d}.SH" for i in range(DATA_PANELS + 8)]
    bars = pd.DataFrame([(s, d, 10.0 + i) for s in syms for i, d in enumerate(days)],
                        columns=["symbol", "trade_date", "close"])
    fig = fig_data(bars)
    drawn = [ax.get_title() for ax in fig.axes if ax.get_lines()]
    assert drawn == syms[:DATA_PANELS]
    assert fig._suptitle.get_text() == f"Close price history ({DATA_PANELS} of {len(syms)} symbols)"
    assert fig_data(bars[bars.symbol.isin(syms[:2])])._suptitle.get_text() == "Close price history"
