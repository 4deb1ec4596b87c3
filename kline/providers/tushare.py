"""tushare pro provider: daily A-share bars and adjustment factors through the real client.

Indices come from ``index_daily``, stocks from ``daily`` (the instrument registry decides,
so ``000001.SH`` is the SSE Composite and ``000001.SZ`` Ping An Bank). Units are converted
here, once: ``vol`` lots -> shares (x100), ``amount`` thousand CNY -> CNY (x1000).

Sessions to expect come from the run's layered calendar (``kline.calendar``), which holds
the vendor's ``trade_cal`` when the flow loaded it; used on its own, the provider asks
``trade_cal`` per year itself (cross-checked against XSHG; a mismatch is logged and kept in
``last_fetch_report``). An empty provisional session is a closure, not a retry. Calls are planned under the row caps
from that session list, and a full page is continued with ``offset``.

Empty sessions: an open session with no row for any requested symbol is *suspect*. When it
is among the last ``publish_lag_days`` calendar days and no later session has data, the
vendor has not published it yet: ``fetch`` raises ``TransientProviderError`` so the ingest
task retries later instead of logging the day as done. Older holes (before a listing, long
suspensions, delistings) cannot be fixed by retrying: they are logged as a warning and kept
in ``last_fetch_report["empty_sessions"]``.

The token is read from the environment (or a loader hook, e.g. a Prefect Secret) and never
appears in a message, log line or repr: error texts are scrubbed before they are raised.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pandas as pd

from kline.calendar import (
    A_SHARE_CALENDAR,
    current_layers,
    is_provisional,
    sessions_in_range,
    today,
)
from kline.config import TushareConfig
from kline.instruments import instrument, validate_symbol
from kline.providers.base import (
    FatalProviderError,
    ProviderConfigError,
    TransientProviderError,
)
from kline.rules import (
    LISTING_SCHEMA,
    STK_LIMIT_SCHEMA,
    InstrumentFacts,
    empty_frame,
    st_periods_from_namechange,
)
from kline.schema import ADJ_SCHEMA, BAR_COLUMNS, empty_bars, to_canonical

log = logging.getLogger(__name__)

ROW_CAPS: dict[str, int] = {"daily": 6000, "index_daily": 8000, "adj_factor": 6000, "trade_cal": 6000}
BAR_FIELDS = "ts_code,trade_date,open,high,low,close,pre_close,vol,amount"
SHARES_PER_LOT = 100.0
CNY_PER_AMOUNT_UNIT = 1000.0
_MAX_PAGES = 200
_TOKEN_HELP = "https://tushare.pro/user/token"
_POINTS_HELP = "https://tushare.pro/document/1?doc_id=108"


class RateLimiter:
    """At most ``calls`` calls in any ``period_s`` window (sliding); ``acquire`` blocks.

    The window is this process's. When ``shared_gate`` is set (the tasks layer sets it to a
    Prefect global rate limit on a server), every call also passes it, so that all processes
    and workers share one vendor budget; ``shared_bucket`` gives that limit's parameters.
    """

    # fn(limiter) -> seconds it waited, called once per call after the local window admitted it
    shared_gate: ClassVar[Callable[[RateLimiter], float] | None] = None
    # the server decays whole slots and drops the fraction at each acquisition: count a call
    # as 10 slots so at most a tenth of a call is lost per acquisition
    SLOTS_PER_CALL: ClassVar[int] = 10

    def __init__(
        self,
        calls: int,
        period_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if calls < 1:
            raise ProviderConfigError(f"tushare.calls_per_minute must be >= 1, got {calls}")
        self.calls, self.period_s = int(calls), float(period_s)
        self._clock, self._sleep = clock, sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    @classmethod
    def shared_bucket(cls, calls: int, period_s: float = 60.0) -> tuple[int, float, int]:
        """``(limit, slot_decay_per_second, slots_per_call)`` of a token bucket passing at most
        ``calls`` calls in any ``period_s`` window: a burst of b = max(1, calls // 10) calls,
        refilled at r = (calls - b) / period_s calls per second, so b + r * period_s = calls."""
        if calls < 2:  # a burst of one call leaves nothing to refill
            raise ProviderConfigError(f"a shared tushare budget needs calls_per_minute >= 2, got {calls}")
        burst = max(1, calls // 10)
        k = cls.SLOTS_PER_CALL
        return burst * k, k * (calls - burst) / period_s, k

    def acquire(self) -> None:
        """Wait until one more call fits in the window (and the shared gate), then record it."""
        with self._lock:
            while True:
                now = self._clock()
                while self._stamps and now - self._stamps[0] >= self.period_s:
                    self._stamps.popleft()
                if len(self._stamps) < self.calls:
                    self._stamps.append(now)
                    break
                pause = self.period_s - (now - self._stamps[0])
                self.waited_s += pause
                self._sleep(pause)
            gate = RateLimiter.shared_gate
            if gate is not None:
                self.waited_s += gate(self) or 0.0


def resolve_token(cfg: TushareConfig, token_loader: Callable[[str], str] | None = None,
                  environ: Any = None) -> str:
    """The token from ``$<cfg.token_env>``, else from ``token_loader(cfg.secret_block)``.

    Raises ``ProviderConfigError`` naming the variable (and the block) when neither gives one.
    """
    environ = os.environ if environ is None else environ
    token = (environ.get(cfg.token_env) or "").strip()
    if token:
        return token
    if cfg.secret_block and token_loader is not None:
        try:
            token = (token_loader(cfg.secret_block) or "").strip()
        except Exception as exc:  # noqa: BLE001 - any loader failure means "no token"
            raise ProviderConfigError(
                f"no tushare token: {cfg.token_env} is not set and the Prefect Secret block "
                f"{cfg.secret_block!r} could not be read ({type(exc).__name__})"
            ) from None
        if token:
            return token
    where = f" or the Prefect Secret block {cfg.secret_block!r}" if cfg.secret_block else ""
    raise ProviderConfigError(
        f"no tushare token: set the environment variable {cfg.token_env}{where} "
        f"(get a token at {_TOKEN_HELP}), or use --provider synthetic"
    )


def _yyyymmdd(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def _parse_yyyymmdd(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s.astype(str).str.slice(0, 8), format="%Y%m%d").dt.date


# Instrument-fact APIs (kline.rules): row caps per call, merged into ROW_CAPS.
FACT_ROW_CAPS: dict[str, int] = {"stk_limit": 5800, "stock_basic": 6000, "namechange": 6000,
                                 "index_weight": 6000}
UNIVERSE_INDEX = {"csi300": "399300.SZ"}  # kline.universe name -> tushare index_weight index_code
SNAPSHOT_LOOKBACK_DAYS = 400  # index_weight snapshots are monthly (some months skipped): the one in
# force on a day is within this many days before it
ROW_CAPS.update(FACT_ROW_CAPS)
NAMECHANGE_PER_CODE_MAX = 10  # above this many stocks, one market-wide namechange query


# Listings and name histories change a few times a year: one answer per query and day serves
# every ingest chunk of a process (a backfill has one chunk per month).
_REFERENCE_ANSWERS: dict[tuple, pd.DataFrame] = {}
_REFERENCE_LOCK = threading.Lock()


class TushareFacts:
    """Instrument facts from tushare, mixed into ``TushareProvider``: ``stock_basic`` (listing
    and delisting dates, every list_status), ``namechange`` (ST periods, repeated rows
    dropped) and ``stk_limit`` (the exchange's limit prices per day)."""

    def fetch_instrument_facts(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> InstrumentFacts:
        """Facts of the stocks among ``symbols``; limit prices on sessions in ``[start, end]``.
        Empty when disabled in config; an API the account may not call is skipped with a
        warning (the board rules then apply)."""
        facts = InstrumentFacts()
        stocks = [s for s in dict.fromkeys(validate_symbol(x) for x in symbols) if not instrument(s).is_index]
        if not self.config.instrument_facts or not stocks or start > end:
            return facts
        report = self.last_fetch_report.setdefault("instrument_facts", {})
        wanted = set(stocks)

        def reference(api: str, fields: str, **params: Any) -> pd.DataFrame:
            key = (self.config.url, api, fields, tuple(sorted(params.items())), self._today())
            with _REFERENCE_LOCK:
                if key not in _REFERENCE_ANSWERS:
                    for old in [k for k in _REFERENCE_ANSWERS if k[-1] != key[-1]]:
                        del _REFERENCE_ANSWERS[old]  # yesterday's answers
                    _REFERENCE_ANSWERS[key] = self._query(api, fields, **params)
                return _REFERENCE_ANSWERS[key]

        def guarded(api: str, fetch: Callable[[], pd.DataFrame]) -> pd.DataFrame:
            try:
                return fetch()
            except FatalProviderError as exc:
                if "permission" not in str(exc):
                    raise
                log.warning("%s; using the board rules without it", exc)
                report.setdefault("skipped", []).append(api)
                return pd.DataFrame()

        # stock_basic answers listed stocks only unless asked for each list_status
        basic = guarded("stock_basic", lambda: pd.concat(
            [reference("stock_basic", "ts_code,list_date,delist_date,list_status", list_status=st)
             for st in ("L", "D", "P")], ignore_index=True))
        if len(basic):
            basic = basic[basic["ts_code"].isin(wanted)].drop_duplicates("ts_code", keep="first")
            facts.listings = pd.DataFrame({
                "symbol": basic["ts_code"].astype(str),
                "list_date": _parse_yyyymmdd(basic["list_date"]),
                "delist_date": pd.to_datetime(basic["delist_date"].astype("string").str.slice(0, 8),
                                              format="%Y%m%d", errors="coerce").dt.date,
                "source": self.name,
            })[LISTING_SCHEMA.names].reset_index(drop=True)
            facts.listings["delist_date"] = facts.listings["delist_date"].astype(object).where(
                facts.listings["delist_date"].notna(), None)
        fields = "ts_code,name,start_date,end_date,change_reason"
        # per code for a few stocks; for many, the whole market's name history in a few pages
        names = guarded("namechange", lambda: pd.concat(
            [reference("namechange", fields, ts_code=s) for s in stocks], ignore_index=True)
            if len(stocks) <= NAMECHANGE_PER_CODE_MAX else reference("namechange", fields))
        if len(names):
            names = names.rename(columns={"ts_code": "symbol"})
            facts.st_periods = st_periods_from_namechange(names[names["symbol"].isin(wanted)], self.name)
        sessions = self.open_sessions(start, end)
        lim = guarded("stk_limit", lambda: self._fetch_api(
            "stk_limit", "trade_date,ts_code,up_limit,down_limit", stocks, sessions, 1, report))
        if len(lim):
            out = pd.DataFrame({
                "symbol": lim["ts_code"].astype(str),
                "trade_date": _parse_yyyymmdd(lim["trade_date"]),
                "up_limit": pd.to_numeric(lim["up_limit"], errors="coerce"),
                "down_limit": pd.to_numeric(lim["down_limit"], errors="coerce"),
                "source": self.name,
            })
            out = out[(out["trade_date"] >= start) & (out["trade_date"] <= end) & out["symbol"].isin(wanted)]
            facts.stk_limit = (out.drop_duplicates(["symbol", "trade_date"]).sort_values(["symbol", "trade_date"])
                               .reset_index(drop=True)[STK_LIMIT_SCHEMA.names])
        else:
            facts.stk_limit = empty_frame(STK_LIMIT_SCHEMA)
        report.update(listings=len(facts.listings), st_periods=len(facts.st_periods), stk_limit=len(facts.stk_limit))
        return facts


class TushareUniverse:
    """Point-in-time universes from tushare, mixed into ``TushareProvider``: index members
    from ``index_weight`` snapshots, the market from ``stock_basic`` (every list_status)."""

    def universe_members(self, name: str, start: dt.date, end: dt.date) -> list[str]:
        """Codes in ``name`` on any day of ``[start, end]``: for an index, the snapshot in force
        on ``start`` (the latest within ``SNAPSHOT_LOOKBACK_DAYS`` before it) and every later one
        up to ``end``; for ``all``, stocks listed on or before ``end`` and not delisted before
        ``start``."""
        if name in UNIVERSE_INDEX:
            w = self._query("index_weight", "index_code,con_code,trade_date,weight", index_code=UNIVERSE_INDEX[name],
                            start_date=_yyyymmdd(start - dt.timedelta(days=SNAPSHOT_LOOKBACK_DAYS)),
                            end_date=_yyyymmdd(end))
            if w.empty:
                return []
            days = _parse_yyyymmdd(w["trade_date"])
            before = days[days <= start]
            first = before.max() if len(before) else days.min()
            return sorted(set(w.loc[(days >= first) & (days <= end), "con_code"].astype(str)))
        if name == "all":
            basic = pd.concat([self._query("stock_basic", "ts_code,list_date,delist_date,list_status", list_status=st)
                               for st in ("L", "D", "P")], ignore_index=True)
            if basic.empty:
                return []
            listed = pd.to_datetime(basic["list_date"].astype(str).str.slice(0, 8), format="%Y%m%d")
            gone = pd.to_datetime(basic["delist_date"].astype("string").str.slice(0, 8), format="%Y%m%d",
                                  errors="coerce")
            keep = (listed <= pd.Timestamp(end)) & (gone.isna() | (gone >= pd.Timestamp(start)))
            return sorted(set(basic.loc[keep, "ts_code"].astype(str)))
        raise ValueError(f"unknown universe {name!r}; tushare offers {', '.join([*UNIVERSE_INDEX, 'all'])}")


class TushareProvider(TushareFacts, TushareUniverse):
    """Canonical bars and adjustment factors from the tushare pro API.

    ``last_fetch_report`` describes the latest ``fetch``/``fetch_adj_factor``: mode, calls,
    rows, empty (suspect) sessions and calendar mismatches.
    """

    name = "tushare"

    def __init__(
        self,
        config: TushareConfig | None = None,
        token: str | None = None,
        token_loader: Callable[[str], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        today_fn: Callable[[], dt.date] | None = None,
        call_retries: int = 0,
        retry_delay_s: float = 0.0,
    ):
        import tushare as ts  # heavy import, paid only when this provider is used

        self.config = config or TushareConfig()
        token = token.strip() if token else resolve_token(self.config, token_loader)
        self._token = token
        self._api = ts.pro_api(token, timeout=self.config.timeout_s)
        # the client keeps its base URL in a private attribute; set it on this instance only
        self._api._DataApi__http_url = self.config.url.rstrip("/")
        self.limiter = RateLimiter(self.config.calls_per_minute, 60.0, clock=clock, sleep=sleep)
        self._today = today_fn or (lambda: today("Asia/Shanghai"))
        self._trade_cal: dict[int, list[dt.date] | None] = {}
        self.row_caps = dict(ROW_CAPS)
        self.calls = 0
        # a transient error is retried here, call by call: one flaky answer in a chunk of a
        # dozen calls must not send the whole chunk back to the task's retries
        self.call_retries, self.retry_delay_s = max(0, int(call_retries)), max(0.0, float(retry_delay_s))
        self._sleep = sleep
        self.retried = 0
        self.last_fetch_report: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TushareProvider(url={self.config.url!r}, calls_per_minute={self.config.calls_per_minute})"

    # -- low level -----------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _call(self, api_name: str, fields: str, **params: Any) -> pd.DataFrame:
        """One call, a transient error retried ``call_retries`` times after pauses of
        ``retry_delay_s * 2**k`` seconds; a permanent one raised at once."""
        for attempt in range(self.call_retries + 1):
            try:
                return self._call_once(api_name, fields, **params)
            except TransientProviderError as exc:
                if attempt >= self.call_retries:
                    raise
                pause = self.retry_delay_s * 2 ** attempt
                log.warning("%s; retry %d of %d in %.0f s", exc, attempt + 1, self.call_retries, pause)
                self.retried += 1
                self._sleep(pause)
        raise AssertionError("unreachable")

    def _call_once(self, api_name: str, fields: str, **params: Any) -> pd.DataFrame:
        """One HTTP call through the real client, errors classified; the frame as answered."""
        import requests

        self.limiter.acquire()
        self.calls += 1
        what = f"tushare {api_name}({', '.join(f'{k}={v}' for k, v in params.items())})"
        try:
            df = self._api.query(api_name, fields=fields, **params)
        except requests.exceptions.RequestException as exc:
            raise TransientProviderError(self._scrub(f"{what}: network error ({type(exc).__name__}): {exc}")) from None
        except ValueError as exc:  # an answer that is not JSON (proxy error page)
            raise TransientProviderError(self._scrub(f"{what}: malformed answer ({exc})")) from None
        except Exception as exc:  # noqa: BLE001 - the client raises plain Exception(msg)
            raise self._classify(what, api_name, str(exc)) from None
        if len(df.columns) == 0:
            # the client turns an HTTP error status into a frame without even the field names
            raise TransientProviderError(f"{what}: HTTP error status from {self.config.url} (empty answer)")
        return df

    def _classify(self, what: str, api_name: str, msg: str) -> Exception:
        msg = self._scrub(msg)
        # rate wording first: rate and permission messages both begin with "抱歉，您"
        if "每分钟" in msg or "频率" in msg or "最多访问" in msg or "每小时" in msg or "每天" in msg:
            return TransientProviderError(
                f"{what}: rate limit reached ({msg}); lower tushare.calls_per_minute "
                f"(now {self.config.calls_per_minute}) if this repeats"
            )
        if "token" in msg.lower():
            return FatalProviderError(
                f"{what}: tushare rejected the token in {self.config.token_env} ({msg}); "
                f"check it at {_TOKEN_HELP}"
            )
        if "权限" in msg or "积分" in msg:
            return FatalProviderError(
                f"{what}: the tushare account has no permission for {api_name} ({msg}); "
                f"it needs more points, see {_POINTS_HELP}"
            )
        if "系统" in msg or "繁忙" in msg or "稍后" in msg or "timeout" in msg.lower():
            return TransientProviderError(f"{what}: server busy ({msg})")
        return FatalProviderError(f"{what}: tushare error ({msg})")

    def _query(self, api_name: str, fields: str, **params: Any) -> pd.DataFrame:
        """All rows of one request: a page at the row cap is continued with ``offset``."""
        cap = self.row_caps[api_name]
        pages = [self._call(api_name, fields, **params)]
        while len(pages[-1]) >= cap:
            if len(pages) >= _MAX_PAGES:
                raise FatalProviderError(f"tushare {api_name}: more than {_MAX_PAGES} pages, paging not honoured")
            pages.append(self._call(api_name, fields, **params, offset=cap * len(pages), limit=cap))
        df = pd.concat(pages, ignore_index=True) if len(pages) > 1 else pages[0]
        return df.drop_duplicates()

    # -- calendar ------------------------------------------------------------------------
    def trade_cal(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """The vendor's SSE calendar over ``[start, end]``: ``cal_date`` (date), ``is_open``
        (bool), every calendar day it lists (none for a year not yet published)."""
        df = self._query("trade_cal", "exchange,cal_date,is_open,pretrade_date", exchange="SSE",
                         start_date=_yyyymmdd(start), end_date=_yyyymmdd(end))
        if df.empty:
            return pd.DataFrame({"cal_date": pd.Series(dtype=object), "is_open": pd.Series(dtype=bool)})
        out = pd.DataFrame({"cal_date": _parse_yyyymmdd(df["cal_date"]),
                            "is_open": df["is_open"].astype(str).isin(["1", "1.0", "True"])})
        out = out[(out["cal_date"] >= start) & (out["cal_date"] <= end)]
        return out.drop_duplicates("cal_date").sort_values("cal_date").reset_index(drop=True)

    def _vendor_year(self, year: int) -> list[dt.date] | None:
        """Open SSE days of ``year`` from ``trade_cal`` (cached); None when not permitted or
        not published yet (then the layered calendar of ``kline.calendar`` decides)."""
        if year not in self._trade_cal:
            try:
                df = self.trade_cal(dt.date(year, 1, 1), dt.date(year, 12, 31))
            except FatalProviderError as exc:
                log.warning("trade_cal unavailable, using the XSHG calendar instead: %s", exc)
                self._trade_cal[year] = None
            else:
                self._trade_cal[year] = sorted(df.loc[df["is_open"], "cal_date"]) if len(df) else None
        return self._trade_cal[year]

    def open_sessions(self, start: dt.date, end: dt.date, report: dict | None = None) -> list[dt.date]:
        """Open sessions in ``[start, end]``: the vendor's ``trade_cal`` when permitted and
        enabled, else XSHG. Disagreements with XSHG go to ``report["calendar_mismatch"]``."""
        local = sessions_in_range(start, end, A_SHARE_CALENDAR)
        if not self.config.trade_cal_check:
            return local
        layer = current_layers(A_SHARE_CALENDAR).vendor  # trade_cal the run has loaded already
        vendor: list[dt.date] = []
        for year in range(start.year, end.year + 1):
            known = layer is not None and layer.start <= max(start, dt.date(year, 1, 1)) \
                and min(end, dt.date(year, 12, 31)) <= layer.end
            days = None if known else self._vendor_year(year)
            if days is None:  # unpublished or not permitted: the layered calendar's days
                vendor.extend(d for d in local if d.year == year)
            else:
                vendor.extend(d for d in days if start <= d <= end)
        only_vendor = sorted(set(vendor) - set(local))
        only_local = sorted(set(local) - set(vendor))
        if only_vendor or only_local:
            log.warning("tushare trade_cal and XSHG disagree in %s..%s: open only in trade_cal %s, "
                        "only in XSHG %s; using trade_cal", start, end, only_vendor, only_local)
            if report is not None:
                report["calendar_mismatch"] = {"only_trade_cal": [d.isoformat() for d in only_vendor],
                                               "only_xshg": [d.isoformat() for d in only_local]}
        return sorted(vendor)

    # -- planning ------------------------------------------------------------------------
    def _by_date(self, n_symbols: int, n_sessions: int, cap: int, codes_per_call: int) -> bool:
        """True when one call per session is cheaper than per-symbol calls (and allowed)."""
        if n_symbols < self.config.by_date_min_symbols or n_sessions == 0:
            return False
        return n_sessions < self._symbol_calls(n_symbols, n_sessions, cap, codes_per_call)

    @staticmethod
    def _batch(n_symbols: int, n_sessions: int, cap: int, codes_per_call: int) -> tuple[int, int]:
        """(codes per call, sessions per call) so that one call stays under ``cap`` rows."""
        codes = max(1, min(codes_per_call, n_symbols, cap // max(1, min(n_sessions, cap))))
        return codes, max(1, cap // codes)

    def _symbol_calls(self, n_symbols: int, n_sessions: int, cap: int, codes_per_call: int) -> int:
        codes, window = self._batch(n_symbols, n_sessions, cap, codes_per_call)
        return math.ceil(n_symbols / codes) * math.ceil(n_sessions / window)

    def _fetch_api(self, api_name: str, fields: str, symbols: list[str], sessions: list[dt.date],
                   codes_per_call: int, report: dict) -> pd.DataFrame:
        """Rows of ``api_name`` for ``symbols`` on ``sessions``, per symbol batch or per date."""
        cap = self.row_caps[api_name]
        frames: list[pd.DataFrame] = []
        wanted = set(symbols)
        if self._by_date(len(symbols), len(sessions), cap, codes_per_call):
            report.setdefault("mode", {})[api_name] = "by_date"
            for d in sessions:
                df = self._query(api_name, fields, trade_date=_yyyymmdd(d))
                frames.append(df[df["ts_code"].isin(wanted)] if len(df) else df)
        else:
            report.setdefault("mode", {})[api_name] = "by_symbol"
            codes, window = self._batch(len(symbols), len(sessions), cap, codes_per_call)
            for i in range(0, len(symbols), codes):
                batch = symbols[i:i + codes]
                for j in range(0, len(sessions), window):
                    days = sessions[j:j + window]
                    frames.append(self._query(api_name, fields, ts_code=",".join(batch),
                                              start_date=_yyyymmdd(days[0]), end_date=_yyyymmdd(days[-1])))
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # -- public --------------------------------------------------------------------------
    def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Canonical bars on sessions in ``[start, end]``: volume in shares, amount in CNY,
        ascending by (symbol, trade_date). Suspended days simply have no row."""
        t0 = time.perf_counter()
        calls0 = self.calls
        syms = list(dict.fromkeys(validate_symbol(s) for s in symbols))
        report: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(), "n_symbols": len(syms)}
        self.last_fetch_report = report
        sessions = self.open_sessions(start, end, report) if syms and start <= end else []
        indices = [s for s in syms if instrument(s).is_index]
        stocks = [s for s in syms if not instrument(s).is_index]
        frames = []
        for sym in indices:  # index_daily takes one code per call
            frames.append(self._fetch_api("index_daily", BAR_FIELDS, [sym], sessions, 1, report))
        if stocks:
            frames.append(self._fetch_api("daily", BAR_FIELDS, stocks, sessions,
                                          self.config.max_codes_per_call, report))
        frames = [f for f in frames if len(f)]
        bars = self._to_bars(pd.concat(frames, ignore_index=True)) if frames else empty_bars()
        bars = bars[(bars["trade_date"] >= start) & (bars["trade_date"] <= end) & bars["symbol"].isin(syms)]
        bars = bars.drop_duplicates(["symbol", "trade_date"], keep="first")
        self._check_empty_sessions(bars, sessions, indices, report)
        report.update(calls=self.calls - calls0, rows=len(bars), seconds=round(time.perf_counter() - t0, 3),
                      rate_wait_s=round(self.limiter.waited_s, 3))
        log.info("tushare: %d rows for %d symbols in %s..%s with %d calls (%s)", len(bars), len(syms),
                 start, end, report["calls"], report.get("mode", {}))
        return to_canonical(bars, self.name)

    def _to_bars(self, raw: pd.DataFrame) -> pd.DataFrame:
        """tushare rows -> canonical columns, units converted (lots -> shares, kCNY -> CNY)."""
        missing = [c for c in BAR_FIELDS.split(",") if c not in raw.columns]
        if missing:
            raise FatalProviderError(f"tushare answer lacks column(s) {', '.join(missing)}")
        out = pd.DataFrame({
            "symbol": raw["ts_code"].astype(str),
            "trade_date": _parse_yyyymmdd(raw["trade_date"]),
            **{c: pd.to_numeric(raw[c], errors="coerce") for c in ("open", "high", "low", "close", "pre_close")},
            "volume": pd.to_numeric(raw["vol"], errors="coerce") * SHARES_PER_LOT,
            "amount": pd.to_numeric(raw["amount"], errors="coerce") * CNY_PER_AMOUNT_UNIT,
            "source": self.name,
            "ingested_at": pd.Timestamp.now(tz="UTC"),
        })
        return out[BAR_COLUMNS].sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True)

    def _check_empty_sessions(self, bars: pd.DataFrame, sessions: list[dt.date], indices: list[str],
                              report: dict) -> None:
        """Raise for trailing unpublished sessions; report older empty ones (module doc)."""
        have = set(bars["trade_date"])
        empty = [d for d in sessions if d not in have]
        gaps = {}
        for sym in indices:  # an index trades every session once it exists
            days = set(bars.loc[bars["symbol"] == sym, "trade_date"])
            if days:
                first = min(days)
                missing = [d.isoformat() for d in sessions if d >= first and d not in days]
                if missing:
                    gaps[sym] = missing
        if gaps:
            report["index_gaps"] = gaps
            log.warning("tushare: index rows missing on open sessions: %s", gaps)
        if not empty:
            return
        last_with_data = max(have) if have else None
        cutoff = self._today() - dt.timedelta(days=self.config.publish_lag_days)
        # a provisional session with no bar at all is a closure nobody has published yet
        provisional = [d for d in empty if is_provisional(d, A_SHARE_CALENDAR)]
        if provisional:
            report["provisional_closures"] = [d.isoformat() for d in provisional]
            log.warning("tushare: no rows on provisional session(s) %s: treated as closed",
                        ", ".join(d.isoformat() for d in provisional))
            empty = [d for d in empty if d not in set(provisional)]
            if not empty:
                return
        fresh = [d for d in empty if d >= cutoff and (last_with_data is None or d > last_with_data)]
        if fresh:
            raise TransientProviderError(
                f"tushare returned no rows for open session(s) {', '.join(d.isoformat() for d in fresh)} "
                "(trade_cal says open): not published yet; retry later"
            )
        report["empty_sessions"] = [d.isoformat() for d in empty]
        log.warning("tushare: no rows for any requested symbol on %d open session(s) %s..%s "
                    "(before listing, suspension or vendor gap): %s", len(empty), empty[0], empty[-1],
                    report["empty_sessions"][:10])

    def fetch_adj_factor(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """``symbol, trade_date, adj_factor`` for the stocks among ``symbols`` (indices have
        none). Empty when disabled in config or when the account lacks the permission."""
        empty = ADJ_SCHEMA.empty_table().to_pandas()
        stocks = [s for s in dict.fromkeys(validate_symbol(x) for x in symbols) if not instrument(s).is_index]
        if not self.config.adj_factor or not stocks or start > end:
            return empty
        report = self.last_fetch_report.setdefault("adj_factor", {})
        sessions = self.open_sessions(start, end)
        try:
            # adj_factor takes one ts_code per call, or every stock of one trade_date
            raw = self._fetch_api("adj_factor", "ts_code,trade_date,adj_factor", stocks, sessions, 1, report)
        except FatalProviderError as exc:
            if "permission" not in str(exc):
                raise
            log.warning("%s; storing no adjustment factors (set KLINE_TUSHARE_ADJ_FACTOR=false to skip)", exc)
            report["skipped"] = "no permission"
            return empty
        if raw.empty:
            return empty
        out = pd.DataFrame({
            "symbol": raw["ts_code"].astype(str),
            "trade_date": _parse_yyyymmdd(raw["trade_date"]),
            "adj_factor": pd.to_numeric(raw["adj_factor"], errors="coerce").astype("float64"),
        })
        out = out[(out["trade_date"] >= start) & (out["trade_date"] <= end) & out["symbol"].isin(stocks)]
        report["rows"] = len(out)
        return (out.drop_duplicates(["symbol", "trade_date"]).sort_values(["symbol", "trade_date"])
                .reset_index(drop=True))


def make_tushare_provider(settings: Any, token_loader: Callable[[str], str] | None = None) -> TushareProvider:
    """Provider from ``Settings`` (its ``tushare`` section; ``ingest.retries`` and ``retry_delay_s``
    also retry each call); ``ProviderConfigError`` without a token."""
    return TushareProvider(settings.tushare, token_loader=token_loader, call_retries=settings.ingest.retries,
                           retry_delay_s=settings.ingest.retry_delay_s)


__all__ = ["RateLimiter", "TushareProvider", "make_tushare_provider", "resolve_token"]
