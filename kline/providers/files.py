"""Vendor-file import: daily bars from a CSV (optionally ``.gz``) or Parquet file, or a folder
of them, one symbol per file (the file name stem, e.g. ``600519.SH.csv`` or ``SPX.parquet``;
a single file serves the single requested symbol).

Layouts are detected from the headers (first match wins) and logged per file:

- ``tushare``: ``ts_code, trade_date (YYYYMMDD), open, high, low, close, [pre_close], vol,
  amount``, newest first; ``vol`` in lots (x100), ``amount`` in thousand CNY (x1000).
- ``akshare``: ``日期, 开盘, 收盘, 最高, 最低, 成交量, [成交额], [涨跌额]`` (eastmoney); 成交量 in
  lots (手, x100), 成交额 in CNY; ``pre_close = 收盘 - 涨跌额`` when 涨跌额 is present.
- ``yahoo``: ``Date, Open, High, Low, Close, Adj Close, Volume``; ISO or US ``m/d/Y`` dates,
  volume in shares. Raw ``Close`` is stored; ``Adj Close / Close`` is the adjustment factor.
- ``date_index``: a first date column (named or not) and ``Open, High, Low, Close, Volume``.
- ``mapping``: ``FileConfig.columns`` (canonical name -> file column) overrides detection;
  mapped columns must already be in canonical units (shares, CNY).

Rows are sorted ascending. ``pre_close`` is the file's own when present, else the previous
row's close; the file's first row then has none and is kept with ``pre_close`` NaN (the
limit check skips it). Row-level defects do not reject the file; validation judges the rows
(``last_fetch_report`` counts each kind per symbol):

- identical duplicate rows are collapsed to one (``duplicate_rows_collapsed``);
- a date that appears with different values keeps every copy, so validation quarantines
  them all (``unique_symbol_trade_date``) and imports the rest (``duplicate_dates``);
- a row without a close on a session is kept and quarantined (``not_null_close``,
  ``rows_without_close``); a vendor's ``null`` row on a non-session (Yahoo writes them) is
  dropped and counted (``dropped_null_rows_off_session``).

A missing amount is estimated as ``volume * (open + high + low + close) / 4``
(``FileConfig.estimate_amount``; otherwise NaN), and ``last_fetch_report`` says so. Only rows
in ``[start, end]`` are returned. File-level problems (unknown layout, unparseable dates)
are checked before ``fetch`` returns, so a bad file means nothing is written.

Instrument facts may come as side files in a source folder (``kline.rules``):
``_listings.csv`` (``symbol, list_date[, delist_date]``), ``_st_periods.csv`` (``symbol,
start_date, end_date, name``; an empty end_date is an open period) and ``_stk_limit.csv``
(``symbol, trade_date, up_limit, down_limit``). Without them the board rules apply.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kline.calendar import A_SHARE_CALENDAR, CalendarError, calendar_bounds, sessions_array
from kline.instruments import SymbolError, instrument, is_a_share_code, validate_symbol
from kline.providers.base import FatalProviderError, ProviderConfigError
from kline.rules import LISTING_SCHEMA, ST_SCHEMA, STK_LIMIT_SCHEMA, InstrumentFacts, empty_frame
from kline.schema import ADJ_SCHEMA, BAR_COLUMNS, empty_bars, to_canonical

log = logging.getLogger(__name__)

SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq")
REQUIRED = ("trade_date", "open", "high", "low", "close", "volume")
OPTIONAL = ("pre_close", "amount", "symbol", "adj_close", "change")
LOTS = 100.0
# instrument-fact side files in a source folder (their leading "_" is never a symbol)
SIDE_FILES = {"listings": "_listings.csv", "st_periods": "_st_periods.csv", "stk_limit": "_stk_limit.csv"}


@dataclass(frozen=True)
class Layout:
    """How one file maps to canonical columns (canonical name -> file column) and units."""

    name: str
    columns: dict[str, str]
    volume_scale: float = 1.0  # file volume unit -> shares
    amount_scale: float = 1.0  # file amount unit -> CNY
    describe: str = ""


@dataclass
class _Parsed:
    symbol: str
    path: str
    layout: str
    bars: pd.DataFrame  # canonical columns minus source/ingested_at, ascending, full history
    adj: pd.DataFrame  # symbol, trade_date, adj_factor (empty unless the file has one)
    notes: dict[str, Any] = field(default_factory=dict)


def detect_layout(columns: Sequence[str], mapping: Mapping[str, str] | None = None) -> Layout | None:
    """The layout of a file with these header names, or None when none fits."""
    cols = [str(c) for c in columns]
    low = {c.strip().lower(): c for c in cols}
    if mapping:
        return Layout("mapping", dict(mapping), describe="explicit column mapping from config")
    if {"ts_code", "trade_date", "open", "high", "low", "close", "vol"} <= low.keys():
        m = {"symbol": low["ts_code"], "trade_date": low["trade_date"], "volume": low["vol"],
             **{c: low[c] for c in ("open", "high", "low", "close", "pre_close", "amount") if c in low}}
        return Layout("tushare", m, LOTS, 1000.0, "tushare export: YYYYMMDD, vol in lots, amount in kCNY")
    stripped = {c.strip(): c for c in cols}
    if {"日期", "开盘", "收盘", "最高", "最低", "成交量"} <= stripped.keys():
        names = {"trade_date": "日期", "open": "开盘", "close": "收盘", "high": "最高", "low": "最低",
                 "volume": "成交量", "amount": "成交额", "change": "涨跌额", "symbol": "股票代码"}
        m = {k: stripped[v] for k, v in names.items() if v in stripped}
        return Layout("akshare", m, LOTS, 1.0, "akshare/eastmoney: 成交量 in lots, 成交额 in CNY")
    ohlcv = {"open", "high", "low", "close", "volume"}
    if {"date", "adj close"} | ohlcv <= low.keys():
        m = {"trade_date": low["date"], "adj_close": low["adj close"], **{c: low[c] for c in ohlcv}}
        return Layout("yahoo", m, describe="Yahoo: volume in shares, raw Close stored, Adj Close as factor")
    if ohlcv <= low.keys() and cols and cols[0].strip().lower() not in ohlcv:
        m = {"trade_date": cols[0], **{c: low[c] for c in ohlcv}}
        if "adj close" in low:
            m["adj_close"] = low["adj close"]
        return Layout("date_index", m, describe="date index column with Open/High/Low/Close/Volume")
    return None


_SIGNATURES: dict[str, tuple[str, ...]] = {
    "tushare": ("ts_code", "trade_date", "open", "high", "low", "close", "vol", "amount"),
    "akshare": ("日期", "开盘", "收盘", "最高", "最低", "成交量", "成交额"),
    "yahoo": ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"),
    "date_index": ("Open", "High", "Low", "Close", "Volume"),
}


def closest_layout(columns: Sequence[str]) -> tuple[str, list[str]]:
    """(layout, its header names missing from ``columns``) for the layout missing fewest."""
    have = {str(c).strip().lower() for c in columns}
    misses = {k: [c for c in sig if c.lower() not in have] for k, sig in _SIGNATURES.items()}
    best = min(misses, key=lambda k: (len(misses[k]), list(_SIGNATURES).index(k)))
    return best, misses[best]


def _strip_suffix(name: str) -> str | None:
    return next((name[: -len(suf)] for suf in SUFFIXES if name.lower().endswith(suf)), None)


def parse_dates(values: pd.Series, where: str) -> pd.Series:
    """Session dates from YYYYMMDD, ISO (time part ignored), m/d/Y or Y/m/d values."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.date
    s = values.astype(str).str.strip().str.replace(r"\.0$", "", regex=True)
    example = s.iloc[0] if len(s) else ""
    formats = [(r"^\d{8}$", "%Y%m%d", None), (r"^\d{4}-\d{2}-\d{2}", "%Y-%m-%d", 10),
               (r"^\d{1,2}/\d{1,2}/\d{4}$", "%m/%d/%Y", None), (r"^\d{4}/\d{1,2}/\d{1,2}$", "%Y/%m/%d", None)]
    for pattern, fmt, cut in formats:
        if s.str.match(pattern).all():
            return pd.to_datetime(s.str.slice(0, cut) if cut else s, format=fmt, errors="raise").dt.date
    bad = s[~s.str.match(r"^(\d{8}|\d{4}-\d{2}-\d{2}.*|\d{1,2}/\d{1,2}/\d{4}|\d{4}/\d{1,2}/\d{1,2})$")]
    raise FatalProviderError(f"{where}: cannot parse dates like {(bad.iloc[0] if len(bad) else example)!r} "
                             "(expected YYYYMMDD, YYYY-MM-DD or m/d/YYYY)")


def read_table_file(path: Path) -> pd.DataFrame:
    """A CSV (utf-8 or GBK, optionally gzip) or Parquet file as a frame of its columns."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        df = pd.read_parquet(path)
        if not isinstance(df.index, pd.RangeIndex):
            df = df.reset_index()  # a date index saved by pandas becomes the first column
        return df
    try:
        return pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except UnicodeDecodeError:
        return pd.read_csv(path, dtype=str, encoding="gbk")


class FileProvider:
    """Canonical bars from vendor files (module doc); ``last_fetch_report`` per symbol."""

    name = "file"

    def __init__(
        self,
        source: str | os.PathLike[str],
        calendar: str = "",
        columns: Mapping[str, str] | None = None,
        calendars: Mapping[str, str] | None = None,
        estimate_amount: bool = True,
        max_mb: int = 512,
    ):
        if not str(source or "").strip():
            raise ProviderConfigError(
                "the file provider needs a source: pass --source PATH (a CSV/Parquet file or a "
                "folder of them), or set KLINE_FILE_SOURCE / [file] source in kline.toml"
            )
        self.source = Path(os.path.expanduser(str(source)))
        if not self.source.exists():
            raise ProviderConfigError(f"file source not found: {self.source}")
        if self.source.is_file() and _strip_suffix(self.source.name) is None:
            raise ProviderConfigError(f"{self.source}: not a CSV or Parquet file ({', '.join(SUFFIXES)})")
        self.calendar = calendar
        self.columns = dict(columns or {})
        unknown = sorted(set(self.columns) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ProviderConfigError(f"file.columns: unknown canonical name(s) {', '.join(unknown)}; "
                                      f"use {', '.join(REQUIRED + OPTIONAL)}")
        self.calendars = dict(calendars or {})
        self.estimate_amount = estimate_amount
        self.max_bytes = max_mb * 2**20
        self._cache: dict[tuple[str, str], tuple[tuple[float, int], _Parsed]] = {}
        self.last_fetch_report: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"FileProvider(source={str(self.source)!r}, calendar={self.calendar!r})"

    # -- symbols and files -------------------------------------------------------------------
    def calendar_for(self, symbol: str) -> str:
        """The exchange calendar of ``symbol``: per-symbol config, XSHG for A-share codes, else
        ``calendar``; ProviderConfigError when a foreign ticker has none or it is unknown."""
        code = self.calendars.get(symbol) or (A_SHARE_CALENDAR if is_a_share_code(symbol) else self.calendar)
        try:
            validate_symbol(symbol, allow_foreign=True)
            inst = instrument(symbol, calendar=code or None)
            calendar_bounds(inst.calendar)
        except (SymbolError, CalendarError) as exc:
            raise ProviderConfigError(str(exc)) from None
        return inst.calendar

    def available_symbols(self) -> list[str]:
        """Symbols that have a file in the source folder (or the single file's stem)."""
        files = [self.source] if self.source.is_file() else sorted(p for p in self.source.iterdir() if p.is_file())
        out = []
        for p in files:
            stem = _strip_suffix(p.name)
            if stem is None:
                continue
            try:
                out.append(validate_symbol(stem.upper(), allow_foreign=True))
            except SymbolError:
                log.debug("skipping %s: its name is not a symbol", p)
        return out

    def resolve(self, symbols: Sequence[str]) -> dict[str, Path]:
        """symbol -> file. A single file serves one requested symbol; a folder needs
        ``<symbol>.csv`` (or .csv.gz, .parquet) per symbol. ProviderConfigError otherwise."""
        syms = list(dict.fromkeys(symbols))
        for s in syms:
            self.calendar_for(s)
        if self.source.is_file():
            stem = (_strip_suffix(self.source.name) or "").upper()
            if len(syms) == 1:
                return {syms[0]: self.source}
            if stem in syms and len(syms) > 1:
                raise ProviderConfigError(f"{self.source} holds one symbol ({stem}); ask for it alone "
                                          f"(--symbols {stem}) or point --source at a folder")
            raise ProviderConfigError(f"{self.source} is a single file: ask for exactly one symbol "
                                      f"(got {', '.join(syms)}) or point --source at a folder")
        by_stem: dict[str, Path] = {}
        for p in sorted(self.source.iterdir()):
            stem = _strip_suffix(p.name)
            if stem is not None and p.is_file():
                by_stem.setdefault(stem.upper(), p)
        inside = self.source.resolve()
        for p in by_stem.values():  # a link may not carry the import out of the source folder
            if not p.resolve().is_relative_to(inside):
                raise ProviderConfigError(f"{p}: leads outside the source folder {self.source} "
                                          f"(to {p.resolve()}); copy the file in instead of linking it")
        missing = [s for s in syms if s.upper() not in by_stem]
        if missing:
            raise ProviderConfigError(
                f"no file for {', '.join(missing)} in {self.source} (expected e.g. {missing[0]}.csv); "
                f"files there cover {', '.join(sorted(by_stem)) or 'nothing'}: pass --symbols accordingly"
            )
        return {s: by_stem[s.upper()] for s in syms}

    # -- parsing -----------------------------------------------------------------------------
    def _parsed(self, symbol: str, path: Path) -> _Parsed:
        st = path.stat()
        key = (symbol, str(path))
        stamp = (st.st_mtime, st.st_size)
        hit = self._cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
        parsed = self._parse(symbol, path)
        self._cache[key] = (stamp, parsed)
        return parsed

    def _parse(self, symbol: str, path: Path) -> _Parsed:
        size = path.stat().st_size
        if size > self.max_bytes:  # refused before a byte is read: pandas would hold it all in memory
            raise FatalProviderError(f"{path}: {size / 2**20:,.0f} MiB, over the {self.max_bytes // 2**20} MiB a "
                                     "vendor file may have ([file] max_mb); split it per symbol or raise the limit")
        try:
            raw = read_table_file(path)
        except (OSError, ValueError) as exc:
            raise FatalProviderError(f"{path}: cannot read ({exc})") from None
        layout = detect_layout(list(raw.columns), self.columns)
        if layout is None:
            name, miss = closest_layout(list(raw.columns))
            raise FatalProviderError(
                f"{path}: unknown layout, closest is {name} which misses column(s) {', '.join(miss)} "
                f"(columns: {', '.join(map(str, raw.columns))}); expected Yahoo "
                "(Date,Open,High,Low,Close,Adj Close,Volume), a tushare export (ts_code,trade_date,...,vol,"
                "amount), akshare (日期,开盘,收盘,最高,最低,成交量,成交额) or a date column with Open,High,Low,"
                "Close,Volume; or map the columns in [file] columns"
            )
        cols = layout.columns
        missing = [c for c in REQUIRED if c not in cols or cols[c] not in raw.columns]
        missing += [c for c in OPTIONAL if c in cols and cols[c] not in raw.columns]
        if missing:
            names = [f"{c} (column {cols[c]!r})" if c in cols else c for c in missing]
            raise FatalProviderError(f"{path}: layout {layout.name}: missing column(s) {', '.join(names)}")
        log.info("%s: layout %s (%s) for %s", path, layout.name, layout.describe, symbol)
        notes: dict[str, Any] = {"file": str(path), "layout": layout.name}

        if "symbol" in cols:
            codes = raw[cols["symbol"]].astype(str).str.strip()
            # akshare writes bare six-digit codes; tushare writes full codes
            match = (codes == symbol) | (codes == symbol.split(".")[0])
            if not match.any():
                raise FatalProviderError(f"{path}: no rows for {symbol} in column {cols['symbol']!r} "
                                         f"(it holds {', '.join(sorted(codes.unique())[:5])})")
            raw = raw[match]

        num = {c: pd.to_numeric(raw[cols[c]], errors="coerce") for c in cols
               if c not in ("trade_date", "symbol")}
        df = pd.DataFrame({
            "trade_date": parse_dates(raw[cols["trade_date"]], f"{path}: column {cols['trade_date']!r}").to_numpy(),
            **{c: num[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")},
            "volume": num["volume"].to_numpy(dtype="float64") * layout.volume_scale,
        })
        df["amount"] = num["amount"].to_numpy(dtype="float64") * layout.amount_scale if "amount" in num else np.nan
        if "pre_close" in num:
            df["pre_close"] = num["pre_close"].to_numpy(dtype="float64")
        elif "change" in num:
            df["pre_close"] = (num["close"] - num["change"]).round(4).to_numpy(dtype="float64")
        else:
            df["pre_close"] = np.nan
        if "adj_close" in num:
            df["adj_close"] = num["adj_close"].to_numpy(dtype="float64")

        df = df.sort_values("trade_date", kind="stable").reset_index(drop=True)
        same = df.duplicated(keep="first")
        if same.any():
            notes["duplicate_rows_collapsed"] = int(same.sum())
            log.warning("%s: %d identical duplicate row(s) collapsed", path, int(same.sum()))
            df = df[~same].reset_index(drop=True)
        dup = df["trade_date"].duplicated(keep=False)
        if dup.any():
            notes["duplicate_dates"] = sorted({d.isoformat() for d in df.loc[dup, "trade_date"]})
            log.warning("%s: date(s) %s appear with different values: every copy goes to quarantine",
                        path, notes["duplicate_dates"][:5])

        code = self.calendar_for(symbol)
        lo, hi = calendar_bounds(code)
        days = df["trade_date"].to_numpy(dtype="datetime64[D]")
        inside = (days >= np.datetime64(lo)) & (days <= np.datetime64(hi))
        session = np.ones(len(df), dtype=bool)  # outside the calendar's range: not judged here
        if len(df) and inside.any():
            sessions = sessions_array(df["trade_date"].iloc[0], df["trade_date"].iloc[-1], code)
            session = ~inside | np.isin(days, sessions)
        null = df["close"].isna().to_numpy()
        if (null & ~session).any():
            notes["dropped_null_rows_off_session"] = int((null & ~session).sum())
        if (null & session).any():
            notes["rows_without_close"] = int((null & session).sum())
        keep = ~(null & ~session)
        df, session = df[keep].reset_index(drop=True), session[keep]
        if (~session).any():
            notes["non_session_dates"] = [d.isoformat() for d in df.loc[~session, "trade_date"].iloc[:10]]
            log.warning("%s: %d row(s) on dates that are not %s sessions, e.g. %s", path, int((~session).sum()),
                        code, notes["non_session_dates"][:3])

        computed = df["pre_close"].isna()
        df["pre_close"] = df["pre_close"].fillna(df["close"].shift(1))
        if len(df) and computed.iloc[0]:
            notes["first_row_without_pre_close"] = df["trade_date"].iloc[0].isoformat()
        if "amount" not in num:
            notes["amount_estimated"] = self.estimate_amount
            if self.estimate_amount:
                df["amount"] = (df["volume"] * (df["open"] + df["high"] + df["low"] + df["close"]) / 4.0).round(2)

        df.insert(0, "symbol", symbol)
        adj = (pd.DataFrame({"symbol": symbol, "trade_date": df["trade_date"],
                             "adj_factor": df["adj_close"] / df["close"]})
               if "adj_close" in df else ADJ_SCHEMA.empty_table().to_pandas())
        return _Parsed(symbol, str(path), layout.name, df[[c for c in BAR_COLUMNS if c in df]], adj, notes)

    # -- public ------------------------------------------------------------------------------
    def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Canonical bars of ``symbols`` with ``start <= trade_date <= end``, ascending; every
        file is read and checked before anything is returned."""
        files = self.resolve(symbols)
        frames, report = [], {}
        for sym, path in files.items():
            p = self._parsed(sym, path)
            part = p.bars[(p.bars["trade_date"] >= start) & (p.bars["trade_date"] <= end)]
            report[sym] = {**p.notes, "rows": len(part)}
            frames.append(part)
        self.last_fetch_report = report
        frames = [f for f in frames if len(f)]
        if not frames:
            return empty_bars()
        return to_canonical(pd.concat(frames, ignore_index=True), self.name)

    def fetch_adj_factor(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """``Adj Close / Close`` per row for files that carry an adjusted close (Yahoo); empty
        for every other layout."""
        adjs = [self._parsed(sym, path).adj for sym, path in self.resolve(symbols).items()]
        frames = [a[(a["trade_date"] >= start) & (a["trade_date"] <= end)] for a in adjs]
        frames = [f for f in frames if len(f)]
        if not frames:
            return ADJ_SCHEMA.empty_table().to_pandas()
        out = pd.concat(frames, ignore_index=True)
        out["adj_factor"] = out["adj_factor"].astype("float64")
        return out.sort_values(["symbol", "trade_date"]).reset_index(drop=True)

    def fetch_instrument_facts(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> InstrumentFacts:
        """Listings, ST periods and limit prices (in ``[start, end]``) of ``symbols`` from the
        folder's side files (module doc); empty tables where a file is absent."""
        folder = self.source if self.source.is_dir() else None
        wanted = set(symbols)

        def side(table: str, schema, dates: Sequence[str]) -> pd.DataFrame:
            path = folder / SIDE_FILES[table] if folder is not None else None
            if path is None or not path.is_file():
                return empty_frame(schema)
            raw = read_table_file(path)
            missing = [c for c in schema.names if c not in raw.columns and c not in ("source", "delist_date", "name")]
            if missing:
                raise FatalProviderError(f"{path}: missing column(s) {', '.join(missing)}")
            raw = raw[raw["symbol"].astype(str).str.strip().isin(wanted)].copy()
            out = pd.DataFrame({"symbol": raw["symbol"].astype(str).str.strip()})
            for c in schema.names[1:]:
                if c == "source":
                    out[c] = self.name
                elif c in dates:
                    v = raw[c] if c in raw else pd.Series(None, index=raw.index, dtype=object)
                    blank = v.isna() | (v.astype(str).str.strip() == "")
                    parsed = pd.Series(None, index=raw.index, dtype=object)
                    if (~blank).any():
                        parsed[~blank] = parse_dates(v[~blank], f"{path}: column {c!r}").to_numpy()
                    out[c] = parsed.astype(object).where(parsed.notna(), None)
                elif c == "name":
                    out[c] = raw[c].astype(str) if c in raw else "ST"
                else:
                    out[c] = pd.to_numeric(raw[c], errors="coerce")
            return out.reset_index(drop=True)

        lim = side("stk_limit", STK_LIMIT_SCHEMA, ["trade_date"])
        lim = lim[(lim["trade_date"] >= start) & (lim["trade_date"] <= end)] if len(lim) else lim
        return InstrumentFacts(
            listings=side("listings", LISTING_SCHEMA, ["list_date", "delist_date"]),
            st_periods=side("st_periods", ST_SCHEMA, ["start_date", "end_date"]),
            stk_limit=lim.reset_index(drop=True),
        )

    def date_range(self, symbols: Sequence[str]) -> tuple[dt.date, dt.date] | None:
        """First and last date over the files of ``symbols``; None when they hold no row."""
        days = [d for s, p in self.resolve(symbols).items() for d in self._parsed(s, p).bars["trade_date"]]
        return (min(days), max(days)) if days else None


def make_file_provider(settings: Any) -> FileProvider:
    """Provider from ``Settings`` (its ``file`` section), with the configured symbols checked:
    ProviderConfigError (CLI exit 2) for a missing source, file or calendar."""
    cfg = settings.file
    provider = FileProvider(cfg.source, cfg.calendar, cfg.columns, cfg.calendars, cfg.estimate_amount, cfg.max_mb)
    provider.resolve(settings.symbols)
    return provider
