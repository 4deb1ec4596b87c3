"""Forecast and strategy metrics.

Forecast metrics compare predicted next-session log returns with realised ones on the same
held-out sessions. The reference forecast is the random walk: a predicted return of zero
(tomorrow's close = today's close). MASE, out-of-sample R^2 and the Diebold-Mariano test are
all relative to it, so a value of MASE < 1, R^2 > 0 or a negative DM statistic means the model
beats "tomorrow = today".

Strategy metrics take a daily equity curve indexed by session date.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

# Metrics where a lower value is better; every other headline metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mase", "dm_stat", "dm_pvalue", "da_pvalue", "max_drawdown_abs"})
DAYS_PER_YEAR = 365.25  # CAGR day count: ACT/365.25 calendar days


def _arrays(y: Sequence[float], yhat: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype="float64")
    yhat = np.asarray(yhat, dtype="float64")
    if y.shape != yhat.shape:
        raise ValueError(f"shape mismatch: realised {y.shape} vs predicted {yhat.shape}")
    return y, yhat


def rmse(y: Sequence[float], yhat: Sequence[float]) -> float:
    """Root mean squared error (units of the inputs)."""
    y, yhat = _arrays(y, yhat)
    return float(np.sqrt(np.mean((y - yhat) ** 2))) if y.size else math.nan


def mae(y: Sequence[float], yhat: Sequence[float]) -> float:
    """Mean absolute error (units of the inputs)."""
    y, yhat = _arrays(y, yhat)
    return float(np.mean(np.abs(y - yhat))) if y.size else math.nan


def mase(y: Sequence[float], yhat: Sequence[float]) -> float:
    """MAE of the forecast / MAE of the zero-return random walk on the same sessions.

    ``y`` are realised next-session returns; the random walk predicts 0, so its MAE is
    mean(|y|). Below 1 beats "tomorrow = today". Not the lag-1 naive on returns.
    """
    y, yhat = _arrays(y, yhat)
    denom = float(np.mean(np.abs(y))) if y.size else math.nan
    return mae(y, yhat) / denom if denom else math.nan


def directional_accuracy(y: Sequence[float], yhat: Sequence[float]) -> tuple[float, float, int]:
    """(hit rate, two-sided binomial p-value against 50 %, sessions counted).

    Sessions where the realised or the predicted return is exactly zero make no directional
    call and are left out; with no call at all (e.g. persistence) the rate is NaN.
    """
    y, yhat = _arrays(y, yhat)
    called = (y != 0) & (yhat != 0) & np.isfinite(y) & np.isfinite(yhat)
    n = int(called.sum())
    if n == 0:
        return math.nan, math.nan, 0
    hits = int((np.sign(y[called]) == np.sign(yhat[called])).sum())
    p = float(stats.binomtest(hits, n, 0.5, alternative="two-sided").pvalue)
    return hits / n, p, n


def _corr(a: np.ndarray, b: np.ndarray, rank: bool) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    if rank:
        return float(stats.spearmanr(a, b).statistic)
    return float(np.corrcoef(a, b)[0, 1])


def information_coefficient(
    y: Sequence[float],
    yhat: Sequence[float],
    dates: Sequence[dt.date] | None = None,
    rank: bool = False,
    min_cross_section: int = 3,
) -> float:
    """Correlation of predicted and realised returns (Pearson, or Spearman if ``rank``).

    With ``dates`` and at least ``min_cross_section`` symbols on a day, the IC is the mean of
    the per-day cross-sectional correlations; otherwise it is one time-series correlation.
    NaN when a side is constant (a constant forecast has no IC).
    """
    y, yhat = _arrays(y, yhat)
    if dates is not None:
        df = pd.DataFrame({"d": list(dates), "y": y, "p": yhat})
        sizes = df.groupby("d")["y"].transform("size")
        cs = df[sizes >= min_cross_section]
        if not cs.empty:
            per_day = [
                _corr(g["y"].to_numpy(), g["p"].to_numpy(), rank) for _, g in cs.groupby("d", sort=True)
            ]
            per_day = [v for v in per_day if np.isfinite(v)]
            return float(np.mean(per_day)) if per_day else math.nan
    return _corr(y, yhat, rank)


def r2_oos(y: Sequence[float], yhat: Sequence[float]) -> float:
    """Out-of-sample R^2 against a zero forecast: 1 - SSE(model) / sum(y^2).

    The zero benchmark (Gu, Kelly & Xiu 2020) is the random walk in returns; a historical
    mean would flatter noisy forecasts. Positive means the model beats the random walk.
    """
    y, yhat = _arrays(y, yhat)
    denom = float(np.sum(y**2))
    return 1.0 - float(np.sum((y - yhat) ** 2)) / denom if denom else math.nan


def diebold_mariano(
    y: Sequence[float],
    yhat: Sequence[float],
    dates: Sequence[dt.date] | None = None,
    loss: str = "abs",
) -> tuple[float, float, int]:
    """Diebold-Mariano test of the forecast against the zero-return random walk.

    Loss differential d_t = L(y - yhat) - L(y), L = |.| ("abs", matches MASE) or squared
    ("squared"); with ``dates``, d is averaged across symbols per day first. One-step-ahead
    forecasts, so the variance is the plain sample variance, with the Harvey-Leybourne-Newbold
    small-sample correction and a t(n-1) two-sided p-value. Returns (stat, p-value, n days);
    stat < 0 means the model's loss is lower.
    """
    y, yhat = _arrays(y, yhat)
    if loss not in ("abs", "squared"):
        raise ValueError(f"unknown DM loss {loss!r}: 'abs' or 'squared'")
    f = np.abs if loss == "abs" else np.square
    d = f(y - yhat) - f(y)
    if dates is not None:
        d = pd.Series(d).groupby(pd.Index(list(dates))).mean().to_numpy()
    n = d.size
    var = float(np.var(d, ddof=0)) if n >= 3 else 0.0
    if var == 0:  # too few days, or no difference at all
        return math.nan, math.nan, n
    dm = float(np.mean(d)) / math.sqrt(var / n)
    stat = dm * math.sqrt((n - 1) / n)  # HLN correction for h = 1
    p = float(2 * stats.t.sf(abs(stat), df=n - 1))
    return stat, p, n


def forecast_metrics(
    y: Sequence[float], yhat: Sequence[float], dates: Sequence[dt.date] | None = None
) -> dict[str, float]:
    """Every forecast metric for realised ``y`` and predicted ``yhat`` (next-session log
    returns, same held-out sessions; ``dates`` are the decision dates for cross-sectional IC
    and per-day DM). Rows with a NaN on either side are dropped first."""
    y, yhat = _arrays(y, yhat)
    ok = np.isfinite(y) & np.isfinite(yhat)
    y, yhat = y[ok], yhat[ok]
    dl = None if dates is None else [d for d, k in zip(dates, ok, strict=True) if k]
    da, da_p, da_n = directional_accuracy(y, yhat)
    dm, dm_p, dm_n = diebold_mariano(y, yhat, dl)
    return {
        "n": int(y.size),
        "rmse": rmse(y, yhat),
        "mae": mae(y, yhat),
        "rw_mae": float(np.mean(np.abs(y))) if y.size else math.nan,
        "mase": mase(y, yhat),
        "directional_accuracy": da,
        "da_pvalue": da_p,
        "da_n": da_n,
        "ic": information_coefficient(y, yhat, dl),
        "rank_ic": information_coefficient(y, yhat, dl, rank=True),
        "r2_oos": r2_oos(y, yhat),
        "dm_stat": dm,
        "dm_pvalue": dm_p,
    }


def better(metric: str, a: float, b: float) -> bool:
    """True when value ``a`` is strictly better than ``b`` for ``metric`` (NaN never is)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return bool(np.isfinite(a) and not np.isfinite(b))
    return a < b if metric in LOWER_IS_BETTER else a > b


# -- strategy metrics ------------------------------------------------------------------------


def drawdown(equity: pd.Series) -> pd.Series:
    """Fractional drawdown from the running peak (0 at a peak, negative below it)."""
    eq = equity.astype("float64")
    return eq / eq.cummax() - 1.0


def strategy_metrics(
    equity: pd.Series,
    traded_value: float = 0.0,
    costs: float = 0.0,
    round_trips: Sequence[float] = (),
) -> dict[str, float]:
    """Metrics of a daily equity curve (index: session dates, first value = starting capital).

    CAGR uses ACT/365.25 calendar days between the first and last date; volatility and Sharpe
    (risk-free rate 0) are annualised with the observed sessions per calendar year. Turnover
    is traded value / mean equity, per year. ``round_trips`` are net P&Ls of closed trades;
    the hit rate is the share of them above zero. ``costs`` are fees paid, in currency.
    """
    eq = equity.astype("float64").dropna()
    out: dict[str, float] = {
        "start_equity": float(eq.iloc[0]) if len(eq) else math.nan,
        "end_equity": float(eq.iloc[-1]) if len(eq) else math.nan,
        "sessions": int(max(len(eq) - 1, 0)),
        "costs": float(costs),
        "trades": int(len(round_trips)),
    }
    if len(eq) < 2:
        out.update(total_return=math.nan, cagr=math.nan, volatility=math.nan, sharpe=math.nan,
                   max_drawdown=math.nan, calmar=math.nan, turnover=math.nan, hit_rate=math.nan,
                   costs_pct=math.nan, days=0)
        return out
    first, last = pd.Timestamp(eq.index[0]), pd.Timestamp(eq.index[-1])
    days = (last - first).days
    years = days / DAYS_PER_YEAR if days > 0 else math.nan
    total = float(eq.iloc[-1] / eq.iloc[0] - 1.0)
    cagr = (1.0 + total) ** (1.0 / years) - 1.0 if years and 1.0 + total > 0 else math.nan
    rets = eq.pct_change().dropna().to_numpy()
    per_year = len(rets) / years if years else math.nan
    sd = float(np.std(rets, ddof=1)) if len(rets) > 1 else math.nan
    vol = sd * math.sqrt(per_year) if np.isfinite(sd) else math.nan
    sharpe = float(np.mean(rets)) / sd * math.sqrt(per_year) if sd and np.isfinite(sd) else math.nan
    mdd = float(drawdown(eq).min())
    calmar = cagr / abs(mdd) if mdd < 0 and np.isfinite(cagr) else math.nan
    rt = np.asarray(round_trips, dtype="float64")
    out.update(
        days=int(days),
        total_return=total,
        cagr=cagr,
        volatility=vol,
        sharpe=sharpe,
        max_drawdown=mdd,
        calmar=calmar,
        turnover=float(traded_value / eq.mean() / years) if years else math.nan,
        hit_rate=float((rt > 0).mean()) if rt.size else math.nan,
        costs_pct=float(costs / eq.iloc[0]),
    )
    return out
