"""The forecaster contract shared by the LSTM, the baselines, the backtest and the report.

A *panel* is the long feature frame built by ``kline.features``: one row per (symbol,
trade_date) with the feature columns, ``close`` (adjusted) and ``target`` (the next-session
log return, NaN on the last session of a symbol), plus ``target_date`` (the next session).

Time semantics, for every forecaster:
- ``fit(panel, train_end)`` uses only rows whose ``target_date <= train_end``: nothing after
  the leakage boundary is read, scalers included.
- ``predict(panel, dates)`` returns, for each symbol and each decision date ``d`` in
  ``dates`` (default: every row), the predicted log return from ``close[d]`` to the close of
  the next session, using inputs dated ``<= d`` only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pandas as pd

# Columns of a prediction frame (what ``Forecaster.predict`` returns).
PREDICTION_COLUMNS = [
    "symbol",
    "trade_date",  # decision date d (the window's last session)
    "target_date",  # the session whose close is predicted
    "pred_return",  # predicted log return close[d] -> close[target_date]
    "model",  # forecaster name: lstm, persistence, rolling_mean, ridge
    "version",  # model version (registry) or a content hash for baselines
    "train_end",  # the leakage boundary of the fit that produced this prediction
]

BASELINES = ("persistence", "rolling_mean", "ridge")


@runtime_checkable
class Forecaster(Protocol):
    name: str

    def fit(self, panel: pd.DataFrame, train_end: dt.date) -> dict:
        """Fit on rows with ``target_date <= train_end``; returns a small summary
        (rows used, loss history for the LSTM, wall time)."""
        ...

    def predict(self, panel: pd.DataFrame, dates: Sequence[dt.date] | None = None) -> pd.DataFrame:
        """A frame with ``PREDICTION_COLUMNS``, one row per (symbol, decision date)."""
        ...
