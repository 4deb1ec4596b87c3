"""Instrument registry: tushare code -> asset type, exchange, board, calendar, lot size.

``000001.SH`` is the SSE Composite *index*; ``000001.SZ`` is Ping An Bank, a *stock*. The
suffix decides the exchange and, with the code's prefix, whether it is an index. Price limits
depend on the date and the stock's status as well as the board: ``kline.rules.limit_of``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from kline.calendar import A_SHARE_CALENDAR

A_SHARE_RE = re.compile(r"^(\d{6})\.(SH|SZ|BJ)$")
# A plain ticker for file imports of foreign symbols (SPX, GOOG, BRK.B): never a path.
TICKER_RE = re.compile(r"^[A-Z0-9][A-Z0-9_\-]{0,14}(\.[A-Z]{1,3})?$")


class SymbolError(ValueError):
    """A symbol that is not a well-formed code."""


@dataclass(frozen=True)
class Instrument:
    symbol: str
    asset_type: str  # "index" or "stock"
    exchange: str  # "SSE", "SZSE", "BSE" or the calendar code of a foreign symbol
    board: str  # main, chinext, star, bse, index or foreign
    calendar: str  # exchange-calendars code

    @property
    def is_index(self) -> bool:
        return self.asset_type == "index"

    @property
    def lot_size(self) -> int:
        """Shares per board lot for orders (1 for indices and foreign symbols)."""
        return 100 if self.asset_type == "stock" and self.board != "foreign" else 1


def _classify(code: str, suffix: str) -> tuple[str, str, str]:
    """(asset_type, exchange, board) for a six-digit code and its suffix."""
    if suffix == "SH":
        if code.startswith(("000", "880", "95")):
            return "index", "SSE", "index"
        if code.startswith(("688", "689")):
            return "stock", "SSE", "star"
        return "stock", "SSE", "main"
    if suffix == "SZ":
        if code.startswith("399"):
            return "index", "SZSE", "index"
        if code.startswith(("300", "301", "302")):
            return "stock", "SZSE", "chinext"
        return "stock", "SZSE", "main"
    if code.startswith("899"):
        return "index", "BSE", "index"
    return "stock", "BSE", "bse"


def is_a_share_code(symbol: str) -> bool:
    return bool(A_SHARE_RE.match(symbol))


def validate_symbol(symbol: str, allow_foreign: bool = False) -> str:
    """Return the symbol if well-formed, else raise SymbolError naming it."""
    if not isinstance(symbol, str) or not symbol:
        raise SymbolError("empty symbol")
    if A_SHARE_RE.match(symbol):
        return symbol
    if allow_foreign and TICKER_RE.match(symbol) and ".." not in symbol:
        return symbol
    raise SymbolError(
        f"ill-formed symbol {symbol!r}: expected a tushare code like 600519.SH, 000001.SZ "
        "or 430047.BJ" + (" or a plain ticker like SPX" if allow_foreign else "")
    )


@functools.lru_cache(maxsize=65536)
def instrument(symbol: str, calendar: str | None = None) -> Instrument:
    """Look up a symbol. Foreign tickers need an explicit ``calendar``."""
    m = A_SHARE_RE.match(symbol)
    if m:
        asset, exchange, board = _classify(m.group(1), m.group(2))
        return Instrument(symbol, asset, exchange, board, calendar or A_SHARE_CALENDAR)
    if calendar is None:
        raise SymbolError(
            f"symbol {symbol!r} is not an A-share code; give its exchange calendar "
            "(e.g. --calendar XNYS) to import it from a file"
        )
    validate_symbol(symbol, allow_foreign=True)
    return Instrument(symbol, "stock", calendar, "foreign", calendar)
