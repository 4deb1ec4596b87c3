"""Baseline forecasters the LSTM must beat, under the ``kline.forecasters`` contract.

- ``persistence``: the random walk, a predicted log return of 0 (tomorrow = today).
- ``rolling_mean``: the mean of the last ``k`` log returns (drift).
- ``ridge``: ridge regression on the flattened, scaled window the LSTM reads (same
  features, same scalers fitted on ``target_date <= train_end``), closed form in numpy.

Each class is built by ``from_settings`` and restored from ``get_state()`` by ``from_state``
(``kline.zoo``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kline.config import FeatureConfig, TrainConfig
from kline.features import (
    Scaler,
    feature_columns,
    make_windows,
    prepare,
    to_log_return,
    train_mask,
)
from kline.forecasters import date_mask, params_version, prediction_frame


def _log_returns(panel: pd.DataFrame) -> np.ndarray:
    """Per row, log(close[t] / close[t-1]) within its symbol (NaN on a symbol's first row)."""
    sym = panel["symbol"].to_numpy()
    lc = np.log(panel["close"].to_numpy("float64"))
    r = np.full(len(lc), np.nan)
    r[1:] = lc[1:] - lc[:-1]
    r[1:][sym[1:] != sym[:-1]] = np.nan
    return r


class _NothingToLearn:
    """Fit for baselines whose parameters are all given (``_params``): it only records the
    leakage boundary."""

    name: str
    train_end: dt.date | None = None

    def _params(self) -> dict:
        return {}

    @classmethod
    def from_settings(cls, features: FeatureConfig, train: TrainConfig) -> _NothingToLearn:
        return cls()

    @property
    def version(self) -> str:
        return params_version(self.name, self._params())

    def fit(self, panel: pd.DataFrame, train_end: dt.date) -> dict:
        """Nothing to learn; records the boundary."""
        self.train_end = train_end
        return {"rows": int(train_mask(panel, train_end).sum()), "wall_s": 0.0}

    def get_state(self) -> dict:
        return {**self._params(), "train_end": self.train_end.isoformat() if self.train_end else None}

    @classmethod
    def from_state(cls, state: dict, features: FeatureConfig | None, weights: None = None) -> _NothingToLearn:
        """The baseline ``get_state()`` described."""
        f = cls(**{k: v for k, v in state.items() if k != "train_end"})
        f.train_end = dt.date.fromisoformat(state["train_end"]) if state.get("train_end") else None
        return f


class PersistenceForecaster(_NothingToLearn):
    """Predicts a log return of zero for every row (the random walk)."""

    name = "persistence"

    def predict(self, panel: pd.DataFrame, dates: Sequence[dt.date] | None = None) -> pd.DataFrame:
        m = date_mask(panel["trade_date"].to_numpy(), dates)
        p = panel[m]
        return prediction_frame(p["symbol"].to_numpy(), p["trade_date"].to_numpy(), p["target_date"].to_numpy(),
                                np.zeros(len(p)), self.name, self.version, self.train_end)


class RollingMeanForecaster(_NothingToLearn):
    """Predicts the mean of the last ``k`` log returns up to and including ``d``; rows with
    fewer than ``k`` returns of history get no prediction."""

    name = "rolling_mean"

    def __init__(self, k: int = 20) -> None:
        if k < 1:
            raise ValueError(f"rolling_mean needs k >= 1, got {k}")
        self.k = int(k)

    def _params(self) -> dict:
        return {"k": self.k}

    @classmethod
    def from_settings(cls, features: FeatureConfig, train: TrainConfig) -> RollingMeanForecaster:
        return cls(k=train.rolling_k)

    def predict(self, panel: pd.DataFrame, dates: Sequence[dt.date] | None = None) -> pd.DataFrame:
        r = _log_returns(panel)
        sym = panel["symbol"]
        mean = pd.Series(r).groupby(sym.to_numpy(), sort=False).rolling(self.k, min_periods=self.k).mean()
        mean = mean.reset_index(level=0, drop=True).sort_index().to_numpy()
        m = date_mask(panel["trade_date"].to_numpy(), dates)
        return prediction_frame(sym.to_numpy()[m], panel["trade_date"].to_numpy()[m],
                                panel["target_date"].to_numpy()[m], mean[m], self.name, self.version,
                                self.train_end)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge on ``x`` (n, p), ``y`` (n,): (coef (p,), intercept); the intercept
    is not penalised."""
    xm, ym = x.mean(axis=0), y.mean()
    xc = x - xm
    a = xc.T @ xc + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(a, xc.T @ (y - ym))
    return coef, float(ym - xm @ coef)


class RidgeForecaster:
    """Ridge regression from the flattened window (window * n_features) to the scaled
    training target, on the same windows and scalers the LSTM uses."""

    name = "ridge"

    def __init__(self, features: FeatureConfig, alpha: float = 10.0) -> None:
        self.features = features
        self.alpha = float(alpha)
        self.train_end: dt.date | None = None
        self.scaler: Scaler | None = None
        self.target_scaler: Scaler | None = None
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    @classmethod
    def from_settings(cls, features: FeatureConfig, train: TrainConfig) -> RidgeForecaster:
        return cls(features, alpha=train.ridge_alpha)

    def fit(self, panel: pd.DataFrame, train_end: dt.date) -> dict:
        """Fit scalers and coefficients on windows with ``target_date <= train_end``."""
        t0 = time.perf_counter()
        prep = prepare(panel, self.features, train_end)
        tr = prep.train(train_end)
        if len(tr) == 0:
            raise ValueError(f"ridge: no training window with target_date <= {train_end}")
        x = tr.x.reshape(len(tr), -1).astype("float64")
        self.coef, self.intercept = ridge_fit(x, tr.y.astype("float64"), self.alpha)
        self.scaler, self.target_scaler, self.train_end = prep.scaler, prep.target_scaler, train_end
        resid = tr.y - (x @ self.coef + self.intercept)
        return {"rows": len(tr), "train_mse_scaled": float(np.mean(resid**2)),
                "wall_s": time.perf_counter() - t0}

    @property
    def version(self) -> str:
        if self.coef is None:
            raise RuntimeError("ridge: not fitted")
        return params_version(self.name, {"alpha": self.alpha, "coef": np.round(self.coef, 12).tolist(),
                                          "intercept": self.intercept, "train_end": self.train_end})

    def predict(self, panel: pd.DataFrame, dates: Sequence[dt.date] | None = None) -> pd.DataFrame:
        if self.coef is None:
            raise RuntimeError("ridge: not fitted")
        w = make_windows(panel, feature_columns(self.features), self.features.window, self.scaler,
                         self.target_scaler, self.features.target)
        w = w.select(date_mask(w.trade_date, dates))
        scaled = w.x.reshape(len(w), -1).astype("float64") @ self.coef + self.intercept
        raw = self.target_scaler.inverse(w.symbol, scaled.reshape(-1, 1))[:, 0]
        pred = to_log_return(raw, w.close, self.features.target)
        return prediction_frame(w.symbol, w.trade_date, w.target_date, pred, self.name, self.version,
                                self.train_end)

    def get_state(self) -> dict:
        if self.coef is None:
            raise RuntimeError("ridge: not fitted")
        return {
            "alpha": self.alpha,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "train_end": self.train_end.isoformat(),
            "scaler": self.scaler.to_dict(),
            "target_scaler": self.target_scaler.to_dict(),
        }

    @classmethod
    def from_state(cls, state: dict, features: FeatureConfig, weights: None = None) -> RidgeForecaster:
        """The fit ``get_state()`` described, on windows of ``features``."""
        f = cls(features, alpha=state["alpha"])
        f.coef = np.asarray(state["coef"], dtype="float64")
        f.intercept = float(state["intercept"])
        f.train_end = dt.date.fromisoformat(state["train_end"])
        f.scaler = Scaler.from_dict(state["scaler"])
        f.target_scaler = Scaler.from_dict(state["target_scaler"])
        return f
