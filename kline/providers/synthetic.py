"""The embedded synthetic A-share market: no network, no token, deterministic.

Every random draw for a day comes from a generator seeded by (seed, symbol, year) and is
indexed by the day of the year, and each symbol's path starts at a fixed epoch. So the bar
for (seed, symbol, trade_date) never depends on which range was asked for.

Model per symbol: log-volatility is an AR(1) (volatility clustering), shocks are Student-t
(fat tails) plus rare news jumps, log price mean-reverts slowly to a plausible anchor level,
daily moves are clipped to the dated price limit of ``kline.rules`` (limit days happen: a
ChiNext stock reaches +20 % only from 2020-08-24), stocks have occasional suspensions (no
row), and volume rises with |return|.

Instrument facts (``synthetic_facts``): a stock lists no earlier than its board opened
(STAR 2019-07-22, BSE 2021-11-15), some listings fall inside the history (their first day
pops above the issue price, which is the hidden path's last close), and some stocks spend a
period under ST (their moves then obey the ST limit). About ``DELIST_SHARE`` of the other
stocks (never the named ones of ``_KNOWN``, so the default market has none) delist inside the
history: ``delist_date`` is a session between 500 sessions after listing and mid-2025, the
stock is *ST for its last 120-250 sessions before it (``ST_SCHEMA``; its earlier ST period, if
any, is dropped) and has no bar from that date on. Indices list at the epoch, never ST.

Planted signal (``SyntheticProvider(signal=rho)``, default 0 = off, bars unchanged): each
stock gets a hidden daily factor ``s_t ~ N(0, 1)`` (its own draws, so the other draws do
not move) that shows in that day's volume (log volume + ``SIGNAL_VOLUME_LOADING * s_t``) and
drives the next session's shock: ``vol_{t+1} * (eps_{t+1} + rho * s_t)``. So the correlation
of ``s_t`` with the next standardised shock is ``rho / sqrt(1 + rho^2)`` (about ``rho`` for
small ``rho``), before limits, jumps and suspensions; a predictor that sees ``s_t`` only
through ``volume_z_20`` (correlation with ``s_t`` about 0.8) gets a daily rank IC of roughly
``0.8 * rho``. Indices carry no signal. ``synthetic_universe(n)`` names ``n`` stocks across
the boards for universes of any size; ``universe_members`` is point in time (listed on or
before the range's end, not delisted before its start).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from kline.calendar import A_SHARE_CALENDAR, market_sessions
from kline.instruments import instrument, validate_symbol
from kline.rules import LISTING_SCHEMA, ST_SCHEMA, InstrumentFacts, empty_frame, limit_table
from kline.schema import BAR_COLUMNS, empty_bars

EPOCH = dt.date(2000, 1, 4)  # first synthetic session of every symbol
_T_DF = 4.0
_DAYS = 366
# name: (anchor level, daily volatility, mean volume in shares)
_KNOWN = {
    "000001.SH": (3000.0, 0.010, 3.2e10),
    "000300.SH": (3800.0, 0.011, 1.4e10),
    "600519.SH": (1600.0, 0.016, 3.5e6),
    "000001.SZ": (12.0, 0.017, 1.1e8),
    "300750.SZ": (200.0, 0.025, 2.5e7),
    "688981.SH": (50.0, 0.028, 6.0e7),
}
_BOARD_VOL = {"index": 0.010, "main": 0.018, "chinext": 0.025, "star": 0.028, "bse": 0.030}
# real listing dates of the named stocks (before EPOCH: listed for the whole history)
_LISTED = {"600519.SH": dt.date(2001, 8, 27), "000001.SZ": dt.date(1991, 4, 3),
           "300750.SZ": dt.date(2018, 6, 11), "688981.SH": dt.date(2020, 7, 16)}
_BOARD_OPEN = {"chinext": dt.date(2009, 10, 30), "star": dt.date(2019, 7, 22), "bse": dt.date(2021, 11, 15)}
_LAST_LISTING = dt.date(2025, 6, 30)
SIGNAL_VOLUME_LOADING = 0.5  # how strongly the planted factor shows in log volume
UNIVERSE_SIZES = {"csi300": 300, "all": 5000}  # SyntheticProvider.universe_members
MAX_UNIVERSE = 9000  # synthetic_universe: STAR's one prefix holds 1000 codes (11 %)
# synthetic_universe: (board share, code prefixes, suffix), about the market's mix of listings
_UNIVERSE_MIX = (
    (0.34, ("600", "601", "603", "605"), "SH"),
    (0.28, ("000", "001", "002", "003"), "SZ"),
    (0.22, ("300", "301"), "SZ"),
    (0.11, ("688",), "SH"),
    (0.05, ("830", "831", "832", "833", "835", "836", "837", "838", "839", "870", "871", "872", "873"), "BJ"),
)
_FACTS_END = dt.date(2026, 12, 31)  # ST periods fall before this
DELIST_SHARE = 0.04  # share of the stocks outside _KNOWN that delist inside the history
_LAST_DELISTING = dt.date(2025, 6, 30)


@functools.lru_cache(maxsize=16384)
def _symbol_key(symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "little")


def _params(symbol: str) -> tuple[float, float, float]:
    if symbol in _KNOWN:
        return _KNOWN[symbol]
    inst = instrument(symbol)
    u = np.random.default_rng([_symbol_key(symbol), 7]).random(3)
    if inst.is_index:
        return float(1000 * np.exp(2.0 * u[0])), _BOARD_VOL["index"], float(5e9 * np.exp(2 * u[1]))
    level = float(np.exp(np.log(4.0) + u[0] * np.log(80.0 / 4.0)))  # 4 to 80 CNY
    return level, _BOARD_VOL[inst.board], float(np.exp(np.log(2e6) + u[1] * np.log(200.0)))


def _year_draws(seed: int, symbol: str, year: int) -> np.ndarray:
    """(366, 9) draws for one symbol-year, indexed by day of year - 1."""
    rng = np.random.default_rng([seed, _symbol_key(symbol), year])
    out = np.empty((_DAYS, 9))
    out[:, 0] = rng.standard_t(_T_DF, size=_DAYS) / np.sqrt(_T_DF / (_T_DF - 2))
    out[:, 1:5] = rng.standard_normal(size=(_DAYS, 4))  # vol shock, gap, high, low/volume
    out[:, 5:] = rng.random(size=(_DAYS, 4))  # jump, jump size, suspension start, suspension length
    return out


_Facts = tuple[dt.date, tuple[tuple[dt.date, dt.date, str], ...], "dt.date | None"]


@functools.lru_cache(maxsize=16384)
def _facts(seed: int, symbol: str) -> _Facts:
    """(listing date, ST periods as (start, end inclusive, name), delisting date or None) of
    one symbol; it has no bar on or after its delisting date."""
    inst = instrument(symbol)
    if inst.is_index:
        return EPOCH, (), None
    u = np.random.default_rng([seed, _symbol_key(symbol), 11]).random(6)
    opened = max(EPOCH, _BOARD_OPEN.get(inst.board, EPOCH))
    if symbol.startswith(("301", "302")):
        opened = dt.date(2020, 8, 24)  # ChiNext codes issued under the registration reform
    if symbol in _LISTED:
        listed = max(_LISTED[symbol], opened)
    elif opened > EPOCH or u[0] < 0.2:  # a new board's stocks list after it opened
        span = (_LAST_LISTING - opened).days
        listed = opened + dt.timedelta(days=int(u[1] * span))
    else:
        listed = EPOCH
    # ST periods are placed within a fixed span, so they do not move as calendars grow
    market = market_sessions(A_SHARE_CALENDAR)
    sessions = market[(market >= np.datetime64(listed, "D")) & (market <= np.datetime64(_FACTS_END, "D"))]
    listed = pd.Timestamp(sessions[0]).date()
    periods: tuple[tuple[dt.date, dt.date, str], ...] = ()
    if symbol not in _LISTED and u[2] < 0.2 and len(sessions) > 800:
        a = 250 + int(u[3] * (len(sessions) - 800))
        b = a + 120 + int(u[4] * 380)
        end = pd.Timestamp(sessions[min(b, len(sessions) - 1)]).date()
        name = ("*ST" if u[5] < 0.5 else "ST") + symbol[:6]
        periods = ((pd.Timestamp(sessions[a]).date(), end, name),)
    # its own draws, so listings and ST periods of the stocks that stay do not move
    v = np.random.default_rng([seed, _symbol_key(symbol), 12]).random(3)
    last = int(np.searchsorted(sessions, np.datetime64(_LAST_DELISTING, "D")))
    if symbol in _KNOWN or v[0] >= DELIST_SHARE or last <= 500:
        return listed, periods, None
    k = 500 + int(v[1] * (last - 500))
    a = max(k - 120 - int(v[2] * 130), 1)
    periods = ((pd.Timestamp(sessions[a]).date(), pd.Timestamp(sessions[k - 1]).date(), "*ST" + symbol[:6]),)
    return listed, periods, pd.Timestamp(sessions[k]).date()


def synthetic_facts(seed: int, symbols: Sequence[str]) -> InstrumentFacts:
    """Listing and delisting dates and ST periods of ``symbols`` in the synthetic market
    (source ``synthetic``); no exchange limit prices."""
    # rows as columns (a frame from lists costs a fraction of one from records: _path makes one a symbol)
    lst: list[tuple] = []
    st: list[tuple] = []
    for sym in dict.fromkeys(symbols):
        listed, periods, delisted = _facts(seed, validate_symbol(sym))
        lst.append((sym, listed, delisted, "synthetic"))
        st += [(sym, a, b, n, "synthetic") for a, b, n in periods]
    return InstrumentFacts(
        listings=pd.DataFrame(dict(zip(LISTING_SCHEMA.names, map(list, zip(*lst, strict=True)), strict=True)))
        if lst else empty_frame(LISTING_SCHEMA),
        st_periods=pd.DataFrame(dict(zip(ST_SCHEMA.names, map(list, zip(*st, strict=True)), strict=True)))
        if st else empty_frame(ST_SCHEMA),
    )


def synthetic_universe(n: int) -> list[str]:
    """``n`` distinct stock codes over the boards (SSE and SZSE main, ChiNext, STAR, BSE) in
    fixed shares (largest remainder); a board's codes take its prefixes in turn. The same
    ``n`` always names the same stocks; at most ``MAX_UNIVERSE``."""
    if not 1 <= n <= MAX_UNIVERSE:
        raise ValueError(f"a synthetic universe holds 1 to {MAX_UNIVERSE} stocks, got {n}")
    quota = [share * n for share, _, _ in _UNIVERSE_MIX]
    counts = [int(q) for q in quota]
    for i in sorted(range(len(quota)), key=lambda i: counts[i] - quota[i])[: n - sum(counts)]:
        counts[i] += 1
    out: list[str] = []
    for count, (_, prefixes, suffix) in zip(counts, _UNIVERSE_MIX, strict=True):
        out += [f"{prefixes[j % len(prefixes)]}{j // len(prefixes) + 1:03d}.{suffix}" for j in range(count)]
    return out


def _signal_draws(seed: int, symbol: str, year: int) -> np.ndarray:
    """(366,) planted-factor draws of one symbol-year, indexed by day of year - 1."""
    return np.random.default_rng([seed, _symbol_key(symbol), year, 16]).standard_normal(_DAYS)


def _year_slices(sessions: np.ndarray) -> tuple[tuple[int, int, int, np.ndarray], ...]:
    """(year, first row, end row, day of year - 1 of each row) of sorted ``sessions``."""
    return _year_slices_of(sessions.astype("datetime64[D]").tobytes())


@functools.lru_cache(maxsize=16)
def _year_slices_of(key: bytes) -> tuple[tuple[int, int, int, np.ndarray], ...]:
    # the same sessions for every symbol of a process: computed once, keyed by their bytes
    sessions = np.frombuffer(key, dtype="datetime64[D]")
    years = sessions.astype("datetime64[Y]")
    doy = (sessions - years).astype(int)
    bounds = np.flatnonzero(np.diff(years.astype(int))) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(sessions)]
    doy.setflags(write=False)
    return tuple((int(years[a].astype(int)) + 1970, int(a), int(b), doy[a:b]) for a, b in zip(starts, ends, strict=True))


def _horizon(end: dt.date) -> int:
    """The last year a path is built through for a fetch ending on ``end``: every bar depends
    only on draws up to its own day, so a shorter path gives the same bars and saves the years
    the calendar holds beyond today (to 2032)."""
    return max(end.year, dt.date.today().year)


@functools.lru_cache(maxsize=1024)
def _path(seed: int, symbol: str, signal: float = 0.0, horizon: int = 9999) -> dict[str, np.ndarray]:
    """The symbol's bar history from EPOCH to its last session in year ``horizon`` (at most
    the calendar's last session), as columns."""
    inst = instrument(symbol)
    anchor, base_vol, base_volume = _params(symbol)
    market = market_sessions(A_SHARE_CALENDAR)  # the market's own calendar, not a run's layers
    a, b = np.searchsorted(market, [np.datetime64(EPOCH, "D"), np.datetime64(f"{horizon + 1}-01-01", "D")])
    sessions = market[a:b]
    n = len(sessions)
    years = _year_slices(sessions)
    draws = np.empty((n, 9))
    for y, lo, hi, doy in years:
        draws[lo:hi] = _year_draws(seed, symbol, y)[doy]
    eps, z_vol, z_gap, z_hi, z_lo, u_jump, u_size, u_susp, u_len = draws.T

    # log-vol AR(1): h_t = 0.98 h_{t-1} + 0.07 * z  -> clustering with persistent regimes
    h = lfilter([0.07], [1.0, -0.98], z_vol)
    # stationary variance of that AR(1), 0.07^2 / (1 - 0.98^2): a bar never depends on how far
    # the calendar reaches (a sample variance over the path would)
    vol = base_vol * np.exp(h - 0.5 * 0.07**2 / (1 - 0.98**2))
    shock = vol * eps
    planted = np.zeros(n)
    if signal and not inst.is_index:
        for y, lo, hi, doy in years:
            planted[lo:hi] = _signal_draws(seed, symbol, y)[doy]
        shock[1:] += vol[1:] * signal * planted[:-1]  # yesterday's factor moves today
    jump_size = 0.02 if inst.is_index else 0.05
    jump = np.where(u_jump < 0.003, np.sign(u_size - 0.5) * jump_size * (1 + np.abs(2 * u_size - 1)), 0.0)
    # x = log(P / anchor) mean-reverts slowly (half-life ~ 140 sessions)
    x = lfilter([1.0], [1.0, -0.995], shock + jump)
    ret = np.expm1(np.diff(x, prepend=0.0))

    suspended = np.zeros(n, dtype=bool)
    if not inst.is_index:
        for i in np.flatnonzero(u_susp < 0.002):
            suspended[i : i + 1 + int(u_len[i] * 8)] = True
        ret[suspended] = 0.0
    listed, _, delisted = _facts(seed, symbol)
    first = int(np.searchsorted(sessions, np.datetime64(listed, "D")))
    if inst.is_index:
        up_lim = down_lim = np.full(n, 0.09)  # indices have no limit; keep their tails plausible
    else:
        lim = limit_table(symbol, sessions, synthetic_facts(seed, [symbol]), inst)
        # no limit (before a board's rules, a listing's first sessions): still plausible moves
        up_lim, down_lim = np.nan_to_num(lim.up, nan=0.5), np.nan_to_num(lim.down, nan=0.5)
        if 0 < first < n and np.isnan(lim.up[first]):
            ret[first] = 0.3 + 1.2 * u_size[first]  # a new listing pops above its issue price
        elif 0 < first < n:
            ret[first] = up_lim[first] * (0.5 + 0.5 * u_size[first])
    ret = np.clip(ret, -down_lim, up_lim)

    close = np.round(anchor * np.cumprod(1.0 + ret), 2)
    pre_close = np.concatenate([[round(anchor, 2)], close[:-1]])
    gap = np.exp(0.3 * vol * z_gap)
    open_ = pre_close * gap
    high = np.maximum(open_, close) * np.exp(0.6 * vol * np.abs(z_hi))
    low = np.minimum(open_, close) * np.exp(-0.6 * vol * np.abs(z_lo))
    if not inst.is_index:
        up, down = np.round(pre_close * (1 + up_lim), 2), np.round(pre_close * (1 - down_lim), 2)
        open_, high, low = np.clip(open_, down, up), np.clip(high, down, up), np.clip(low, down, up)
    open_, high, low = np.round(open_, 2), np.round(high, 2), np.round(low, 2)
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])

    # volume rises with |return| and with the volatility regime
    volume = base_volume * np.exp(0.45 * np.abs(eps) + 0.4 * h + 0.25 * z_lo * np.sign(z_hi) - 0.3)
    if signal and not inst.is_index:
        volume = volume * np.exp(SIGNAL_VOLUME_LOADING * planted)
    if inst.asset_type == "stock":
        volume = np.maximum(np.round(volume / 100.0), 1.0) * 100.0
    else:
        volume = np.round(volume)
    amount = np.round(volume * (open_ + high + low + close) / 4.0, 2)

    keep = ~suspended
    keep[: max(first, 1)] = False  # the epoch row only seeds pre_close; nothing before listing
    if 0 < first < n:
        keep[first] = True  # a listing trades on its first day
    if delisted is not None:
        keep[np.searchsorted(sessions, np.datetime64(delisted, "D")):] = False
    # After a suspension, pre_close is the last traded close, as the exchange reports it.
    last = np.maximum.accumulate(np.where(keep, np.arange(n), -1))  # last traded row so far
    prev = np.concatenate([[-1], last[:-1]])
    pre = np.where(prev >= 0, close[np.maximum(prev, 0)], pre_close)
    cols = {"trade_date": sessions[keep], "open": open_[keep], "high": high[keep], "low": low[keep],
            "close": close[keep], "pre_close": pre[keep], "volume": volume[keep], "amount": amount[keep]}
    for v in cols.values():
        v.setflags(write=False)  # cached and shared between calls
    return cols


class SyntheticProvider:
    """Deterministic synthetic bars and instrument facts for any well-formed A-share code;
    ``signal`` > 0 plants the documented cross-sectional signal (module doc) in the stocks."""

    name = "synthetic"

    def __init__(self, seed: int = 20240101, signal: float = 0.0):
        self.seed = int(seed)
        self.signal = float(signal)
        if not np.isfinite(self.signal) or self.signal < 0:
            raise ValueError(f"signal must be a finite number >= 0, got {signal}")

    def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Canonical bars on XSHG sessions in ``[start, end]``; suspended days have no row."""
        lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
        parts: dict[str, list[np.ndarray]] = {}
        names: list[np.ndarray] = []
        horizon = _horizon(end)
        for sym in symbols:
            validate_symbol(sym)
            p = _path(self.seed, sym, self.signal, horizon)
            d = p["trade_date"]
            i, j = np.searchsorted(d, lo, "left"), np.searchsorted(d, hi, "right")
            if j <= i:
                continue
            for k, v in p.items():
                parts.setdefault(k, []).append(v[i:j])
            names.append(np.full(j - i, sym, dtype=object))
        if not names:
            return empty_bars()
        cols = {k: np.concatenate(v) for k, v in parts.items()}
        cols["trade_date"] = cols["trade_date"].astype(object)  # datetime.date; 3x faster than .dt.date
        df = pd.DataFrame({"symbol": np.concatenate(names), **cols})
        df["source"] = self.name
        df["ingested_at"] = pd.Timestamp.now(tz="UTC")
        return df[BAR_COLUMNS]

    def universe_members(self, name: str, start: dt.date, end: dt.date) -> list[str]:
        """``csi300``: the first 300 of ``synthetic_universe``, ``all``: 5 000 stocks
        (``UNIVERSE_SIZES``), each once listed and until delisted (listing date on or before
        ``end``, no delisting date before ``start``, as tushare's ``all``). The index
        membership is fixed."""
        if name not in UNIVERSE_SIZES:
            raise ValueError(f"unknown universe {name!r}; the synthetic market offers {', '.join(UNIVERSE_SIZES)}")
        out = []
        for s in synthetic_universe(UNIVERSE_SIZES[name]):
            listed, _, delisted = _facts(self.seed, s)
            if listed <= end and (delisted is None or delisted >= start):
                out.append(s)
        return out

    def fetch_instrument_facts(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> InstrumentFacts:
        """Listing and delisting dates and ST periods of ``symbols`` (``synthetic_facts``);
        the range is not used (facts are per symbol)."""
        return synthetic_facts(self.seed, symbols)
