"""The embedded synthetic A-share market: no network, no token, deterministic.

Every random draw for a day comes from a generator seeded by (seed, symbol, year) and is
indexed by the day of the year, and each symbol's path starts at a fixed epoch. So the bar
for (seed, symbol, trade_date) never depends on which range was asked for.

Model per symbol: log-volatility is an AR(1) (volatility clustering), shocks are Student-t
(fat tails) plus rare news jumps, log price mean-reverts slowly to a plausible anchor level,
daily moves are clipped to the board's price limit (limit days happen), stocks have
occasional suspensions (no row), and volume rises with |return|.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from kline.calendar import A_SHARE_CALENDAR, calendar_bounds, sessions_array
from kline.instruments import instrument, validate_symbol
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
_BOARD_VOL = {"index": 0.010, "main": 0.018, "chinext": 0.025, "star": 0.028, "bse": 0.030, "st": 0.020}


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
    t = rng.standard_t(_T_DF, size=_DAYS) / np.sqrt(_T_DF / (_T_DF - 2))
    z = rng.standard_normal(size=(_DAYS, 4))  # vol shock, gap, high, low/volume
    u = rng.random(size=(_DAYS, 4))  # jump, jump size, suspension start, suspension length
    return np.column_stack([t, z, u])


@functools.lru_cache(maxsize=1024)
def _path(seed: int, symbol: str) -> dict[str, np.ndarray]:
    """The symbol's full bar history from EPOCH to the calendar's last session, as columns."""
    inst = instrument(symbol)
    anchor, base_vol, base_volume = _params(symbol)
    sessions = sessions_array(EPOCH, calendar_bounds(A_SHARE_CALENDAR)[1])
    n = len(sessions)
    years = sessions.astype("datetime64[Y]").astype(int) + 1970
    doy = (sessions - sessions.astype("datetime64[Y]")).astype(int)
    draws = np.empty((n, 9))
    for y in np.unique(years):
        m = years == y
        draws[m] = _year_draws(seed, symbol, int(y))[doy[m]]
    eps, z_vol, z_gap, z_hi, z_lo, u_jump, u_size, u_susp, u_len = draws.T

    # log-vol AR(1): h_t = 0.98 h_{t-1} + 0.07 * z  -> clustering with persistent regimes
    h = lfilter([0.07], [1.0, -0.98], z_vol)
    vol = base_vol * np.exp(h - 0.5 * h.var())
    shock = vol * eps
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
    limit = inst.price_limit
    if limit is not None:
        ret = np.clip(ret, -limit, limit)
    else:
        ret = np.clip(ret, -0.09, 0.09)  # indices have no limit; keep their tails plausible

    close = np.round(anchor * np.cumprod(1.0 + ret), 2)
    pre_close = np.concatenate([[round(anchor, 2)], close[:-1]])
    gap = np.exp(0.3 * vol * z_gap)
    open_ = pre_close * gap
    high = np.maximum(open_, close) * np.exp(0.6 * vol * np.abs(z_hi))
    low = np.minimum(open_, close) * np.exp(-0.6 * vol * np.abs(z_lo))
    if limit is not None:
        up, down = np.round(pre_close * (1 + limit), 2), np.round(pre_close * (1 - limit), 2)
        open_, high, low = np.clip(open_, down, up), np.clip(high, down, up), np.clip(low, down, up)
    open_, high, low = np.round(open_, 2), np.round(high, 2), np.round(low, 2)
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])

    # volume rises with |return| and with the volatility regime
    volume = base_volume * np.exp(0.45 * np.abs(eps) + 0.4 * h + 0.25 * z_lo * np.sign(z_hi) - 0.3)
    if inst.asset_type == "stock":
        volume = np.maximum(np.round(volume / 100.0), 1.0) * 100.0
    else:
        volume = np.round(volume)
    amount = np.round(volume * (open_ + high + low + close) / 4.0, 2)

    keep = ~suspended
    keep[0] = False  # the epoch row only seeds pre_close
    # After a suspension, pre_close is the last traded close, as the exchange reports it.
    last_close = pd.Series(np.where(keep, close, np.nan)).ffill().shift(1).to_numpy()
    pre = np.where(np.isnan(last_close), pre_close, last_close)
    cols = {"trade_date": sessions[keep], "open": open_[keep], "high": high[keep], "low": low[keep],
            "close": close[keep], "pre_close": pre[keep], "volume": volume[keep], "amount": amount[keep]}
    for v in cols.values():
        v.setflags(write=False)  # cached and shared between calls
    return cols


class SyntheticProvider:
    """Deterministic synthetic bars for any well-formed A-share code."""

    name = "synthetic"

    def __init__(self, seed: int = 20240101):
        self.seed = int(seed)

    def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Canonical bars on XSHG sessions in ``[start, end]``; suspended days have no row."""
        lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
        parts: dict[str, list[np.ndarray]] = {}
        names: list[np.ndarray] = []
        for sym in symbols:
            validate_symbol(sym)
            p = _path(self.seed, sym)
            d = p["trade_date"]
            i, j = np.searchsorted(d, lo, "left"), np.searchsorted(d, hi, "right")
            if j <= i:
                continue
            for k, v in p.items():
                parts.setdefault(k, []).append(v[i:j])
            names.append(np.full(j - i, sym, dtype=object))
        if not names:
            return empty_bars()
        df = pd.DataFrame({k: np.concatenate(v) for k, v in parts.items()})
        df.insert(0, "symbol", np.concatenate(names))
        df["trade_date"] = df["trade_date"].dt.date
        df["source"] = self.name
        df["ingested_at"] = pd.Timestamp.now(tz="UTC")
        return df[BAR_COLUMNS]
