"""A-share market rules as dated data, and the one function that answers "the limit of symbol
S on day D" for validation, the synthetic market and the trading simulation.

A limit is a pair of fractions of ``pre_close`` (up, down; None: no limit) and the rule that
set it. Three sources decide it, most specific first:

1. the exchange's own limit prices for that day (tushare ``stk_limit``), when stored;
2. the listing rule: no limit in a new listing's first sessions (or, on main board and
   ChiNext before their reforms, a first-day cap of +44 % / -36 % of the issue price);
3. the board rule for the stock's status (ST or not) in force on that day.

Instrument facts that change over time (listing and delisting dates, ST periods, daily limit
prices) are small tables (``InstrumentFacts``) kept in the lake, each row with its source.
Without them a symbol is taken as listed before its history and never ST.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from kline.calendar import market_sessions
from kline.instruments import Instrument, instrument


@dataclass(frozen=True)
class BoardRule:
    """Daily limit of a board for ST or non-ST stocks from ``start`` on (fractions)."""

    board: str
    st: bool
    start: dt.date
    limit: float


_D = dt.date
# fmt: off
BOARD_RULES: tuple[BoardRule, ...] = (
    # SSE/SZSE notice of 1996-12-13: ±10 % on every stock from 1996-12-16
    BoardRule("main", False, _D(1996, 12, 16), 0.10),
    BoardRule("main", True, _D(1996, 12, 16), 0.10),
    # Special treatment (ST) introduced 1998-04-22 with a ±5 % limit
    BoardRule("main", True, _D(1998, 4, 22), 0.05),
    # SSE/SZSE main-board trading rules revision: ST/*ST ±10 % from 2026-07-06
    BoardRule("main", True, _D(2026, 7, 6), 0.10),
    # ChiNext opened 2009-10-30 under the main-board rules (ST ±5 %)
    BoardRule("chinext", False, _D(2009, 10, 30), 0.10),
    BoardRule("chinext", True, _D(2009, 10, 30), 0.05),
    # ChiNext registration reform, 2020-08-24: ±20 %, ST included
    BoardRule("chinext", False, _D(2020, 8, 24), 0.20),
    BoardRule("chinext", True, _D(2020, 8, 24), 0.20),
    # STAR Market trading rules, from its opening day 2019-07-22: ±20 %, ST included
    BoardRule("star", False, _D(2019, 7, 22), 0.20),
    BoardRule("star", True, _D(2019, 7, 22), 0.20),
    # Beijing Stock Exchange trading rules, from its opening day 2021-11-15: ±30 %, ST included
    BoardRule("bse", False, _D(2021, 11, 15), 0.30),
    BoardRule("bse", True, _D(2021, 11, 15), 0.30),
)


@dataclass(frozen=True)
class ListingRule:
    """For stocks listed on ``board`` from ``start`` on: the first ``sessions`` sessions
    have limit (``up``, ``down``) of pre_close (the issue price on day 1); None: no limit."""

    board: str
    start: dt.date
    sessions: int
    up: float | None
    down: float | None


LISTING_RULES: tuple[ListingRule, ...] = (
    # Before 2014 a new listing's first day had no price limit (only intraday halts)
    ListingRule("main", _D(1996, 12, 16), 1, None, None),
    ListingRule("chinext", _D(2009, 10, 30), 1, None, None),
    # SSE/SZSE notices of 2013-12-13: first day capped at +44 % / -36 % of the issue price
    ListingRule("main", _D(2014, 1, 1), 1, 0.44, 0.36),
    ListingRule("chinext", _D(2014, 1, 1), 1, 0.44, 0.36),
    # STAR trading rules 2019-07-22, ChiNext reform 2020-08-24, main-board full registration
    # 2023-04-10: no limit for the first 5 sessions
    ListingRule("star", _D(2019, 7, 22), 5, None, None),
    ListingRule("chinext", _D(2020, 8, 24), 5, None, None),
    ListingRule("main", _D(2023, 4, 10), 5, None, None),
    # BSE trading rules 2021-11-15: no limit on the listing day
    ListingRule("bse", _D(2021, 11, 15), 1, None, None),
)
# fmt: on

# -- instrument facts tables -------------------------------------------------------------------

LISTING_SCHEMA = pa.schema([("symbol", pa.string()), ("list_date", pa.date32()),
                            ("delist_date", pa.date32()), ("source", pa.string())])
ST_SCHEMA = pa.schema([("symbol", pa.string()), ("start_date", pa.date32()), ("end_date", pa.date32()),
                       ("name", pa.string()), ("source", pa.string())])
STK_LIMIT_SCHEMA = pa.schema([("symbol", pa.string()), ("trade_date", pa.date32()),
                              ("up_limit", pa.float64()), ("down_limit", pa.float64()),
                              ("source", pa.string())])


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """A new empty frame with ``schema``'s columns."""
    return _empty_frame(schema).copy()


@functools.lru_cache(maxsize=64)
def _empty_frame(schema: pa.Schema) -> pd.DataFrame:
    # Arrow's conversion costs ~2 ms and InstrumentFacts makes up to three a symbol; a copy, ~0.1 ms
    return schema.empty_table().to_pandas()


def _d64(x) -> np.ndarray:
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.datetime64):
        return x.astype("datetime64[D]")
    return pd.to_datetime(pd.Series(x), errors="coerce").to_numpy().astype("datetime64[D]")


@functools.lru_cache(maxsize=64)
def _board_rules(board: str, st: bool) -> tuple[np.ndarray, tuple[BoardRule, ...]]:
    rules = tuple(sorted((r for r in BOARD_RULES if r.board == board and r.st == st), key=lambda r: r.start))
    return np.array([np.datetime64(r.start, "D") for r in rules], dtype="datetime64[D]"), rules


@functools.lru_cache(maxsize=65536)
def _listing_window(board: str, list_date: dt.date, calendar: str) -> tuple[ListingRule | None, np.ndarray]:
    """The listing rule for a stock listed on ``list_date`` and the sessions it covers."""
    lrules = [r for r in LISTING_RULES if r.board == board and r.start <= list_date]
    if not lrules:
        return None, np.array([], dtype="datetime64[D]")
    lr = max(lrules, key=lambda r: r.start)
    # cached, so on the release's calendar (not a run's layers): a listing window is history
    sess = market_sessions(calendar)
    return lr, sess[np.searchsorted(sess, np.datetime64(list_date, "D")):][: lr.sessions]


@dataclass
class InstrumentFacts:
    """Dated instrument facts: listings (``LISTING_SCHEMA``), ST periods (``ST_SCHEMA``, an
    open period has no end_date; ``end_date`` is inclusive) and daily limit prices
    (``STK_LIMIT_SCHEMA``). Any table may be empty."""

    listings: pd.DataFrame = field(default_factory=lambda: empty_frame(LISTING_SCHEMA))
    st_periods: pd.DataFrame = field(default_factory=lambda: empty_frame(ST_SCHEMA))
    stk_limit: pd.DataFrame = field(default_factory=lambda: empty_frame(STK_LIMIT_SCHEMA))

    def __post_init__(self) -> None:
        self._index: dict | None = None

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name in ("listings", "st_periods", "stk_limit"):
            super().__setattr__("_index", None)  # a replaced table invalidates the lookups

    def _by_symbol(self) -> dict:
        """Per-symbol views of the tables, built once (lookups then cost no pandas filter)."""
        if self._index is None:
            lst = {s: (_opt_date(a), _opt_date(b), str(src)) for s, a, b, src in
                   _rows(self.listings, ("symbol", "list_date", "delist_date", "source"))}
            st: dict[str, list] = {}
            for s, a, b, n, src in _rows(self.st_periods, ST_SCHEMA.names):
                st.setdefault(s, []).append((_opt_date(a), _opt_date(b), str(n), str(src)))
            lim = {}
            if len(self.stk_limit):
                df = self.stk_limit.assign(_d=_d64(self.stk_limit["trade_date"])).sort_values(["symbol", "_d"])
                for s, g in df.groupby("symbol", sort=False):
                    lim[s] = (g["_d"].to_numpy(), g["up_limit"].to_numpy(float), g["down_limit"].to_numpy(float),
                              g["source"].astype(str).to_numpy())
            self._index = {"listings": lst, "st": st, "stk_limit": lim}
        return self._index

    def listing(self, symbol: str) -> tuple[dt.date | None, dt.date | None]:
        """(list_date, delist_date) of ``symbol``; None where unknown."""
        a, b, _ = self._by_symbol()["listings"].get(symbol, (None, None, None))
        return a, b

    def sources(self) -> dict[str, list[str]]:
        """Sources per table (for reports: which facts came from where)."""
        return {name: sorted(set(df["source"].dropna().astype(str)))
                for name, df in (("listings", self.listings), ("st_periods", self.st_periods),
                                 ("stk_limit", self.stk_limit))}


_NO_FACTS = InstrumentFacts()  # shared, never modified


def _rows(df: pd.DataFrame, cols) -> Iterable[tuple]:
    """The rows of ``df[cols]`` as tuples (as ``itertuples`` gives them, without its frame copy
    and namedtuple class: a few ms a call on the small tables of one symbol)."""
    return zip(*(df[c].tolist() for c in cols), strict=True) if len(df) else iter(())


def _opt_date(x) -> dt.date | None:
    if x is None or (not isinstance(x, dt.date) and pd.isna(x)):
        return None
    return pd.Timestamp(x).date()


@dataclass(frozen=True)
class Limit:
    """The limit of one symbol on one day: fractions of pre_close (None: no limit), the limit
    prices when the exchange published them, and the rule applied with its source."""

    up: float | None
    down: float | None
    rule: str
    up_price: float | None = None
    down_price: float | None = None

    def prices(self, pre_close: float) -> tuple[float, float]:
        """(limit-down, limit-up) prices at the 0.01 tick; -inf/inf where there is none."""
        down = self.down_price if self.down_price is not None else (
            round(pre_close * (1 - self.down), 2) if self.down is not None and np.isfinite(pre_close) else -np.inf)
        up = self.up_price if self.up_price is not None else (
            round(pre_close * (1 + self.up), 2) if self.up is not None and np.isfinite(pre_close) else np.inf)
        return float(down), float(up)


@dataclass
class LimitTable:
    """Limits of one symbol on many days: arrays aligned with the days asked for."""

    up: np.ndarray  # fraction of pre_close, NaN: no limit
    down: np.ndarray
    up_price: np.ndarray  # exchange's limit price, NaN: not published (use the fractions)
    down_price: np.ndarray
    rule: np.ndarray  # object: text naming the rule and its source

    def at(self, i: int) -> Limit:
        def f(a):
            return None if np.isnan(a[i]) else float(a[i])
        return Limit(f(self.up), f(self.down), str(self.rule[i]), f(self.up_price), f(self.down_price))


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def limit_table(
    symbol: str,
    days: Iterable,
    facts: InstrumentFacts | None = None,
    inst: Instrument | None = None,
) -> LimitTable:
    """The limit of ``symbol`` on each of ``days`` (dates or datetime64), in order.

    ``facts`` give listing date, ST periods and exchange limit prices (module doc for the
    precedence); ``inst`` defaults to the registry's instrument (its calendar counts the
    listing's sessions)."""
    d = _d64(list(days) if not isinstance(days, np.ndarray) else days)
    n = len(d)
    up, down = np.full(n, np.nan), np.full(n, np.nan)
    up_p, down_p = np.full(n, np.nan), np.full(n, np.nan)
    rule = np.full(n, "", dtype=object)
    inst = inst or instrument(symbol)
    if inst.is_index or inst.board == "foreign":
        rule[:] = "no limit (index)" if inst.is_index else "no limit (not an A-share stock)"
        return LimitTable(up, down, up_p, down_p, rule)
    idx = (facts or _NO_FACTS)._by_symbol()
    board = inst.board

    # 3. board rule by status and date
    st = np.zeros(n, dtype=bool)
    st_name = np.full(n, "", dtype=object)
    for a, b, name, src in idx["st"].get(symbol, ()):
        m = d >= np.datetime64(a, "D")
        if b is not None:
            m &= d <= np.datetime64(b, "D")
        st |= m
        st_name[m] = f"{name} from {a} ({src})"
    rule[:] = "no limit (before the board's first dated rule)"
    valid = ~np.isnat(d)
    for flag in (False, True):
        starts, rules = _board_rules(board, flag)
        sel = (st == flag) & valid
        if not rules or not sel.any():
            continue
        rows = np.flatnonzero(sel)
        k = np.searchsorted(starts, d[rows], side="right") - 1
        for j in np.unique(k[k >= 0]):
            r = rules[j]
            at = rows[k == j]
            up[at] = down[at] = r.limit
            text = f"{board}{' ST' if flag else ''} ±{_pct(r.limit)} from {r.start} (board rule)"
            rule[at] = [f"{text}; ST: {x}" for x in st_name[at]] if flag and st_name[at].any() else text

    # 2. listing rule
    list_date, _, src = idx["listings"].get(symbol, (None, None, None))
    if list_date is not None:
        lr, window = _listing_window(board, list_date, inst.calendar)
        m = np.isin(d, window) if lr is not None else np.zeros(n, dtype=bool)
        if m.any():
            pos = np.searchsorted(window, d[m]) + 1
            up[m] = np.nan if lr.up is None else lr.up
            down[m] = np.nan if lr.down is None else lr.down
            what = "no limit" if lr.up is None else f"+{_pct(lr.up)}/-{_pct(lr.down)} of the issue price"
            rule[m] = [f"listing day {p}: {what} ({board} listings from {lr.start}; listed "
                       f"{list_date}, {src})" for p in pos]

    # 1. the exchange's own limit prices
    if symbol in idx["stk_limit"]:
        ld, lu, lw, lsrc = idx["stk_limit"][symbol]
        pos = np.searchsorted(ld, d)
        hit = (pos < len(ld)) & (ld[np.minimum(pos, len(ld) - 1)] == d)
        if hit.any():
            p = pos[hit]
            up_p[hit], down_p[hit] = lu[p], lw[p]
            rule[np.flatnonzero(hit)] = [f"exchange limit prices {lo:g}..{hi:g} ({s} stk_limit)"
                                         for lo, hi, s in zip(lw[p], lu[p], lsrc[p], strict=True)]
    return LimitTable(up, down, up_p, down_p, rule)


def limit_of(
    symbol: str,
    day: dt.date,
    facts: InstrumentFacts | None = None,
    inst: Instrument | None = None,
) -> Limit:
    """The price limit of ``symbol`` on ``day`` (``limit_table`` for one day)."""
    return limit_table(symbol, [day], facts, inst).at(0)


def describe_limit_sources(sources: dict[str, list[str]] | None) -> str:
    """One sentence naming the facts the price limits were dated with (``InstrumentFacts.
    sources``), or saying that only the board rules applied."""
    known = [f"{k.replace('_', ' ')} from {', '.join(v)}" for k, v in (sources or {}).items() if v]
    if not known:
        return ("dated board rules only: no listing dates, ST periods or exchange limit prices "
                "were stored for this source")
    return "dated board rules with " + "; ".join(known)


def st_periods_from_namechange(names: pd.DataFrame, source: str) -> pd.DataFrame:
    """ST periods (``ST_SCHEMA``) from name-change rows (``symbol, name, start_date,
    end_date``): every name containing "ST" (ST, *ST, SST, S*ST) is a period. Repeated
    rows are dropped; a period whose end is missing is open."""
    if names.empty:
        return empty_frame(ST_SCHEMA)
    df = names.drop_duplicates(["symbol", "name", "start_date"]).copy()
    df = df[df["name"].astype(str).str.upper().str.contains("ST", regex=False)]
    out = pd.DataFrame({
        "symbol": df["symbol"].astype(str),
        "start_date": pd.to_datetime(df["start_date"]).dt.date,
        "end_date": pd.to_datetime(df["end_date"], errors="coerce").dt.date,
        "name": df["name"].astype(str),
        "source": source,
    })
    out["end_date"] = out["end_date"].astype(object).where(out["end_date"].notna(), None)
    return out.sort_values(["symbol", "start_date"]).reset_index(drop=True)
