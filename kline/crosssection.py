"""Cross-sectional evaluation of a universe forecast: daily IC and rank IC, and a top-k
long-only portfolio against the equal-weight universe (the figures Qlib reports).

Input: a predictions frame, one row per (symbol, decision date ``trade_date``) with a score
(``pred_return``: the predicted log return from the close of ``trade_date`` to the close of
``target_date``) and, for the IC, the realised log return over the same span (``realised``,
as ``kline.backtest.attach_realised`` adds it). Only stocks count (``kline.features.is_stock``:
A-share indices are left out) and the universe must hold at least ``MIN_STOCKS`` of them.

Time: a prediction made at the close of ``d`` for ``d + 1`` is scored on ``d + 1``'s return.
The IC of day ``d`` correlates the scores of ``d`` with the returns of ``d -> d + 1``. The
portfolio trades at the close of ``d`` (the convention the target assumes; Qlib's label
``Ref($close, -2) / Ref($close, -1) - 1`` with the signal shifted one day is the same
alignment) and its holdings earn the sessions after ``d`` up to the next decision.

Returns in the portfolio are simple returns ``close / pre_close - 1`` of the raw bars (the
exchange's ``pre_close`` is ex-rights, so a corporate action is no P&L event); a suspended
stock earns 0 and cannot trade. Annualised figures follow Qlib's ``risk_analysis`` (mode
"sum"): mean daily return x ``PERIODS_PER_YEAR``, IR = mean / std x sqrt(periods), max
drawdown of the cumulative sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kline.config import BacktestConfig
from kline.features import is_stock
from kline.instruments import instrument, is_a_share_code
from kline.rules import InstrumentFacts, limit_table
from kline.simulation import Costs

MIN_STOCKS = 30  # universes smaller than this get no cross-sectional figures
MIN_DAY_STOCKS = 10  # a day's IC needs at least this many stocks with a score and an outcome
PERIODS_PER_YEAR = 238  # Qlib's trading days per year for daily figures
DEFAULT_CAPITAL = 100_000_000.0  # CNY, the portfolio's starting cash (Qlib's example account)
_EPS = 1e-9


class CrossSectionError(ValueError):
    """A universe too small for cross-sectional figures, or an ill-formed input frame."""


def _stock_rows(frame: pd.DataFrame, min_stocks: int) -> pd.DataFrame:
    if "symbol" not in frame.columns or "trade_date" not in frame.columns:
        raise CrossSectionError("predictions need 'symbol' and 'trade_date' columns")
    syms = pd.unique(frame["symbol"].astype(str))
    stocks = {s for s in syms if is_stock(s)}
    if len(stocks) < min_stocks:
        raise CrossSectionError(
            f"cross-sectional evaluation needs a universe of at least {min_stocks} stocks; got {len(stocks)}"
        )
    out = frame[frame["symbol"].astype(str).isin(stocks)].copy()
    out["trade_date"] = pd.to_datetime(out["trade_date"]).dt.date
    return out


def daily_ic(
    predictions: pd.DataFrame,
    prediction: str = "pred_return",
    realised: str = "realised",
    min_stocks: int = MIN_STOCKS,
    min_day_stocks: int = MIN_DAY_STOCKS,
) -> pd.DataFrame:
    """Per decision date with at least ``min_day_stocks`` stocks having a finite score and
    outcome: ``trade_date, stocks, ic`` (Pearson) and ``rank_ic`` (Spearman); NaN on a day
    where either side is constant. Raises CrossSectionError below ``min_stocks`` stocks."""
    for c in (prediction, realised):
        if c not in predictions.columns:
            raise CrossSectionError(f"predictions lack column {c!r}")
    p = _stock_rows(predictions, min_stocks)
    p = p[np.isfinite(p[prediction].to_numpy("float64")) & np.isfinite(p[realised].to_numpy("float64"))]
    rows = []
    for d, g in p.groupby("trade_date", sort=True):
        if len(g) < min_day_stocks:
            continue
        x, y = g[prediction].to_numpy("float64"), g[realised].to_numpy("float64")
        rows.append((d, len(g), _corr(x, y), _corr(_ranks(x), _ranks(y))))
    return pd.DataFrame(rows, columns=["trade_date", "stocks", "ic", "rank_ic"])


def _ranks(a: np.ndarray) -> np.ndarray:
    return pd.Series(a).rank(method="average").to_numpy()


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def ic_summary(daily: pd.DataFrame) -> dict[str, float]:
    """Mean, std (ddof 1), ICIR = mean / std and t = ICIR x sqrt(days) of the daily IC and
    rank IC (``daily_ic``'s frame); ``days`` counts the days with a finite IC."""
    out: dict[str, float] = {}
    for col, pre in (("ic", "ic"), ("rank_ic", "rank_ic")):
        v = daily[col].to_numpy("float64") if col in daily else np.empty(0)
        v = v[np.isfinite(v)]
        mean = float(v.mean()) if v.size else math.nan
        sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
        ir = mean / sd if sd and np.isfinite(sd) else math.nan
        out.update({f"{pre}_mean": mean, f"{pre}_std": sd, f"{pre}_ir": ir,
                    f"{pre}_t": ir * math.sqrt(v.size) if np.isfinite(ir) else math.nan})
        out[f"{pre}_days"] = int(v.size)
    return out


def return_metrics(returns: pd.Series, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """Qlib's ``risk_analysis`` of daily returns (mode "sum"): mean, std, annualized_return,
    information_ratio, max_drawdown (of the cumulative sum; <= 0), plus ``t`` = mean / std x
    sqrt(days), the t-statistic of the mean (whether the figure is more than noise)."""
    r = pd.Series(returns, dtype="float64").dropna()
    if len(r) < 2:
        return {"mean": math.nan, "std": math.nan, "annualized_return": math.nan,
                "information_ratio": math.nan, "max_drawdown": math.nan, "t": math.nan, "days": int(len(r))}
    mean, sd = float(r.mean()), float(r.std(ddof=1))
    cum = r.cumsum()
    return {
        "mean": mean,
        "std": sd,
        "annualized_return": mean * periods_per_year,
        "information_ratio": mean / sd * math.sqrt(periods_per_year) if sd > 0 else math.nan,
        "max_drawdown": float((cum - cum.cummax()).min()),
        "t": mean / sd * math.sqrt(len(r)) if sd > 0 else math.nan,
        "days": int(len(r)),
    }


@dataclass
class TopkResult:
    """A top-k portfolio path, one row per session from the first decision date on:
    ``portfolio`` (net of costs) and ``portfolio_gross`` daily simple returns, ``benchmark``
    (equal-weight universe), ``excess`` = portfolio - benchmark, ``excess_gross``, ``turnover``
    (traded value / equity), ``costs`` (CNY), ``holdings`` (count after the close)."""

    daily: pd.DataFrame
    k: int
    n_drop: int
    positions: pd.DataFrame  # trade_date, symbol, value (CNY) held after each session's close

    def metrics(self, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
        """Qlib-style figures: ``excess_return_with_cost.*``, ``excess_return_without_cost.*``,
        ``portfolio.*``, ``benchmark.*`` (``return_metrics``) plus mean daily turnover and
        the compounded max drawdown of the net portfolio."""
        d = self.daily
        out: dict[str, float] = {"k": self.k, "n_drop": self.n_drop}
        for name, col in (("excess_return_with_cost", "excess"), ("excess_return_without_cost", "excess_gross"),
                          ("portfolio", "portfolio"), ("benchmark", "benchmark")):
            for key, v in return_metrics(d[col], periods_per_year).items():
                out[f"{name}.{key}"] = v
        eq = (1 + d["portfolio"]).cumprod()
        out["portfolio.compound_max_drawdown"] = float((eq / eq.cummax() - 1).min()) if len(eq) else math.nan
        out["turnover_mean"] = float(d["turnover"].mean()) if len(d) else math.nan
        out["costs_total"] = float(d["costs"].sum())
        return out


def _limit_prices(symbol: str, dates: np.ndarray, pre: np.ndarray, facts: InstrumentFacts | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(limit-down, limit-up) prices per bar, vectorised like ``kline.rules.Limit.prices``
    (exchange prices first, else the fraction of ``pre_close`` at the 0.01 tick; +-inf: none)."""
    if not is_a_share_code(symbol) or instrument(symbol).is_index:
        return np.full(len(dates), -np.inf), np.full(len(dates), np.inf)
    t = limit_table(symbol, dates, facts, instrument(symbol))
    up = np.where(np.isnan(t.up_price), np.round(pre * (1 + t.up), 2), t.up_price)
    down = np.where(np.isnan(t.down_price), np.round(pre * (1 - t.down), 2), t.down_price)
    return np.nan_to_num(down, nan=-np.inf), np.nan_to_num(up, nan=np.inf)


def _costs(cfg: BacktestConfig, symbol: str) -> Costs:
    if is_a_share_code(symbol):
        return Costs.for_instrument(cfg, instrument(symbol))
    return Costs(cfg.commission, cfg.min_commission, 0.0, 0.0, 1)  # a foreign ticker: commission only


def topk_dropout(
    scores: pd.DataFrame,
    bars: pd.DataFrame,
    k: int = 50,
    n_drop: int = 5,
    cfg: BacktestConfig | None = None,
    facts: InstrumentFacts | None = None,
    prediction: str = "pred_return",
    capital: float = DEFAULT_CAPITAL,
    min_stocks: int = MIN_STOCKS,
) -> TopkResult:
    """Long-only top-k portfolio with Qlib's TopkDropout rule over the stocks in ``scores``
    (``symbol, trade_date`` = decision date, ``prediction``), on raw ``bars`` (``symbol,
    trade_date, close, pre_close``).

    At each decision close: rank the held names and the best ``n_drop + k - held`` others
    together; sell the held names among the bottom ``n_drop`` of that list (at most
    ``n_drop``), then buy the best others up to ``k`` names, splitting the cash equally. Only
    tradable names are bought (a bar that day, close below limit-up); a sale is skipped when
    the stock is suspended or closes at limit-down. Held names without a score that day rank
    last. Costs: ``kline.simulation.Costs`` of ``cfg`` per order (commission with its
    minimum, transfer fee, stamp duty on sells); fractional shares (no lot rounding).
    Benchmark: the equal-weight mean return of the stocks scored at the previous decision.
    """
    if k < 1 or n_drop < 0:
        raise CrossSectionError(f"need k >= 1 and n_drop >= 0, got k={k}, n_drop={n_drop}")
    if prediction not in scores.columns:
        raise CrossSectionError(f"scores lack column {prediction!r}")
    missing = [c for c in ("symbol", "trade_date", "close", "pre_close") if c not in bars.columns]
    if missing:
        raise CrossSectionError(f"bars lack column(s): {', '.join(missing)}")
    cfg = cfg or BacktestConfig()
    sc = _stock_rows(scores, min_stocks)
    sc = sc[np.isfinite(sc[prediction].to_numpy("float64"))]
    symbols = np.array(sorted(sc["symbol"].astype(str).unique()), dtype=object)
    col = {s: i for i, s in enumerate(symbols)}
    b = bars[bars["symbol"].astype(str).isin(col)].copy()
    b["trade_date"] = pd.to_datetime(b["trade_date"]).dt.date
    first = sc["trade_date"].min()
    b = b[b["trade_date"] >= first].drop_duplicates(["symbol", "trade_date"], keep="last")
    dates = np.array(sorted(set(b["trade_date"]) | set(sc["trade_date"])), dtype=object)
    row = {d: i for i, d in enumerate(dates)}
    n_t, n_s = len(dates), len(symbols)
    has = np.zeros((n_t, n_s), dtype=bool)
    close = np.full((n_t, n_s), np.nan)
    ret = np.zeros((n_t, n_s))
    up = np.full((n_t, n_s), np.inf)
    down = np.full((n_t, n_s), -np.inf)
    for sym, g in b.sort_values(["symbol", "trade_date"]).groupby("symbol", sort=False):
        j = col[str(sym)]
        ri = np.array([row[d] for d in g["trade_date"]])
        c, p = g["close"].to_numpy("float64"), g["pre_close"].to_numpy("float64")
        has[ri, j], close[ri, j] = True, c
        with np.errstate(divide="ignore", invalid="ignore"):
            ret[ri, j] = np.nan_to_num(c / p - 1.0, nan=0.0, posinf=0.0, neginf=0.0)
        down[ri, j], up[ri, j] = _limit_prices(str(sym), g["trade_date"].to_numpy(), p, facts)
    score = np.full((n_t, n_s), np.nan)
    score[[row[d] for d in sc["trade_date"]], [col[str(s)] for s in sc["symbol"]]] = sc[prediction].to_numpy("float64")
    decision = np.isfinite(score).any(axis=1)
    costs = [_costs(cfg, s) for s in symbols]
    gross = _run_topk(score, decision, has, close, ret, up, down, k, n_drop, costs, capital, charge=False)
    net = _run_topk(score, decision, has, close, ret, up, down, k, n_drop, costs, capital, charge=True)
    eq_net, eq_gross = net["equity"], gross["equity"]
    # benchmark on session t: mean return of the stocks scored at the last decision before t
    bench = np.full(n_t, np.nan)
    last_scored = None
    for t in range(n_t):
        if last_scored is not None:
            bench[t] = float(ret[t, last_scored].mean())
        if decision[t]:
            last_scored = np.isfinite(score[t])
    # the first row is the first decision session: the initial purchase's costs, no return yet
    start = int(np.flatnonzero(decision)[0])
    sl = slice(start, n_t)
    bench[start] = 0.0
    port = eq_net[sl] / np.concatenate([[capital], eq_net[start:-1]]) - 1.0
    port_g = eq_gross[sl] / np.concatenate([[capital], eq_gross[start:-1]]) - 1.0
    daily = pd.DataFrame({
        "trade_date": dates[sl],
        "portfolio": port,
        "portfolio_gross": port_g,
        "benchmark": bench[sl],
        "excess": port - bench[sl],
        "excess_gross": port_g - bench[sl],
        "turnover": net["turnover"][sl],
        "costs": net["costs"][sl],
        "holdings": net["holdings"][sl],
    })
    held = [(dates[t], symbols[j], v) for t, js, vs in net["held"][start:] for j, v in zip(js, vs, strict=True)]
    positions = pd.DataFrame(held, columns=["trade_date", "symbol", "value"])
    return TopkResult(daily.reset_index(drop=True), k, n_drop, positions)


def _run_topk(score, decision, has, close, ret, up, down, k, n_drop, costs, capital, charge):
    """The TopkDropout path (see ``topk_dropout``): equity, turnover, costs and holdings count
    per session; ``charge`` False runs the same trades without fees."""
    n_t, n_s = score.shape
    value = np.zeros(n_s)  # CNY held per stock after the close
    cash = float(capital)
    equity, turnover, paid, count = (np.zeros(n_t) for _ in range(4))
    held_rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    for t in range(n_t):
        value *= 1.0 + ret[t]
        traded = fee_total = 0.0
        if decision[t]:
            s = score[t]
            held = np.flatnonzero(value > 0)
            held_score = np.where(np.isfinite(s[held]), s[held], -np.inf)
            last = held[np.argsort(-held_score, kind="stable")]
            can_buy = np.flatnonzero(np.isfinite(s) & has[t] & (close[t] < up[t] - _EPS) & (value <= 0))
            want = max(0, n_drop + k - len(last))
            today = can_buy[np.argsort(-s[can_buy], kind="stable")][:want]
            comb = np.concatenate([last, today])
            comb_score = np.where(np.isfinite(s[comb]), s[comb], -np.inf)
            comb = comb[np.argsort(-comb_score, kind="stable")]
            bottom = set(comb[len(comb) - n_drop:].tolist()) if n_drop > 0 else set()
            for j in last:
                if j not in bottom or not has[t, j] or close[t, j] <= down[t, j] + _EPS:
                    continue  # kept, or suspended / at limit-down: the sale waits
                v = value[j]
                fee = sum(costs[j].fees(v, "sell")) if charge else 0.0
                cash += v - fee
                value[j] = 0.0
                traded, fee_total = traded + v, fee_total + fee
            n_buy = min(len(today), k - int((value > 0).sum()))
            if n_buy > 0:
                share = cash / n_buy
                for j in today[:n_buy]:
                    v = _buy_value(share, costs[j]) if charge else share
                    fee = sum(costs[j].fees(v, "buy")) if charge else 0.0
                    if v <= 0:
                        continue
                    cash -= v + fee
                    value[j] = v
                    traded, fee_total = traded + v, fee_total + fee
        equity[t] = cash + value.sum()
        turnover[t] = traded / equity[t] if equity[t] > 0 else 0.0
        paid[t], count[t] = fee_total, int((value > 0).sum())
        j = np.flatnonzero(value > 0)
        held_rows.append((t, j, value[j].copy()))
    return {"equity": equity, "turnover": turnover, "costs": paid, "holdings": count, "held": held_rows}


def _buy_value(budget: float, c: Costs) -> float:
    """Largest order value whose buy fees fit in ``budget`` with it."""
    v = budget / (1.0 + c.commission + c.transfer_fee)
    if v * c.commission < c.min_commission:
        v = (budget - c.min_commission) / (1.0 + c.transfer_fee)
    return max(v, 0.0)


def evaluate_cross_section(
    predictions: pd.DataFrame,
    bars: pd.DataFrame,
    k: int = 50,
    n_drop: int = 5,
    cfg: BacktestConfig | None = None,
    facts: InstrumentFacts | None = None,
    prediction: str = "pred_return",
    realised: str = "realised",
    min_stocks: int = MIN_STOCKS,
) -> dict[str, float]:
    """One model's cross-sectional figures: ``ic_summary`` of ``daily_ic`` and the
    ``TopkResult.metrics`` of ``topk_dropout`` on the rows with a known outcome."""
    known = predictions[np.isfinite(predictions[realised].to_numpy("float64"))] if realised in predictions else predictions
    out: dict[str, float] = dict(ic_summary(daily_ic(known, prediction, realised, min_stocks)))
    out.update(topk_dropout(known, bars, k, n_drop, cfg, facts, prediction, min_stocks=min_stocks).metrics())
    return out
