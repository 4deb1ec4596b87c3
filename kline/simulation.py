"""A-share long/flat trading simulation of a forecast signal.

Rules, per symbol, with its own capital:
- Decision at the close of session ``d`` (only on days the symbol has a bar): long when the
  predicted next-session return exceeds the threshold, flat otherwise.
- Execution at the next calendar session's open (``next_open``) or close (``next_close``);
  ``open_to_close`` buys at the next open and means to sell at that session's close (a
  one-session trade), which T+1 forbids: the sell waits for the following open.
  An order is a day order: if the symbol has no bar that session (suspended) it lapses, and
  the next decision is taken at the next close the symbol trades.
- T+1: shares bought in a session are not sellable until the following session.
- Limits: no buy when the execution price is at the limit-up price, no sell at limit-down.
  The limit is the dated one of ``kline.rules`` (board, ST status, listing day, or the
  exchange's published limit prices), on raw prices.
- Prices: fills, lots, fees and limits use raw prices; a held position follows the adjusted
  price (``adj_factor`` on the bars, as Qlib's ``$factor``): on an ex-date the factor grows
  and the holding grows with it (bonus shares, the cash dividend reinvested), so an
  ex-dividend day is no P&L event. Holdings may then be fractional shares.
- Costs: commission ``rate * value`` with a minimum per order, transfer fee on both sides,
  stamp duty on sells; buys are in whole board lots (100 shares for stocks).
- Delisting: a position still held at a delisted symbol's last bar is closed at that close
  (side ``delist``, no fees); the count is in ``metrics()["delisted"]``, beside the orders
  blocked on suspended days (``blocked_suspended``).

Indices cannot be bought; an index is simulated as a tradable tracker of the index level:
lot size 1, no price limit, commission only (no stamp duty or transfer fee, as for an ETF).
Foreign symbols (file imports) are treated the same way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kline.calendar import next_session
from kline.config import BacktestConfig
from kline.instruments import Instrument, instrument
from kline.metrics import strategy_metrics
from kline.rules import InstrumentFacts, limit_table

TRADE_COLUMNS = ["trade_date", "side", "shares", "price", "value", "commission",
                 "transfer_fee", "stamp_duty", "cash_after"]
BLOCK_COLUMNS = ["trade_date", "side", "reason"]
_EPS = 1e-9


@dataclass(frozen=True)
class Costs:
    """Fee schedule: rates are fractions of traded value, ``min_commission`` in currency."""

    commission: float
    min_commission: float
    stamp_duty: float
    transfer_fee: float
    lot_size: int

    @classmethod
    def for_instrument(cls, cfg: BacktestConfig, inst: Instrument) -> Costs:
        """A-share costs for a stock; commission only and lot 1 for an index tracker."""
        stock = inst.asset_type == "stock" and inst.board != "foreign"
        return cls(
            commission=cfg.commission,
            min_commission=cfg.min_commission,
            stamp_duty=cfg.stamp_duty if stock else 0.0,
            transfer_fee=cfg.transfer_fee if stock else 0.0,
            lot_size=inst.lot_size,
        )

    def fees(self, value: float, side: str) -> tuple[float, float, float]:
        """(commission, transfer fee, stamp duty) on an order of ``value``."""
        commission = max(self.min_commission, value * self.commission)
        stamp = value * self.stamp_duty if side == "sell" else 0.0
        return commission, value * self.transfer_fee, stamp


@dataclass
class SimulationResult:
    """One symbol's (or a portfolio's) simulated path."""

    equity: pd.Series  # marked at each session close, index: trade_date
    position: pd.Series  # shares held after the close
    trades: pd.DataFrame  # TRADE_COLUMNS
    blocked: pd.DataFrame  # BLOCK_COLUMNS: orders that could not execute, and why
    round_trips: list[float] = field(default_factory=list)  # net P&L per closed trade

    @property
    def costs(self) -> float:
        t = self.trades
        return float((t["commission"] + t["transfer_fee"] + t["stamp_duty"]).sum()) if len(t) else 0.0

    @property
    def traded_value(self) -> float:
        return float(self.trades["value"].sum()) if len(self.trades) else 0.0

    def metrics(self) -> dict[str, float]:
        """``kline.metrics.strategy_metrics`` of this path, plus blocked-order counts."""
        m = strategy_metrics(self.equity, self.traded_value, self.costs, self.round_trips)
        for reason in ("limit_up", "limit_down", "suspended", "t_plus_1", "cash"):
            m[f"blocked_{reason}"] = int((self.blocked["reason"] == reason).sum()) if len(self.blocked) else 0
        m["delisted"] = int((self.trades["side"] == "delist").sum()) if len(self.trades) else 0
        return m


@dataclass
class _Sleeve:
    """One symbol's cash, holding and ledgers while ``simulate`` walks its bars."""

    cash: float
    costs: Costs
    units: float = 0.0
    bought_on: dt.date | None = None
    cost_basis: float = 0.0  # paid for the holding, fees included
    trades: list[tuple] = field(default_factory=list)  # TRADE_COLUMNS
    blocked: list[tuple] = field(default_factory=list)  # BLOCK_COLUMNS
    trips: list[float] = field(default_factory=list)

    def buy(self, d: dt.date, price: float, limit_up: float) -> bool:
        """Buy as many lots as the cash allows; False when blocked."""
        if price >= limit_up - _EPS:
            self.blocked.append((d, "buy", "limit_up"))
            return False
        n = _affordable(self.cash, price, self.costs)
        if n == 0:
            self.blocked.append((d, "buy", "cash"))
            return False
        value = n * price
        c, t, s = self.costs.fees(value, "buy")
        self.cash -= value + c + t + s
        self.units, self.bought_on, self.cost_basis = float(n), d, value + c + t + s
        self.trades.append((d, "buy", self.units, price, value, c, t, s, self.cash))
        return True

    def sell(self, d: dt.date, price: float, side: str = "sell") -> None:
        """Sell the whole holding at ``price``; a delisting (``side="delist"``) settles without fees."""
        value = self.units * price
        c, t, s = self.costs.fees(value, side) if side == "sell" else (0.0, 0.0, 0.0)
        self.cash += value - c - t - s
        self.trades.append((d, side, self.units, price, value, c, t, s, self.cash))
        self.trips.append(value - c - t - s - self.cost_basis)
        self.units, self.bought_on, self.cost_basis = 0.0, None, 0.0


def simulate(
    bars: pd.DataFrame,
    long_signal: pd.Series,
    cfg: BacktestConfig,
    inst: Instrument | None = None,
    facts: InstrumentFacts | None = None,
) -> SimulationResult:
    """Simulate one symbol trading ``long_signal`` (bool, index: decision dates) on ``bars``
    (that symbol's rows: trade_date, open, close, pre_close in raw prices, optionally
    ``adj_factor``; ascending). ``facts`` date the price limits and say whether (and when)
    the symbol was delisted.

    The path starts with ``cfg.capital`` in cash at the close of the first decision date and
    is marked at every later bar's close. Decisions outside the bars are ignored.
    """
    symbol = str(bars["symbol"].iloc[0])
    if inst is None:
        inst = instrument(symbol)
    signal = {pd.Timestamp(k).date(): bool(v) for k, v in long_signal.items()}
    first = min(signal) if signal else None
    b = bars.sort_values("trade_date")
    b = b[[first is not None and pd.Timestamp(x).date() >= first for x in b["trade_date"]]]
    dates = [pd.Timestamp(x).date() for x in b["trade_date"]]
    opens, closes, pre = (b[c].to_numpy(float) for c in ("open", "close", "pre_close"))
    factor = (pd.to_numeric(b["adj_factor"], errors="coerce").ffill().bfill().fillna(1.0).to_numpy(float)
              if "adj_factor" in b else np.ones(len(dates)))
    limits = limit_table(symbol, dates, facts, inst)
    delisted = facts.listing(symbol)[1] if facts is not None else None
    book = _Sleeve(float(cfg.capital), Costs.for_instrument(cfg, inst))
    pending: tuple[dt.date, str, str] | None = None  # (execution session, side, "open"/"close")
    eq, pos = np.empty(len(dates)), np.empty(len(dates))
    for i, d in enumerate(dates):
        if book.units and i > 0 and factor[i - 1] > 0:
            book.units *= factor[i] / factor[i - 1]  # bonus shares / dividend reinvested: no P&L jump
        if pending is not None and pending[0] < d:
            book.blocked.append((pending[0], pending[1], "suspended"))
            pending = None
        for at, price in (("open", opens[i]), ("close", closes[i])):
            if pending is not None and pending[0] == d and pending[2] == at:
                pending = _execute(book, pending[1], d, price, limits.at(i).prices(pre[i]), cfg.execution,
                                   inst.calendar)
        if book.units and delisted is not None and i == len(dates) - 1 and d <= delisted:
            book.sell(d, closes[i], "delist")  # settled at the last price
            pending = None
        eq[i], pos[i] = book.cash + book.units * closes[i], book.units
        if d in signal and pending is None:
            pending = _order(signal[d], book.units, d, cfg.execution, inst.calendar)
    idx = pd.Index(dates, name="trade_date")
    return SimulationResult(
        equity=pd.Series(eq, index=idx, name="equity"),
        position=pd.Series(pos, index=idx, name="shares"),
        trades=pd.DataFrame(book.trades, columns=TRADE_COLUMNS),
        blocked=pd.DataFrame(book.blocked, columns=BLOCK_COLUMNS),
        round_trips=book.trips,
    )


def _execute(book: _Sleeve, side: str, d: dt.date, price: float, limits: tuple[float, float], execution: str,
             calendar: str) -> tuple[dt.date, str, str] | None:
    """Fill (or block) the order due at ``price``; returns the order it leaves pending."""
    down, up = limits
    if side == "buy":
        if book.buy(d, price, up) and execution == "open_to_close":
            return d, "sell", "close"  # the one-session trade's exit
    elif book.bought_on is not None and d <= book.bought_on:
        book.blocked.append((d, side, "t_plus_1"))
        if execution == "open_to_close":
            return next_session(d, calendar), "sell", "open"
    elif price <= down + _EPS:
        book.blocked.append((d, side, "limit_down"))
    else:
        book.sell(d, price)
    return None


def _order(want_long: bool, units: float, d: dt.date, execution: str, calendar: str) -> tuple[dt.date, str, str] | None:
    """The order a decision at ``d``'s close places for the next session, if any."""
    at = "close" if execution == "next_close" else "open"
    if want_long and units == 0:
        return next_session(d, calendar), "buy", at
    if units > 0 and (not want_long or execution == "open_to_close"):
        return next_session(d, calendar), "sell", at
    return None


def _affordable(cash: float, price: float, costs: Costs) -> int:
    """Most whole lots whose value plus fees fits in ``cash``."""
    if price <= 0 or not np.isfinite(price):
        return 0
    lot = costs.lot_size
    n = int(cash / (price * (1 + costs.commission + costs.transfer_fee)) // lot) * lot
    while n > 0:
        c, t, s = costs.fees(n * price, "buy")
        if n * price + c + t + s <= cash + _EPS:
            return n
        n -= lot
    return 0


def combine(results: Iterable[SimulationResult]) -> SimulationResult:
    """Portfolio of independent per-symbol sleeves: equities summed on the union of dates
    (a sleeve's value carried forward over its suspensions, its capital before it starts)."""
    results = list(results)
    if not results:
        raise ValueError("no simulation results to combine")
    frame = pd.concat([r.equity.rename(i) for i, r in enumerate(results)], axis=1).sort_index()
    frame = frame.ffill()
    for i, r in enumerate(results):
        frame[i] = frame[i].fillna(float(r.equity.iloc[0]) if len(r.equity) else 0.0)
    trades = [r.trades for r in results if len(r.trades)]
    blocked = [r.blocked for r in results if len(r.blocked)]
    return SimulationResult(
        equity=frame.sum(axis=1).rename("equity"),
        position=pd.Series(np.nan, index=frame.index, name="shares"),
        trades=pd.concat(trades, ignore_index=True) if trades else pd.DataFrame(columns=TRADE_COLUMNS),
        blocked=pd.concat(blocked, ignore_index=True) if blocked else pd.DataFrame(columns=BLOCK_COLUMNS),
        round_trips=[x for r in results for x in r.round_trips],
    )


def with_adj_factor(bars: pd.DataFrame, adj_factor: pd.DataFrame | None) -> pd.DataFrame:
    """``bars`` with an ``adj_factor`` column from ``symbol, trade_date, adj_factor`` rows
    (carried forward over days without one; 1.0 for a symbol without any)."""
    if adj_factor is None or adj_factor.empty or "adj_factor" in bars:
        return bars
    out = bars.merge(adj_factor[["symbol", "trade_date", "adj_factor"]], on=["symbol", "trade_date"], how="left")
    out["adj_factor"] = out.groupby("symbol")["adj_factor"].transform(lambda s: s.ffill().bfill()).fillna(1.0)
    return out


def simulate_predictions(
    bars: pd.DataFrame,
    predictions: pd.DataFrame,
    cfg: BacktestConfig,
    calendars: dict[str, str] | None = None,
    adj_factor: pd.DataFrame | None = None,
    facts: InstrumentFacts | None = None,
) -> SimulationResult:
    """Portfolio simulation of one model's predictions (``kline.forecasters.PREDICTION_COLUMNS``)
    over every symbol in them: long when ``pred_return > cfg.threshold``. Raw ``bars`` for
    fills and limits, ``adj_factor`` rows for holdings across corporate actions, ``facts``
    for dated limits and delistings."""
    calendars = calendars or {}
    bars = with_adj_factor(bars, adj_factor)
    out = []
    for sym, p in predictions.groupby("symbol", sort=True):
        sig = pd.Series((p["pred_return"] > cfg.threshold).to_numpy(), index=p["trade_date"].to_numpy())
        sb = bars[bars["symbol"] == sym]
        if sb.empty:
            continue
        out.append(simulate(sb, sig, cfg, instrument(str(sym), calendars.get(str(sym))), facts))
    return combine(out)


def buy_and_hold_signal(predictions: pd.DataFrame) -> pd.DataFrame:
    """A prediction frame that is always long on the same decision dates (the benchmark)."""
    p = predictions[["symbol", "trade_date"]].drop_duplicates().copy()
    p["pred_return"] = math.inf
    return p
