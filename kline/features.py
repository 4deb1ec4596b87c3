"""Features, targets, per-symbol scalers and model windows built from curated bars.

The *panel* (``build_features``) has one row per (symbol, trade_date), sorted by both:
``symbol, trade_date, close`` (adjusted), the configured feature columns, ``target`` (the
next-session log return, NaN on a symbol's last row) and ``target_date`` (the next row's
session, or the next calendar session after the last row). Every feature at row ``t`` uses
bars dated ``<= t`` only; ``target`` is the only column that looks ahead.

Feature names (``FeatureConfig.features``), all point in time (row ``t`` reads bars dated
``<= t``; "sessions" below are the symbol's own rows, so a suspension is skipped over):

- ``log_return``, ``return_N``: log close change over 1 / N sessions; ``momentum_N`` the sum
  of the last N log returns, ``volatility_N`` their std (ddof 1).
- ``hl_range`` log(high / low); ``open_gap`` log(open / previous close);
  ``log_volume_change`` change of log(1 + volume); ``close``, ``log_close``.
- ``volume_z_N``, ``amount_z_N``: today's log(1 + volume) (or amount) as a z-score against
  the N sessions before today (0 when they are constant; NaN until N sessions exist).
- ``turnover``: the bars' own ``turnover`` column (percent of tradable shares traded, as the
  vendor reports it); a FeatureError when the bars do not carry it.
- ``market_return``: the log return of the market index (``market_symbol``, default the SSE
  Composite ``000001.SH``) on the row's session: from ``market_bars`` when given, else from
  the index's own rows in ``bars``; a FeatureError when neither has it. NaN on a session the
  index has no bar (a suspended stock still sees the index's one-session return).
- ``rank_<feature>``: percentile rank of ``<feature>`` among the stocks with a value on the
  same session, ``(rank - 0.5) / n`` in (0, 1); an index row gets 0.5 (neutral). Needs at least
  ``MIN_RANK_STOCKS`` (30) distinct stocks in the bars, else a FeatureError.

The leakage boundary is ``train_end``: a row or a window belongs to training when its
``target_date <= train_end``, and scalers are fitted on those rows only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from kline.calendar import A_SHARE_CALENDAR, next_session
from kline.config import FeatureConfig
from kline.instruments import instrument, is_a_share_code

SCALERS = ("zscore", "minmax")
_ROLLING_RE = re.compile(r"^(volatility|momentum|return|volume_z|amount_z)_(\d+)$")
_PLAIN_FEATURES = ("log_return", "hl_range", "open_gap", "log_volume_change", "close", "log_close",
                   "turnover", "market_return")
_RANK_PREFIX = "rank_"
MARKET_INDEX = "000001.SH"  # the SSE Composite: market_return's default index
MIN_RANK_STOCKS = 30  # rank_<feature> needs at least this many stocks in the universe


class FeatureError(ValueError):
    """An unknown feature, target or scaler name, or an ill-formed input frame."""


def rolling_horizon(name: str) -> int | None:
    """N of a trailing feature (``volatility_N``, ``return_N``, ``volume_z_N``, ...); None otherwise."""
    m = _ROLLING_RE.match(name.removeprefix("rank_"))
    return int(m.group(2)) if m else None


def check_feature_config(cfg: FeatureConfig) -> None:
    """Raise FeatureError naming the first unknown feature, target or scaler."""
    for name in cfg.features:
        if not _known_feature(name):
            raise FeatureError(
                f"unknown feature {name!r}: choose from {', '.join(_PLAIN_FEATURES)}, volatility_N, "
                "momentum_N, return_N, volume_z_N, amount_z_N (N >= 1) or rank_<feature>"
            )
    if cfg.window < 1:
        raise FeatureError(f"window must be >= 1, got {cfg.window}")
    if not cfg.features:
        raise FeatureError("no features configured")


def _known_feature(name: str) -> bool:
    if name.startswith(_RANK_PREFIX):
        base = name[len(_RANK_PREFIX):]
        return not base.startswith(_RANK_PREFIX) and _known_feature(base)
    m = _ROLLING_RE.match(name)
    return name in _PLAIN_FEATURES or (m is not None and int(m.group(2)) >= 1)


def is_stock(symbol: str) -> bool:
    """Whether a panel symbol is a stock (not an A-share index); foreign tickers count as stocks."""
    return not (is_a_share_code(symbol) and instrument(symbol).is_index)


def feature_fingerprint(cfg: FeatureConfig) -> str:
    """Short hash of everything that shapes the panel and the windows."""
    d = {"features": list(cfg.features), "target": cfg.target, "scaler": cfg.scaler, "window": cfg.window}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _adjust(df: pd.DataFrame, adj_factor: pd.DataFrame | None) -> pd.DataFrame:
    """Scale open/high/low/close by ``factor / first factor`` of each symbol.

    Anchored at the first row, not the latest factor (tushare's qfq), so that a corporate
    action after ``train_end`` never rescales inputs dated before it.
    """
    if adj_factor is None or adj_factor.empty:
        return df
    f = adj_factor[["symbol", "trade_date", "adj_factor"]].drop_duplicates(["symbol", "trade_date"], keep="last")
    df = df.merge(f, on=["symbol", "trade_date"], how="left")
    factor = df.groupby("symbol", sort=False)["adj_factor"].transform(lambda s: s.ffill().bfill())
    first = factor.groupby(df["symbol"], sort=False).transform("first")
    ratio = (factor / first).fillna(1.0).to_numpy()
    for c in ("open", "high", "low", "close"):
        df[c] = df[c].to_numpy() * ratio
    return df.drop(columns="adj_factor")


def build_features(
    bars: pd.DataFrame,
    cfg: FeatureConfig,
    adj_factor: pd.DataFrame | None = None,
    calendar: str = A_SHARE_CALENDAR,
    market_bars: pd.DataFrame | None = None,
    market_symbol: str = MARKET_INDEX,
) -> pd.DataFrame:
    """The panel (see module doc) from canonical bars, prices adjusted by ``adj_factor``
    (``symbol, trade_date, adj_factor``) where given. Vectorised over all symbols at once.

    ``market_bars`` (``symbol, trade_date, close``) supply the index for ``market_return``
    when ``bars`` do not hold ``market_symbol``. Point in time: pass only bars dated
    ``<= run_date``; no row reads a later bar except through ``target``.
    """
    check_feature_config(cfg)
    need = ["symbol", "trade_date", "open", "high", "low", "close", "volume"]
    wanted = {_base(n) for n in cfg.features}
    need += [c for c, used in (("amount", any(n.startswith("amount_z_") for n in wanted)),
                               ("turnover", "turnover" in wanted)) if used]
    missing = [c for c in need if c not in bars.columns]
    if "turnover" in missing:
        raise FeatureError("feature 'turnover' needs a 'turnover' column in the bars; this provider "
                           "does not supply one (drop the feature)")
    if missing:
        raise FeatureError(f"bars lack column(s): {', '.join(missing)}")
    df = bars[need].sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True)
    df = _adjust(df, adj_factor)
    g = _Groups(df["symbol"].to_numpy())
    c = df["close"].to_numpy("float64")
    market = _market_returns(df, market_bars, market_symbol) if "market_return" in wanted else None
    cols, target = _feature_columns(df, cfg.features, g, market)
    tdate = df["trade_date"].to_numpy()
    target_date = np.empty(g.n, dtype=object)
    target_date[:-1] = tdate[1:]
    for i in np.flatnonzero(g.last):
        target_date[i] = next_session(tdate[i], calendar)
    panel = pd.DataFrame({"symbol": g.sym, "trade_date": tdate, "close": c})
    for name, values in cols.items():
        panel[name] = values
    panel["target"] = target
    panel["target_date"] = target_date
    return panel


def _base(name: str) -> str:
    return name[len(_RANK_PREFIX):] if name.startswith(_RANK_PREFIX) else name


def _market_returns(df: pd.DataFrame, market_bars: pd.DataFrame | None, symbol: str) -> pd.Series:
    """Log return of the index ``symbol`` per session (index: trade_date), over its own
    consecutive bars; from ``market_bars`` when given, else from its rows in ``df``."""
    src = market_bars if market_bars is not None else df
    if "symbol" in src.columns:
        src = src[src["symbol"] == symbol]
    if src.empty:
        where = "market_bars" if market_bars is not None else "the bars (add it to the universe)"
        raise FeatureError(f"feature 'market_return' needs the index {symbol} in {where}")
    idx = src[["trade_date", "close"]].drop_duplicates("trade_date", keep="last").sort_values("trade_date")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(idx["close"].to_numpy("float64"))
    ret = np.diff(r, prepend=np.nan)
    return pd.Series(ret, index=pd.Index(_as_d64(idx["trade_date"].to_numpy())))


class _Groups:
    """Row positions of a frame sorted by (symbol, trade_date): each symbol's first and last
    row, the position inside its history, and lag/lead that never cross symbols (NaN there)."""

    def __init__(self, sym: np.ndarray):
        self.sym, self.n = sym, len(sym)
        self.first = np.ones(self.n, dtype=bool)
        self.first[1:] = sym[1:] != sym[:-1]
        self.last = np.ones(self.n, dtype=bool)
        self.last[:-1] = self.first[1:]
        starts = np.flatnonzero(self.first)
        self.pos = np.arange(self.n) - np.repeat(starts, np.diff(np.append(starts, self.n)))

    def lag(self, a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[1:] = a[:-1]
        out[self.first] = np.nan
        return out

    def lead(self, a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[:-1] = a[1:]
        out[self.last] = np.nan
        return out


def _feature_columns(
    df: pd.DataFrame, names: Sequence[str], g: _Groups, market: pd.Series | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(feature name -> column, target = next log close - log close) for the sorted bars."""
    o, h, lo, c = (df[k].to_numpy("float64") for k in ("open", "high", "low", "close"))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_c = np.log(c)
        ret = log_c - g.lag(log_c)
        base: dict[str, np.ndarray] = {}

        def column(name: str) -> np.ndarray:
            if name not in base:
                base[name] = _one_feature(name, df, g, o, h, lo, log_c, ret, market)
            return base[name]

        cols: dict[str, np.ndarray] = {}
        for name in names:
            if name == "close":
                continue  # the panel's own close column
            if name.startswith(_RANK_PREFIX):
                cols[name] = _session_rank(df, column(_base(name)))
            else:
                cols[name] = column(name)
        return cols, g.lead(log_c) - log_c


def _one_feature(name: str, df: pd.DataFrame, g: _Groups, o: np.ndarray, h: np.ndarray, lo: np.ndarray,
                 log_c: np.ndarray, ret: np.ndarray, market: pd.Series | None) -> np.ndarray:
    """One non-rank feature column of the sorted bars (names: module doc)."""
    if name == "log_return":
        return ret
    if name == "hl_range":
        return np.log(h / lo)
    if name == "open_gap":
        return np.log(o) - g.lag(log_c)
    if name == "log_volume_change":
        lv = np.log1p(np.maximum(df["volume"].to_numpy("float64"), 0.0))
        return lv - g.lag(lv)
    if name == "log_close":
        return log_c
    if name == "close":
        return df["close"].to_numpy("float64")
    if name == "turnover":
        return df["turnover"].to_numpy("float64")
    if name == "market_return":
        return market.reindex(pd.Index(_as_d64(df["trade_date"].to_numpy()))).to_numpy("float64")
    kind, k = _ROLLING_RE.match(name).groups()
    k = int(k)
    if kind == "return":
        out = np.full(g.n, np.nan)
        out[k:] = log_c[k:] - log_c[:-k]
        out[g.pos < k] = np.nan
        return out
    if kind in ("volume_z", "amount_z"):
        col = "volume" if kind == "volume_z" else "amount"
        return _trailing_z(np.log1p(np.maximum(df[col].to_numpy("float64"), 0.0)), k, g.pos)
    return _rolling(ret, k, g.pos, kind)


def _trailing_z(x: np.ndarray, k: int, pos: np.ndarray) -> np.ndarray:
    """``(x[t] - mean) / std`` (ddof 1 when k > 1) of the k rows before ``t`` of the same
    symbol; 0 where those rows are constant, NaN until a symbol has k earlier rows."""
    n = len(x)
    out = np.full(n, np.nan)
    if n <= k:
        return out
    win = sliding_window_view(x, k)[: n - k]  # row j covers x[j .. j+k-1], the k rows before j + k
    mean = win.mean(axis=1)
    sd = win.std(axis=1, ddof=1) if k > 1 else np.zeros(n - k)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 1e-12, (x[k:] - mean) / sd, 0.0)
    z[~np.isfinite(mean) | ~np.isfinite(x[k:])] = np.nan
    out[k:] = z
    out[pos < k] = np.nan
    return out


def _session_rank(df: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """Per-session percentile rank ``(rank - 0.5) / n`` of ``values`` among the stock rows
    with a finite value that session; index rows 0.5, rows without a value NaN."""
    sym = df["symbol"].to_numpy()
    uniq, inv = np.unique(sym.astype(str), return_inverse=True)
    stock = np.array([is_stock(s) for s in uniq], dtype=bool)
    if stock.sum() < MIN_RANK_STOCKS:
        raise FeatureError(
            f"rank features need a universe of at least {MIN_RANK_STOCKS} stocks; the bars hold {int(stock.sum())}"
        )
    row_stock = stock[inv]
    ok = row_stock & np.isfinite(values)
    frame = pd.DataFrame({"d": df["trade_date"].to_numpy()[ok], "v": values[ok]})
    grp = frame.groupby("d", sort=False)["v"]
    out = np.full(len(values), np.nan)
    out[ok] = ((grp.rank(method="average") - 0.5) / grp.transform("size")).to_numpy()
    out[~row_stock & np.isfinite(values)] = 0.5
    return out


def _rolling(ret: np.ndarray, k: int, pos: np.ndarray, kind: str) -> np.ndarray:
    """Trailing k-row std (``volatility``, ddof=1) or sum (``momentum``) of log returns,
    NaN until a symbol has k returns (its first row has none)."""
    out = np.full(len(ret), np.nan)
    if len(ret) < k or k < 1:
        return out
    win = sliding_window_view(np.nan_to_num(ret), k)  # (n - k + 1, k), row i ends at i + k - 1
    vals = win.std(axis=1, ddof=1) if kind == "volatility" and k > 1 else win.sum(axis=1)
    if kind == "volatility" and k == 1:
        vals = np.zeros_like(vals)
    out[k - 1 :] = vals
    out[pos < k] = np.nan
    return out


def feature_columns(cfg: FeatureConfig) -> list[str]:
    """The panel columns the model reads, in window order (``close`` included if asked)."""
    return list(cfg.features)


def training_target(panel: pd.DataFrame, target: str) -> np.ndarray:
    """Per row, what the model learns before scaling: the next-session log return, or for
    ``seed`` the next close (adjusted price units)."""
    if target == "log_return":
        return panel["target"].to_numpy("float64")
    if target == "seed":
        return panel["close"].to_numpy("float64") * np.exp(panel["target"].to_numpy("float64"))
    raise FeatureError(f"unknown target {target!r}")


def to_log_return(pred: np.ndarray, close: np.ndarray, target: str) -> np.ndarray:
    """Unscaled model output -> predicted log return from ``close`` (``seed``: a next close)."""
    if target == "log_return":
        return pred
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(pred / close)


def train_mask(panel: pd.DataFrame, train_end: dt.date) -> np.ndarray:
    """Rows on the training side of the leakage boundary (``target_date <= train_end``)."""
    return _as_d64(panel["target_date"]) <= np.datetime64(train_end, "D")


def _as_d64(values) -> np.ndarray:
    return pd.to_datetime(pd.Series(values)).to_numpy().astype("datetime64[D]")


@dataclass
class Scaler:
    """Per-symbol affine scaling ``(x - loc) / scale`` of some columns; symbols not seen in
    training use the pooled parameters of all training rows."""

    kind: str
    columns: list[str]
    loc: dict[str, list[float]] = field(default_factory=dict)
    scale: dict[str, list[float]] = field(default_factory=dict)
    pooled_loc: list[float] = field(default_factory=list)
    pooled_scale: list[float] = field(default_factory=list)

    def _params(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uniq, inv = np.unique(np.asarray(symbols, dtype=object).astype(str), return_inverse=True)
        loc = np.array([self.loc.get(s, self.pooled_loc) for s in uniq], dtype="float64").reshape(len(uniq), -1)
        scale = np.array([self.scale.get(s, self.pooled_scale) for s in uniq], dtype="float64").reshape(len(uniq), -1)
        return loc[inv], scale[inv]

    def transform(self, symbols: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``values`` (n, len(columns)) of rows belonging to ``symbols`` (n,) -> scaled."""
        loc, scale = self._params(symbols)
        return (values - loc) / scale

    def inverse(self, symbols: np.ndarray, values: np.ndarray) -> np.ndarray:
        loc, scale = self._params(symbols)
        return values * scale + loc

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "columns": list(self.columns),
            "loc": self.loc,
            "scale": self.scale,
            "pooled_loc": self.pooled_loc,
            "pooled_scale": self.pooled_scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(d["kind"], list(d["columns"]), d["loc"], d["scale"], d["pooled_loc"], d["pooled_scale"])


def fit_scaler(
    symbols: np.ndarray, values: np.ndarray, columns: Sequence[str], kind: str, mask: np.ndarray
) -> Scaler:
    """Per-symbol z-score (mean, std) or min-max (min, max - min) of ``values`` (n, k) over
    the rows where ``mask`` is true (the training span); NaNs ignored, degenerate scales -> 1."""
    if kind not in SCALERS:
        raise FeatureError(f"unknown scaler {kind!r}")
    values = np.asarray(values, dtype="float64").reshape(len(values), -1)
    frame = pd.DataFrame(values[mask], columns=list(columns))
    frame["symbol"] = np.asarray(symbols)[mask]
    g = frame.groupby("symbol", sort=True)
    if kind == "zscore":
        loc, scale = g.mean(), g.std(ddof=0)
        p_loc, p_scale = frame[list(columns)].mean(), frame[list(columns)].std(ddof=0)
    else:
        loc, scale = g.min(), g.max() - g.min()
        p_loc = frame[list(columns)].min()
        p_scale = frame[list(columns)].max() - p_loc
    loc, scale = loc.fillna(0.0), scale.where(scale > 1e-12, 1.0).fillna(1.0)
    p_loc = p_loc.fillna(0.0)
    p_scale = p_scale.where(p_scale > 1e-12, 1.0).fillna(1.0)
    return Scaler(
        kind,
        list(columns),
        {str(s): [float(x) for x in row] for s, row in zip(loc.index, loc.to_numpy(), strict=True)},
        {str(s): [float(x) for x in row] for s, row in zip(scale.index, scale.to_numpy(), strict=True)},
        [float(x) for x in p_loc.to_numpy()],
        [float(x) for x in p_scale.to_numpy()],
    )


@dataclass
class Windows:
    """Model samples, one per (symbol, decision date): ``x`` (batch, window, n_features)
    float32 of scaled features ending at ``trade_date``; ``y`` (batch,) float32 scaled
    training target (NaN where the next session is not known yet)."""

    x: np.ndarray
    y: np.ndarray
    symbol: np.ndarray
    trade_date: np.ndarray  # datetime64[D], the window's last session
    target_date: np.ndarray  # datetime64[D]
    close: np.ndarray  # float64, close at trade_date (adjusted)

    def __len__(self) -> int:
        return len(self.y)

    def select(self, mask: np.ndarray) -> Windows:
        return Windows(*(a[mask] for a in (self.x, self.y, self.symbol, self.trade_date, self.target_date, self.close)))


def make_windows(
    panel: pd.DataFrame,
    columns: Sequence[str],
    window: int,
    scaler: Scaler,
    target_scaler: Scaler,
    target: str = "log_return",
) -> Windows:
    """Every complete window of ``window`` consecutive rows of one symbol with no missing
    feature, built from a strided view (no loop over samples).

    A window ending at row ``t`` reads rows ``t - window + 1 .. t`` only; its label is row
    ``t``'s training target, scaled with ``target_scaler``.
    """
    sym = panel["symbol"].to_numpy()
    n = len(panel)
    raw = panel[list(columns)].to_numpy("float64")
    feats = scaler.transform(sym, raw).astype("float32")
    y = target_scaler.transform(sym, training_target(panel, target).reshape(-1, 1))[:, 0].astype("float32")
    if n < window:
        empty = np.empty((0, window, len(columns)), dtype="float32")
        e = np.empty(0)
        return Windows(empty, e.astype("float32"), e.astype(object), e.astype("datetime64[D]"),
                       e.astype("datetime64[D]"), e.astype("float64"))
    first = np.ones(n, dtype=bool)
    first[1:] = sym[1:] != sym[:-1]
    # a window ending at row t is valid when rows t-window+1..t share the symbol and have no NaN
    seg = np.cumsum(first)
    bad = np.cumsum(~np.isfinite(feats).all(axis=1))
    end = np.arange(window - 1, n)
    begin = end - window + 1
    ok = (seg[end] == seg[begin]) & (bad[end] - np.where(begin > 0, bad[begin - 1], 0) == 0)
    end = end[ok]
    view = sliding_window_view(feats, window, axis=0).transpose(0, 2, 1)  # (n-window+1, window, n_features)
    x = view[end - window + 1]  # gathered copy, (batch, window, n_features), C-contiguous
    return Windows(
        x,
        y[end],
        sym[end],
        _as_d64(panel["trade_date"].to_numpy()[end]),
        _as_d64(panel["target_date"].to_numpy()[end]),
        panel["close"].to_numpy("float64")[end],
    )


@dataclass
class Prepared:
    """Fitted scalers and the windows they produce for one ``train_end``."""

    scaler: Scaler
    target_scaler: Scaler
    windows: Windows

    def train(self, train_end: dt.date) -> Windows:
        """Windows whose target is known by ``train_end`` (the training side)."""
        w = self.windows
        return w.select((w.target_date <= np.datetime64(train_end, "D")) & np.isfinite(w.y))


def prepare(panel: pd.DataFrame, cfg: FeatureConfig, train_end: dt.date) -> Prepared:
    """Fit per-symbol scalers on rows with ``target_date <= train_end`` and cut all windows."""
    check_feature_config(cfg)
    cols = feature_columns(cfg)
    mask = train_mask(panel, train_end)
    sym = panel["symbol"].to_numpy()
    scaler = fit_scaler(sym, panel[cols].to_numpy("float64"), cols, cfg.scaler, mask)
    tkind = "minmax" if cfg.target == "seed" else cfg.scaler
    tgt = training_target(panel, cfg.target)
    target_scaler = fit_scaler(sym, tgt, ["target"], tkind, mask & np.isfinite(tgt))
    return Prepared(scaler, target_scaler, make_windows(panel, cols, cfg.window, scaler, target_scaler, cfg.target))


PANEL_FILE = "panel.parquet"


def save_panel(lake, panel: pd.DataFrame, fingerprint: str) -> str:
    """Write the panel to ``features/<fingerprint>/panel.parquet`` (atomic); returns the path."""
    import pyarrow as pa

    path = f"{lake.paths.features_dir(fingerprint)}/{PANEL_FILE}"
    table = pa.Table.from_pandas(panel.astype({"symbol": object}), preserve_index=False)
    lake.atomic_write_table(path, table, row_group_size=65_536)
    return path


def load_panel(lake, path: str) -> pd.DataFrame:
    """Read a panel written by ``save_panel`` (dates back as ``datetime.date``)."""
    df = lake.read_table(path).to_pandas()
    for c in ("trade_date", "target_date"):
        df[c] = pd.to_datetime(df[c]).dt.date
    return df
