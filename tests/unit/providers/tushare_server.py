"""A loopback HTTP server that speaks the tushare pro wire protocol, for tests.

``POST /dataapi/<api_name>`` with JSON ``{api_name, token, params, fields}`` is answered with
``{code, msg, data: {fields, items}}``: rows newest first, ``vol`` in lots, ``amount`` in
thousand CNY, ``trade_date`` as ``YYYYMMDD``. Prices come from the synthetic market, so a
test can compare what the tushare provider stored with ``SyntheticProvider`` output.

Supported: ``daily`` (one or several comma-separated codes, or ``trade_date=`` for the
whole ``market``), ``index_daily``, ``adj_factor``, ``trade_cal``, ``stk_limit`` (limit
prices from the dated rules, ``limit_prices`` overrides per (code, date)), ``stock_basic``
(``list_status`` L by default, as the real API; D for ``delisted`` codes) and ``namechange``
(the synthetic market's ST periods as name rows, each ST row sent twice as the real API
repeats rows), ``index_weight`` (monthly member snapshots: ``index_members`` per index code,
by default the listed stocks of ``synthetic_universe(300)`` as CSI 300 ``399300.SZ``); row caps (daily 6000, index_daily 8000, stk_limit 5800) with ``offset``/``limit``; bad-token, permission and rate-limit messages;
scripted faults (``faults``: "http500", "rate", "garbage") and an HTTP 500 every
``http500_every`` requests; ``unpublished`` dates that have no rows yet; ``listed`` dates
before which a code has no rows.

Use ``serve(port=0) -> (url, stop)`` or ``start(...) -> TushareServer``; run as a script to
serve until interrupted: ``python tests/unit/providers/tushare_server.py --port 8765``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd

from kline.calendar import A_SHARE_CALENDAR, calendar_bounds, sessions_in_range
from kline.instruments import instrument
from kline.providers.synthetic import SyntheticProvider, synthetic_facts, synthetic_universe
from kline.rules import limit_table

TOKEN = "test-token-0123456789abcdef"
ROW_CAPS = {"daily": 6000, "index_daily": 8000, "adj_factor": 6000, "trade_cal": 6000, "stk_limit": 5800,
            "stock_basic": 6000, "namechange": 6000, "index_weight": 6000}
# a small "whole market" for trade_date= queries
MARKET: tuple[str, ...] = tuple(
    [f"6000{i:02d}.SH" for i in range(10, 30)] + [f"0000{i:02d}.SZ" for i in range(1, 21)]
    + ["600519.SH", "300750.SZ", "688981.SH"]
)
BAR_FIELDS = ["ts_code", "trade_date", "open", "high", "low", "close", "pre_close", "change", "pct_chg", "vol", "amount"]
MSG_BAD_TOKEN = "您的token不对，请确认。"
MSG_PERMISSION = "抱歉，您没有访问该接口的权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
MSG_RATE = "抱歉，您每分钟最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"


def adj_factor_on(symbol: str, day: dt.date) -> float:
    """The server's deterministic adjustment factor: steps up every July (a dividend)."""
    return round(1.0 + 0.05 * (day.year - 2000) + (0.02 if day.month >= 7 else 0.0), 4)


def _d(s: str) -> dt.date:
    return dt.datetime.strptime(str(s)[:8], "%Y%m%d").date()


class TushareServer:
    """State and behaviour of one loopback server; attributes may be changed by tests."""

    def __init__(
        self,
        tokens: Iterable[str] = (TOKEN,),
        market: Iterable[str] = MARKET,
        seed: int = 20240101,
        denied: Iterable[str] = (),
        rate_limit_per_minute: int | None = None,
        http500_every: int = 0,
        unpublished: Iterable[dt.date] = (),
        listed: dict[str, dt.date] | None = None,
        faults: Iterable[str] = (),
        trade_cal_closed: Iterable[dt.date] = (),
        trade_cal_through: dt.date = dt.date(2026, 12, 31),
        delisted: dict[str, dt.date] | None = None,
        limit_prices: dict[tuple[str, dt.date], tuple[float, float]] | None = None,
        index_members: dict[str, dict[dt.date, list[str]]] | None = None,
    ):
        self.tokens = set(tokens)
        self.market = tuple(market)
        self.synthetic = SyntheticProvider(seed=seed)
        self.denied = set(denied)  # api names the account may not call
        self.rate_limit_per_minute = rate_limit_per_minute
        self.http500_every = http500_every
        self.unpublished = set(unpublished)
        self.listed = dict(listed or {})
        self.faults: deque[str] = deque(faults)
        self.trade_cal_closed = set(trade_cal_closed)  # open in XSHG, closed here
        self.trade_cal_through = trade_cal_through  # the last day of the last published year
        self.delisted = dict(delisted or {})  # code -> delist date (list_status D)
        self.limit_prices = dict(limit_prices or {})  # (code, date) -> (up_limit, down_limit)
        self.index_members = dict(index_members or {})  # index code -> {snapshot date: codes}
        self.row_caps = dict(ROW_CAPS)
        self.requests: list[dict] = []  # {"api_name", "params", "fields", "token"}
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # -- data ------------------------------------------------------------------------------
    def _bars(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        df = self.synthetic.fetch(symbols, start, end)
        if df.empty:
            return df
        keep = ~df["trade_date"].isin(self.unpublished)
        for sym, first in self.listed.items():
            keep &= ~((df["symbol"] == sym) & (df["trade_date"] < first))
        return df[keep]

    def _rows_bars(self, api: str, p: dict) -> tuple[list[str], list[list]]:
        lo, hi = calendar_bounds(A_SHARE_CALENDAR)
        if p.get("trade_date"):
            start = end = _d(p["trade_date"])
            codes = [c for c in p.get("ts_code", "").split(",") if c] or [
                s for s in self.market if instrument(s).is_index == (api == "index_daily")]
        else:
            codes = [c for c in p.get("ts_code", "").split(",") if c]
            start = _d(p["start_date"]) if p.get("start_date") else dt.date(2000, 1, 5)
            end = _d(p["end_date"]) if p.get("end_date") else hi
        if not codes:
            return BAR_FIELDS, []
        if api == "index_daily":
            codes = [c for c in codes if instrument(c).is_index]
        else:
            codes = [c for c in codes if not instrument(c).is_index]
        df = self._bars(codes, max(start, lo), min(end, hi))
        if api == "adj_factor":
            fields = ["ts_code", "trade_date", "adj_factor"]
            items = [[s, d.strftime("%Y%m%d"), adj_factor_on(s, d)] for s, d in zip(df["symbol"], df["trade_date"], strict=True)]
            return fields, items
        items = []
        for r in df.itertuples(index=False):
            change = round(r.close - r.pre_close, 4)
            items.append([r.symbol, r.trade_date.strftime("%Y%m%d"), r.open, r.high, r.low, r.close, r.pre_close,
                          change, round(100 * change / r.pre_close, 4), r.volume / 100.0, r.amount / 1000.0])
        return BAR_FIELDS, items

    def _rows_stk_limit(self, p: dict) -> tuple[list[str], list[list]]:
        fields = ["trade_date", "ts_code", "pre_close", "up_limit", "down_limit"]
        _, bars = self._rows_bars("daily", p)
        items = []
        by_code: dict[str, list] = {}
        for r in bars:
            by_code.setdefault(r[0], []).append(r)
        facts = synthetic_facts(self.synthetic.seed, list(by_code))
        for code, rows in by_code.items():
            days = [_d(r[1]) for r in rows]
            lim = limit_table(code, days, facts)
            for i, (r, d) in enumerate(zip(rows, days, strict=True)):
                pre = r[6]
                if (code, d) in self.limit_prices:
                    up, down = self.limit_prices[(code, d)]
                else:
                    down, up = lim.at(i).prices(pre)
                    if not np.isfinite(up):  # no limit (a listing's first sessions): none published
                        continue
                items.append([r[1], code, pre, up, down])
        return fields, items

    def _codes(self, p: dict) -> list[str]:
        codes = [c for c in p.get("ts_code", "").split(",") if c]
        return codes or [s for s in self.market if not instrument(s).is_index]

    def _rows_stock_basic(self, p: dict) -> tuple[list[str], list[list]]:
        fields = ["ts_code", "symbol", "name", "market", "list_date", "delist_date", "list_status"]
        status = str(p.get("list_status") or "L")
        codes = [c for c in self._codes(p) if not instrument(c).is_index]
        facts = synthetic_facts(self.synthetic.seed, codes)
        items = []
        for code, listed in zip(facts.listings["symbol"], facts.listings["list_date"], strict=True):
            listed = self.listed.get(code, listed)
            gone = self.delisted.get(code)
            if ("D" if gone else "L") != status:
                continue
            items.append([code, code[:6], f"股票{code[:6]}", instrument(code).board, listed.strftime("%Y%m%d"),
                          gone.strftime("%Y%m%d") if gone else None, status])
        return fields, items

    def _rows_namechange(self, p: dict) -> tuple[list[str], list[list]]:
        fields = ["ts_code", "name", "start_date", "end_date", "ann_date", "change_reason"]
        codes = [c for c in self._codes(p) if not instrument(c).is_index]
        facts = synthetic_facts(self.synthetic.seed, codes)
        items = []
        ymd = lambda d: d.strftime("%Y%m%d") if d else None  # noqa: E731
        for code, listed in zip(facts.listings["symbol"], facts.listings["list_date"], strict=True):
            plain = f"股票{code[:6]}"
            st = facts.st_periods[facts.st_periods["symbol"] == code]
            start = listed
            for r in st.itertuples(index=False):
                items.append([code, plain, ymd(start), ymd(r.start_date - dt.timedelta(days=1)), ymd(start), "新股上市"])
                row = [code, r.name, ymd(r.start_date), ymd(r.end_date), ymd(r.start_date), "ST"]
                items += [row, list(row)]  # the real API repeats rows
                start = r.end_date + dt.timedelta(days=1)
            items.append([code, plain, ymd(start), None, ymd(start), "撤销ST" if len(st) else "新股上市"])
        return fields, items

    def _snapshots(self, index: str) -> dict[dt.date, list[str]]:
        if index not in self.index_members and index == "399300.SZ":
            # the last session of each month; a stock joins once listed
            days = sessions_in_range(dt.date(2005, 1, 1), self.trade_cal_through, A_SHARE_CALENDAR)
            month_ends = [d for d, n in zip(days, days[1:] + [None], strict=True) if n is None or n.month != d.month]
            codes = synthetic_universe(300)
            listed = dict(zip(codes, synthetic_facts(self.synthetic.seed, codes).listings["list_date"], strict=True))
            self.index_members[index] = {d: [c for c in codes if listed[c] <= d] for d in month_ends}
        return self.index_members.get(index, {})

    def _rows_index_weight(self, p: dict) -> tuple[list[str], list[list]]:
        index = str(p.get("index_code") or "")
        start, end = _d(p.get("start_date", "19900101")), _d(p.get("end_date", "20991231"))
        items = []
        for day, codes in sorted(self._snapshots(index).items(), reverse=True):
            if start <= day <= end:
                items += [[index, c, day.strftime("%Y%m%d"), round(100.0 / len(codes), 4)] for c in codes]
        return ["index_code", "con_code", "trade_date", "weight"], items

    def _rows_trade_cal(self, p: dict) -> tuple[list[str], list[list]]:
        start, end = _d(p.get("start_date", "20000101")), _d(p.get("end_date", "20261231"))
        end = min(end, self.trade_cal_through)  # a year not yet published has no rows
        lo, hi = calendar_bounds(A_SHARE_CALENDAR)
        opened = set(sessions_in_range(max(start, lo), min(end, hi), A_SHARE_CALENDAR)) - self.trade_cal_closed
        items = []
        prev = ""
        for d in pd.date_range(start, end).date:
            is_open = 1 if d in opened else 0
            items.append(["SSE", d.strftime("%Y%m%d"), is_open, prev])
            if is_open:
                prev = d.strftime("%Y%m%d")
        if str(p.get("is_open", "")) in ("0", "1"):
            items = [r for r in items if str(r[2]) == str(p["is_open"])]
        return ["exchange", "cal_date", "is_open", "pretrade_date"], items

    # -- protocol --------------------------------------------------------------------------
    def answer(self, api: str, body: dict) -> tuple[int, bytes]:
        """(HTTP status, body) for one request."""
        with self._lock:
            self.requests.append({"api_name": api, "params": dict(body.get("params") or {}), "rows": None,
                                  "fields": body.get("fields", ""), "token": body.get("token")})
            n = len(self.requests)
            fault = self.faults.popleft() if self.faults else None
            now = time.monotonic()
            while self._stamps and now - self._stamps[0] >= 60.0:
                self._stamps.popleft()
            self._stamps.append(now)
            over = self.rate_limit_per_minute is not None and len(self._stamps) > self.rate_limit_per_minute
        if fault == "http500" or (self.http500_every and n % self.http500_every == 0):
            return 500, b"<html>500 Internal Server Error</html>"
        if fault == "garbage":
            return 200, b"<html>proxy error</html>"
        if body.get("token") not in self.tokens:
            return 200, self._msg(-2001, MSG_BAD_TOKEN)
        if fault == "rate" or over:
            return 200, self._msg(40203, MSG_RATE.format(n=self.rate_limit_per_minute or 200))
        if api in self.denied:
            return 200, self._msg(40203, MSG_PERMISSION)
        p = body.get("params") or {}
        if api in ("daily", "index_daily", "adj_factor"):
            fields, items = self._rows_bars(api, p)
            items.sort(key=lambda r: (r[1], r[0]), reverse=True)  # newest first
        elif api == "trade_cal":
            fields, items = self._rows_trade_cal(p)
            items.sort(key=lambda r: r[1], reverse=True)
        elif api == "stk_limit":
            fields, items = self._rows_stk_limit(p)
            items.sort(key=lambda r: (r[0], r[1]), reverse=True)
        elif api == "stock_basic":
            fields, items = self._rows_stock_basic(p)
        elif api == "namechange":
            fields, items = self._rows_namechange(p)
        elif api == "index_weight":
            fields, items = self._rows_index_weight(p)
        else:
            return 200, self._msg(40101, f"接口名称{api}不存在")
        want = [f.strip() for f in str(body.get("fields") or "").split(",") if f.strip()]
        if want:
            idx = [fields.index(f) for f in want if f in fields]
            fields = [fields[i] for i in idx]
            items = [[r[i] for i in idx] for r in items]
        offset = int(p.get("offset") or 0)
        limit = min(int(p.get("limit") or self.row_caps[api]), self.row_caps[api])
        items = items[offset:offset + limit]
        self.requests[n - 1]["rows"] = len(items)
        items = [[x.item() if isinstance(x, np.generic) else x for x in r] for r in items]
        payload = {"request_id": f"r{n}", "code": 0, "msg": "", "data": {"fields": fields, "items": items, "has_more": False}}
        return 200, json.dumps(payload, ensure_ascii=False).encode("utf-8")

    @staticmethod
    def _msg(code: int, msg: str) -> bytes:
        return json.dumps({"request_id": "x", "code": code, "msg": msg, "data": None}, ensure_ascii=False).encode()

    def calls(self, api_name: str | None = None) -> list[dict]:
        """Requests received (optionally of one API), oldest first."""
        return [r for r in self.requests if api_name is None or r["api_name"] == api_name]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0) -> TushareServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                m = re.match(r"^/dataapi/([A-Za-z0-9_]+)$", self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not m:
                    status, data = 404, b"not found"
                else:
                    try:
                        body = json.loads(raw.decode("utf-8"))
                    except ValueError:
                        status, data = 400, b"bad request"
                    else:
                        status, data = server.answer(m.group(1), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/dataapi"
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def start(port: int = 0, **options) -> TushareServer:
    """Start a server on 127.0.0.1 (``port=0``: a free port); ``options`` as ``TushareServer``."""
    return TushareServer(**options).start(port)


def serve(port: int = 0, **options) -> tuple[str, Callable[[], None]]:
    """Start a server; returns ``(url, stop)``. Set ``KLINE_TUSHARE_URL=url`` and
    ``TUSHARE_TOKEN=tushare_server.TOKEN`` for the provider to use it."""
    server = start(port, **options)
    return server.url, server.stop


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=TOKEN)
    args = ap.parse_args()
    srv = start(args.port, tokens=[args.token])
    print(srv.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
