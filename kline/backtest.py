"""Walk-forward evaluation of forecasters, trading simulation, and champion promotion.

Walk-forward: the held-out decision dates are cut into blocks of ``retrain_every`` sessions.
At the first date ``d0`` of a block a fresh forecaster is fitted with ``train_end = d0``
(rows whose next-session target is known at ``d0``'s close) and predicts every date of the
block. The fit sees only rows with ``target_date <= train_end`` (and, for a rolling window,
only the last ``rolling_sessions`` of them); predict sees rows dated ``<=`` the block's last
date with every target after ``train_end`` blanked. Every prediction carries the
``version`` and ``train_end`` of the fit that made it, so leakage can be audited.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kline.config import BacktestConfig, Settings
from kline.forecasters import PREDICTION_COLUMNS, Forecaster, held_out_count, held_out_dates
from kline.jsonable import jsonable
from kline.metrics import better, forecast_metrics
from kline.presets import resolve_preset
from kline.rules import InstrumentFacts
from kline.simulation import buy_and_hold_signal, simulate_predictions, with_adj_factor
from kline.zoo import make_forecaster

WINDOWS = ("expanding", "rolling")
BUY_AND_HOLD = "buy_and_hold"
REFERENCE = "persistence"  # the random walk every model must beat


class BacktestError(ValueError):
    """Bad walk-forward parameters or a panel too short to evaluate."""


def _d64(values) -> np.ndarray:
    return pd.to_datetime(pd.Series(values)).to_numpy().astype("datetime64[D]")


def walk_forward(
    panel: pd.DataFrame,
    make: Callable[[], Forecaster],
    test_dates: Sequence[dt.date],
    retrain_every: int,
    window: str = "expanding",
    rolling_sessions: int = 750,
) -> tuple[pd.DataFrame, list[dict]]:
    """Out-of-sample predictions (``PREDICTION_COLUMNS``) for ``test_dates`` and one summary
    per fit (``train_end``, ``version``, rows, wall seconds, the forecaster's own summary)."""
    if retrain_every < 1:
        raise BacktestError(f"retrain_every must be >= 1, got {retrain_every}")
    if window not in WINDOWS:
        raise BacktestError(f"unknown walk-forward window {window!r}: one of {WINDOWS}")
    test = sorted(set(test_dates))
    td, tgt = _d64(panel["trade_date"]), _d64(panel["target_date"])
    sessions = np.unique(td)
    known = set(np.unique(td[np.isfinite(panel["target"].to_numpy("float64"))]).tolist())
    blocks = [test[b : b + retrain_every] for b in range(0, len(test), retrain_every)]
    if len(blocks) > 1 and not any(np.datetime64(d, "D").item() in known for d in blocks[-1]):
        # only tomorrow's forecast left: no outcome to wait for, so no refit just for it
        blocks[-2:] = [blocks[-2] + blocks[-1]]
    preds, fits = [], []
    for block in blocks:
        train_end = np.datetime64(block[0], "D")
        fit_rows = tgt <= train_end
        if window == "rolling":
            k = np.searchsorted(sessions, train_end, side="right")
            start = sessions[max(0, k - rolling_sessions)]
            fit_rows &= td >= start
        model = make()
        t0 = time.perf_counter()
        summary = model.fit(panel[fit_rows].reset_index(drop=True), block[0])
        wall = time.perf_counter() - t0
        visible = panel[td <= np.datetime64(block[-1], "D")].copy()
        visible.loc[_d64(visible["target_date"]) > train_end, "target"] = np.nan
        p = model.predict(visible.reset_index(drop=True), block)
        p = p.assign(train_end=block[0])
        preds.append(p[PREDICTION_COLUMNS])
        fits.append({
            "model": getattr(model, "name", "?"),
            "train_end": block[0].isoformat(),
            "block_end": block[-1].isoformat(),
            "version": str(p["version"].iloc[0]) if len(p) else None,
            "rows": int(fit_rows.sum()),
            "wall_s": round(wall, 3),
            "summary": jsonable(summary),
        })
    out = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return out.sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True), fits


def attach_realised(predictions: pd.DataFrame, panel: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` plus ``realised``: the panel's next-session log return for the same
    (symbol, decision date), NaN where not known yet."""
    real = panel[["symbol", "trade_date", "target"]].rename(columns={"target": "realised"})
    real = real.assign(trade_date=pd.to_datetime(real["trade_date"]).dt.date)
    p = predictions.assign(trade_date=pd.to_datetime(predictions["trade_date"]).dt.date)
    return p.merge(real, on=["symbol", "trade_date"], how="left")


def score(predictions: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Forecast metrics per model on rows where the outcome is known; every model is scored
    on the same (symbol, date) rows, those all models predicted, so the numbers compare."""
    known = predictions[np.isfinite(predictions["realised"].to_numpy("float64"))]
    models = sorted(known["model"].unique())
    keys = None
    for name in models:
        k = set(map(tuple, known.loc[known["model"] == name, ["symbol", "trade_date"]].to_numpy()))
        keys = k if keys is None else keys & k
    out = {}
    for name in models:
        p = known[known["model"] == name]
        p = p[[(s, d) in keys for s, d in zip(p["symbol"], p["trade_date"], strict=True)]]
        out[name] = forecast_metrics(p["realised"].to_numpy(), p["pred_return"].to_numpy(), list(p["trade_date"]))
    return out


@dataclass
class BacktestResult:
    """Everything the report needs from one backtest run (frames stay in memory; the task
    writes them to the lake)."""

    predictions: pd.DataFrame  # PREDICTION_COLUMNS + realised
    fits: list[dict]
    forecast: dict[str, dict[str, float]]  # model -> forecast metrics
    strategy: dict[str, dict[str, float]]  # model or buy_and_hold -> strategy metrics
    equity: pd.DataFrame  # index trade_date, one column per strategy (currency)
    test_dates: list[dt.date] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-able numbers: test span, forecast and strategy metrics, fit log."""
        known = self.predictions[self.predictions["realised"].notna()]
        return {
            "test_dates": [d.isoformat() for d in self.test_dates],
            "scored_sessions": int(known["trade_date"].nunique()) if len(known) else 0,
            "symbols": sorted(map(str, self.predictions["symbol"].unique())),
            "forecast": self.forecast,
            "strategy": self.strategy,
            "fits": self.fits,
        }


# the headline columns of the report's metrics table
TABLE_FORECAST = ["n", "mase", "rmse", "mae", "directional_accuracy", "da_pvalue", "ic", "rank_ic",
                  "r2_oos", "dm_stat", "dm_pvalue"]
TABLE_STRATEGY = ["cagr", "volatility", "sharpe", "max_drawdown", "calmar", "turnover", "hit_rate",
                  "costs", "blocked_limit_up", "blocked_t_plus_1", "blocked_suspended", "delisted"]


def run_backtest(
    panel: pd.DataFrame,
    bars: pd.DataFrame,
    settings: Settings,
    models: Sequence[str] | None = None,
    calendars: dict[str, str] | None = None,
    adj_factor: pd.DataFrame | None = None,
    facts: InstrumentFacts | None = None,
) -> BacktestResult:
    """Walk every model over the held-out sessions of ``panel`` (as many as the train stage
    holds out), score it, and simulate its signal (and buy-and-hold) on raw ``bars``, holdings
    following ``adj_factor`` and limits dated by ``facts`` (``kline.simulation``);
    ``calendars`` give the exchange calendar of symbols outside the A-share registry."""
    cfg = settings.backtest
    models = list(models if models is not None else cfg.models)
    test = held_out_dates(panel, held_out_count(panel, resolve_preset(settings.features, settings.train)[1]))
    if not test:
        known = panel.loc[np.isfinite(panel["target"].to_numpy("float64")), "trade_date"].nunique()
        raise BacktestError(f"panel has {known} sessions with an outcome; cannot hold out any for testing")
    preds, fits = [], []
    for name in models:
        p, f = walk_forward(panel, lambda n=name: make_forecaster(n, settings), test, cfg.retrain_every, cfg.window, cfg.rolling_sessions)
        preds.append(p)
        fits.extend(f)
    predictions = attach_realised(pd.concat(preds, ignore_index=True), panel)
    forecast = score(predictions)
    strategy, curves = simulate_all(bars, predictions, cfg, calendars, adj_factor, facts)
    return BacktestResult(predictions, fits, forecast, strategy, curves, test)


def simulate_all(
    bars: pd.DataFrame,
    predictions: pd.DataFrame,
    cfg: BacktestConfig,
    calendars: dict[str, str] | None = None,
    adj_factor: pd.DataFrame | None = None,
    facts: InstrumentFacts | None = None,
) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Strategy metrics and equity curves of each model's signal and of buy-and-hold."""
    strategy, curves = {}, {}
    bars = with_adj_factor(bars, adj_factor)
    for name, p in predictions.groupby("model", sort=True):
        r = simulate_predictions(bars, p, cfg, calendars, facts=facts)
        strategy[str(name)], curves[str(name)] = r.metrics(), r.equity
    if len(predictions):
        first = predictions[predictions["model"] == predictions["model"].iloc[0]]
        r = simulate_predictions(bars, buy_and_hold_signal(first), cfg, calendars, facts=facts)
        strategy[BUY_AND_HOLD], curves[BUY_AND_HOLD] = r.metrics(), r.equity
    equity = pd.DataFrame(curves).sort_index().ffill() if curves else pd.DataFrame()
    return strategy, equity


def decide_promotion(
    candidate: str,
    candidate_version: str | None,
    forecast: dict[str, dict[str, float]],
    metric: str,
    champion: dict | None = None,
) -> dict:
    """Champion/challenger decision: promote ``candidate`` only if its walk-forward ``metric``
    beats persistence on the same held-out rows and the current champion's recorded value.

    ``champion`` is the registry's record (``version`` and ``metric_value`` are read) or None.
    Returns a JSON-able decision: promote, reason and every number compared.
    """
    if candidate not in forecast:
        raise BacktestError(f"candidate {candidate!r} was not backtested")
    value = float(forecast[candidate].get(metric, math.nan))
    ref = float(forecast.get(REFERENCE, {}).get(metric, math.nan))
    champ_value = float(champion["metric_value"]) if champion and champion.get("metric_value") is not None else None
    champ_version = champion.get("version") if champion else None
    if not np.isfinite(value):
        promote, reason = False, f"{candidate} {metric} is not finite"
    elif not np.isfinite(ref):
        promote, reason = False, f"no {REFERENCE} {metric} to compare with"
    elif not better(metric, value, ref):
        promote, reason = False, f"{candidate} {metric} {value:.4f} does not beat {REFERENCE} {ref:.4f}"
    elif champ_version is not None and champ_version == candidate_version:
        promote, reason = False, f"{candidate} {candidate_version} is already the champion"
    elif champ_value is not None and not better(metric, value, champ_value):
        promote, reason = False, (f"{candidate} {metric} {value:.4f} does not beat champion "
                                  f"{champ_version} {champ_value:.4f}")
    else:
        promote = True
        reason = f"{candidate} {metric} {value:.4f} beats {REFERENCE} {ref:.4f}" + (
            f" and champion {champ_version} {champ_value:.4f}" if champ_value is not None else " (no champion yet)")
    return {
        "promote": bool(promote),
        "reason": reason,
        "metric": metric,
        "candidate": candidate,
        "candidate_version": candidate_version,
        "candidate_value": value,
        "persistence_value": ref,
        "champion_version": champ_version,
        "champion_value": champ_value,
    }
