"""Walk-forward evaluation of forecasters, trading simulation, and champion promotion.

Walk-forward: the held-out decision dates are cut into blocks of ``retrain_every`` sessions.
At the first date ``d0`` of a block a fresh forecaster is fitted with ``train_end = d0``
(rows whose next-session target is known at ``d0``'s close) and predicts every date of the
block. The fit sees only rows with ``target_date <= train_end`` (and, for a rolling window,
only the last ``rolling_sessions`` of them); predict sees rows dated ``<=`` the block's last
date with every target after ``train_end`` blanked. Every prediction carries the
``version`` and ``train_end`` of the fit that made it, so leakage can be audited.

Warm starts are evaluated as warm starts: with ``train.warm_start`` the LSTM of each block
after the first starts from the previous block's weights, as the production model starts
from the champion's (the first block starts cold: no earlier fit exists point in time).

Promotion on evidence (``decide_promotion``) compares the candidate's walk-forward, the
champion's own out-of-sample predictions (sessions after its training end) and persistence
on the same rows; ``champion_verdict`` re-checks the champion on the newest sessions.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kline.config import BacktestConfig, PromotionConfig, Settings
from kline.crosssection import MIN_STOCKS, evaluate_cross_section
from kline.features import is_stock
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
    warm_start: bool = False,
) -> tuple[pd.DataFrame, list[dict]]:
    """Out-of-sample predictions (``PREDICTION_COLUMNS``) for ``test_dates`` and one summary
    per fit (``train_end``, ``version``, rows, wall seconds, warm start, the forecaster's own
    summary). ``warm_start``: a fit after the first starts from the previous fit's
    ``weights`` (forecasters that have them)."""
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
    previous = None
    for block in blocks:
        train_end = np.datetime64(block[0], "D")
        fit_rows = tgt <= train_end
        if window == "rolling":
            k = np.searchsorted(sessions, train_end, side="right")
            start = sessions[max(0, k - rolling_sessions)]
            fit_rows &= td >= start
        model = make()
        t0 = time.perf_counter()
        init = getattr(previous, "weights", None) if warm_start else None
        if init:
            summary = model.fit(panel[fit_rows].reset_index(drop=True), block[0], init)
        else:
            summary = model.fit(panel[fit_rows].reset_index(drop=True), block[0])
        wall = time.perf_counter() - t0
        previous = model
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
            "warm_start": bool(init),
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
        out[name]["sessions"] = int(p["trade_date"].nunique())
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
    cross_section: dict = field(default_factory=dict)  # cross_section_figures

    def summary(self) -> dict:
        """JSON-able numbers: test span, forecast and strategy metrics, fit log."""
        known = self.predictions[self.predictions["realised"].notna()]
        return {
            "test_dates": [d.isoformat() for d in self.test_dates],
            "scored_sessions": int(known["trade_date"].nunique()) if len(known) else 0,
            "symbols": sorted(map(str, self.predictions["symbol"].unique())),
            "forecast": self.forecast,
            "strategy": self.strategy,
            "cross_section": self.cross_section,
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
    warm = resolve_preset(settings.features, settings.train)[1].warm_start
    for name in models:
        p, f = walk_forward(panel, lambda n=name: make_forecaster(n, settings), test, cfg.retrain_every, cfg.window,
                            cfg.rolling_sessions, warm_start=warm)
        preds.append(p)
        fits.extend(f)
    predictions = attach_realised(pd.concat(preds, ignore_index=True), panel)
    forecast = score(predictions)
    strategy, curves = simulate_all(bars, predictions, cfg, calendars, adj_factor, facts)
    cross = cross_section_figures(predictions, bars, cfg, facts)
    return BacktestResult(predictions, fits, forecast, strategy, curves, test, cross)


def cross_section_figures(predictions: pd.DataFrame, bars: pd.DataFrame, cfg: BacktestConfig,
                          facts: InstrumentFacts | None = None) -> dict:
    """Per model, ``kline.crosssection.evaluate_cross_section`` of its walk-forward (IC, rank
    IC, ICIR, t; the top-k portfolio of ``cfg.topk`` / ``cfg.n_drop`` against the equal-weight
    universe) when the universe holds at least ``MIN_STOCKS`` stocks; else only ``stocks`` and
    a ``note`` saying why there are none. Models with a constant score (persistence) get NaN ICs."""
    stocks = sum(is_stock(str(s)) for s in pd.unique(predictions["symbol"]))
    out: dict = {"stocks": int(stocks), "min_stocks": MIN_STOCKS, "topk": cfg.topk, "n_drop": cfg.n_drop}
    if stocks < MIN_STOCKS:
        out["note"] = (f"cross-sectional figures (IC, top-k portfolio) need a universe of at least {MIN_STOCKS} "
                       f"stocks; this one has {stocks}")
        return out
    out["models"] = {str(name): evaluate_cross_section(p, bars, cfg.topk, cfg.n_drop, cfg, facts)
                     for name, p in predictions.groupby("model", sort=True)}
    return out


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


CHAMPION = "champion"  # the model label of the champion's own predictions in a comparison


def out_of_sample(forecaster: Forecaster, panel: pd.DataFrame, dates: Sequence[dt.date]) -> pd.DataFrame:
    """A fitted forecaster's predictions on ``dates`` for the rows whose outcome it never saw
    (``target_date > train_end``), with ``realised``; its ``model`` label is ``CHAMPION``."""
    p = forecaster.predict(panel, list(dates))
    end = getattr(forecaster, "train_end", None)
    if end is not None:
        p = p[_d64(p["target_date"]) > np.datetime64(end, "D")]
    return attach_realised(p.assign(model=CHAMPION), panel)


def _rows(predictions: pd.DataFrame, model: str) -> pd.DataFrame:
    return predictions[predictions["model"] == model]


def _on_keys(frame: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``frame`` whose (symbol, trade_date) is in ``keys``."""
    k = keys[["symbol", "trade_date"]].drop_duplicates()
    return frame.merge(k, on=["symbol", "trade_date"], how="inner")


def champion_verdict(champion: pd.DataFrame, predictions: pd.DataFrame, metric: str, cfg: PromotionConfig) -> dict:
    """Re-evaluate the champion on the newest ``cfg.recent_sessions`` sessions it never saw
    (``champion``: ``out_of_sample`` rows) against persistence on the same rows: ``retire``
    when, over at least ``cfg.min_sessions`` scored sessions, it no longer beats persistence."""
    known = champion[np.isfinite(champion["realised"].to_numpy("float64"))]
    dates = sorted(pd.to_datetime(known["trade_date"]).dt.date.unique())[-cfg.recent_sessions:]
    known = known[pd.to_datetime(known["trade_date"]).dt.date.isin(dates)]
    both = pd.concat([known, _on_keys(_rows(predictions, REFERENCE), known)], ignore_index=True)
    fc = score(both) if len(known) else {}
    value = float(fc.get(CHAMPION, {}).get(metric, math.nan))
    ref = float(fc.get(REFERENCE, {}).get(metric, math.nan))
    n = len(dates)
    if n < cfg.min_sessions:
        retire, reason = False, f"{n} session(s) since the champion was trained; {cfg.min_sessions} needed to re-judge it"
    elif better(metric, value, ref):
        retire, reason = False, f"champion {metric} {value:.4f} still beats {REFERENCE} {ref:.4f} on the newest {n} sessions"
    else:
        retire, reason = True, (f"champion {metric} {value:.4f} no longer beats {REFERENCE} {ref:.4f} "
                                f"on the newest {n} sessions")
    return {"retire": retire, "reason": reason, "metric": metric, "sessions": n,
            "span": [dates[0].isoformat(), dates[-1].isoformat()] if dates else None,
            "champion_value": value, "persistence_value": ref}


def judge_candidate(
    predictions: pd.DataFrame,
    candidate: str,
    candidate_version: str | None,
    metric: str,
    cfg: PromotionConfig,
    champion: pd.DataFrame | None = None,
    champion_version: str | None = None,
) -> dict:
    """The evidence and the decision for one run: re-judge the champion (``champion_verdict``
    on its ``out_of_sample`` rows), then score the candidate's walk-forward, persistence and
    the (kept) champion on the rows all of them predicted (``score``) and apply
    ``decide_promotion``. Returns the decision plus ``verdict``, ``metrics`` and ``held_out``."""
    verdict = champion_verdict(champion, predictions, metric, cfg) if champion is not None else None
    keep = champion is not None and not verdict["retire"]
    frame = pd.concat([_rows(predictions, candidate), _rows(predictions, REFERENCE)]
                      + ([champion] if keep else []), ignore_index=True)
    fc = score(frame) if len(frame) else {}
    known = frame[np.isfinite(frame["realised"].to_numpy("float64"))]
    common = pd.to_datetime(known[known["model"] == candidate]["trade_date"]) if len(known) else pd.Series([])
    decision = decide_promotion(candidate, candidate_version, fc, metric,
                                {"version": champion_version} if keep else None, cfg)
    if verdict and verdict["retire"] and candidate_version is not None and candidate_version == champion_version:
        decision.update(promote=False, reason=f"{candidate} {candidate_version} is the champion this run retired")
    decision.update(verdict=verdict, metrics={k: fc[k] for k in sorted(fc)},
                    held_out=[f"{common.min():%Y-%m-%d}", f"{common.max():%Y-%m-%d}"] if len(common) else None)
    return decision


def decide_promotion(
    candidate: str,
    candidate_version: str | None,
    forecast: dict[str, dict[str, float]],
    metric: str,
    champion: dict | None = None,
    cfg: PromotionConfig | None = None,
) -> dict:
    """Promotion on evidence: ``candidate`` becomes champion only if, on the same held-out
    rows (``forecast``: ``score`` of the candidate, persistence and, given ``champion``
    (``{"version"}``), the champion's own predictions under ``CHAMPION``), over at least
    ``cfg.min_sessions`` sessions, its ``metric`` beats persistence and the champion, and its
    Diebold-Mariano test against persistence has p < ``cfg.max_p`` with a lower loss.

    Returns a JSON-able decision: promote, reason and every number compared.
    """
    cfg = cfg or PromotionConfig()
    if candidate not in forecast:
        raise BacktestError(f"candidate {candidate!r} was not backtested")
    cand = forecast[candidate]
    value = float(cand.get(metric, math.nan))
    ref = float(forecast.get(REFERENCE, {}).get(metric, math.nan))
    champ_version = champion.get("version") if champion else None
    champ_value = float(forecast.get(CHAMPION, {}).get(metric, math.nan)) if champion else None
    dm_stat, dm_p = float(cand.get("dm_stat", math.nan)), float(cand.get("dm_pvalue", math.nan))
    sessions = int(cand.get("sessions", 0) or 0)
    if champ_version is not None and champ_version == candidate_version:
        promote, reason = False, f"{candidate} {candidate_version} is already the champion"
    elif not np.isfinite(value):
        promote, reason = False, f"{candidate} {metric} is not finite"
    elif not np.isfinite(ref):
        promote, reason = False, f"no {REFERENCE} {metric} to compare with"
    elif champion is not None and not np.isfinite(champ_value):
        promote, reason = False, (f"champion {champ_version} has no scored out-of-sample session in common with "
                                  f"the walk-forward yet: nothing to compare {candidate} with")
    elif sessions < cfg.min_sessions:
        promote, reason = False, f"{sessions} held-out session(s) in common; {cfg.min_sessions} needed to judge"
    elif not better(metric, value, ref):
        promote, reason = False, f"{candidate} {metric} {value:.4f} does not beat {REFERENCE} {ref:.4f}"
    elif champion is not None and not better(metric, value, champ_value):
        promote, reason = False, (f"{candidate} {metric} {value:.4f} does not beat champion "
                                  f"{champ_version} {champ_value:.4f}")
    elif not (np.isfinite(dm_p) and dm_p < cfg.max_p and dm_stat < 0):
        promote, reason = False, (f"{candidate} beats {REFERENCE} on {metric} ({value:.4f} vs {ref:.4f}) but not "
                                  f"significantly: Diebold-Mariano p = {dm_p:.3f}, needs < {cfg.max_p:g}")
    else:
        promote = True
        reason = (f"{candidate} {metric} {value:.4f} beats {REFERENCE} {ref:.4f}"
                  + (f" and champion {champ_version} {champ_value:.4f}" if champion is not None else " (no champion)")
                  + f" on {sessions} sessions, Diebold-Mariano p = {dm_p:.3f} < {cfg.max_p:g}")
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
        "dm_stat": dm_stat,
        "dm_pvalue": dm_p,
        "max_p": cfg.max_p,
        "sessions": sessions,
    }


def residual_quantiles(predictions: pd.DataFrame, model: str, quantiles: tuple[float, float],
                       min_rows: int = 20) -> dict[str, tuple[float, float]]:
    """Per symbol, the ``quantiles`` of ``model``'s walk-forward residuals (realised -
    predicted log return); a symbol with fewer than ``min_rows`` residuals gets the pooled
    ones (key ``""``, always present when any residual is known)."""
    p = _rows(predictions, model)
    r = (p["realised"] - p["pred_return"]).to_numpy("float64")
    ok = np.isfinite(r)
    p, r = p[ok], r[ok]
    if not len(r):
        return {}
    out = {"": tuple(float(v) for v in np.quantile(r, quantiles))}
    for sym, g in pd.Series(r).groupby(p["symbol"].astype(str).to_numpy()):
        if len(g) >= min_rows:
            out[str(sym)] = tuple(float(v) for v in np.quantile(g.to_numpy(), quantiles))
    return out


def with_interval(forecast: pd.DataFrame, quantiles: dict[str, tuple[float, float]], levels: tuple[float, float]
                  ) -> pd.DataFrame:
    """``forecast`` (``pred_return``, ``close``) with ``pred_return_low/high`` = prediction +
    the residual quantiles of ``residual_quantiles`` and ``pred_close_low/high``; NaN when no
    residual is known. ``interval`` names the levels (e.g. ``p10-p90``)."""
    lo_hi = np.array([quantiles.get(str(s), quantiles.get("", (math.nan, math.nan))) for s in forecast["symbol"]],
                     dtype="float64").reshape(-1, 2)
    out = forecast.copy()
    out["pred_return_low"] = out["pred_return"].to_numpy("float64") + lo_hi[:, 0]
    out["pred_return_high"] = out["pred_return"].to_numpy("float64") + lo_hi[:, 1]
    out["pred_close_low"] = out["close"] * np.exp(out["pred_return_low"])
    out["pred_close_high"] = out["close"] * np.exp(out["pred_return_high"])
    out["interval"] = f"p{levels[0] * 100:g}-p{levels[1] * 100:g}"
    return out
