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
import hashlib
import json
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from kline.config import TrainConfig

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


FORECASTERS = ("lstm", *BASELINES)  # the classes are in kline.zoo


def date_mask(trade_dates: np.ndarray, dates: Sequence[dt.date] | None) -> np.ndarray:
    """Which rows (``datetime64[D]`` or date values) fall on one of ``dates`` (all if None)."""
    td = pd.to_datetime(pd.Series(trade_dates)).to_numpy().astype("datetime64[D]")
    if dates is None:
        return np.ones(len(td), dtype=bool)
    wanted = np.array([np.datetime64(d, "D") for d in dates], dtype="datetime64[D]")
    return np.isin(td, wanted)


def prediction_frame(
    symbol: np.ndarray,
    trade_date: np.ndarray,
    target_date: np.ndarray,
    pred_return: np.ndarray,
    model: str,
    version: str,
    train_end: dt.date | None,
) -> pd.DataFrame:
    """Assemble a frame with ``PREDICTION_COLUMNS`` (dates as ``datetime.date``), sorted by
    (symbol, trade_date); rows with a non-finite prediction are dropped."""
    out = pd.DataFrame(
        {
            "symbol": np.asarray(symbol, dtype=object),
            "trade_date": pd.to_datetime(pd.Series(trade_date)).dt.date.to_numpy(),
            "target_date": pd.to_datetime(pd.Series(target_date)).dt.date.to_numpy(),
            "pred_return": np.asarray(pred_return, dtype="float64"),
            "model": model,
            "version": version,
            "train_end": train_end,
        }
    )
    out = out[np.isfinite(out["pred_return"].to_numpy())]
    return out.sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True)[PREDICTION_COLUMNS]


def params_version(name: str, params: dict) -> str:
    """Content hash naming a fitted baseline (its name, parameters and fitted state)."""
    blob = json.dumps({"name": name, **params}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def held_out_count(panel: pd.DataFrame, train: TrainConfig) -> int:
    """Sessions with a known target to hold out: ``train.test_fraction`` of them when set
    (at least one), else ``train.test_sessions``; at most half, so training keeps data."""
    known = panel.loc[np.isfinite(panel["target"].to_numpy("float64")), "trade_date"].nunique()
    n = max(1, int(round(train.test_fraction * known))) if train.test_fraction > 0 else train.test_sessions
    return max(0, min(n, known // 2))


def held_out_dates(panel: pd.DataFrame, sessions: int) -> list[dt.date]:
    """The held-out tail: the last ``sessions`` decision dates with a known target (at most
    half of them) plus any later date (tomorrow's forecast); empty when none can be held out.
    Its first date is the leakage boundary ``train_end`` the train stage fits up to."""
    td = pd.to_datetime(panel["trade_date"]).to_numpy().astype("datetime64[D]")
    known = np.unique(td[np.isfinite(panel["target"].to_numpy("float64"))])
    n = min(sessions, len(known) // 2)
    if n < 1:
        return []
    return [pd.Timestamp(d).date() for d in np.unique(td[td >= known[len(known) - n]])]
