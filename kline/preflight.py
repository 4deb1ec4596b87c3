"""Everything about a run's settings that can be refused before any work is done, so that
bad input stops with one message (CLI exit 2; a failed flow run from a deployment) and
nothing is written to the lake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from kline.calendar import (
    A_SHARE_CALENDAR,
    CalendarError,
    calendar_bounds,
    check_code,
    parse_cutoff,
    session_not_closed,
    today,
)
from kline.config import ConfigError, Settings
from kline.instruments import SymbolError, instrument, validate_symbol


def check_settings(settings: Settings) -> None:
    """Raise ConfigError naming the first setting no stage could run with (choices and types
    are checked when the settings are built)."""
    from kline.features import FeatureError, check_feature_config
    from kline.forecasters import FORECASTERS

    try:
        check_feature_config(settings.features)
    except FeatureError as exc:
        raise ConfigError(f"features: {exc}") from None
    b = settings.backtest
    unknown = [m for m in b.models if m not in FORECASTERS]
    if unknown or "persistence" not in b.models:
        raise ConfigError(f"backtest.models: {', '.join(unknown) or 'persistence missing'}; "
                          f"choose from {', '.join(FORECASTERS)} (persistence is required)")
    if not 0 < b.interval_low < b.interval_high < 1:
        raise ConfigError(f"backtest.interval_low/interval_high: need 0 < low < high < 1, "
                          f"got {b.interval_low}, {b.interval_high}")
    if b.topk < 1 or b.n_drop < 0:
        raise ConfigError(f"backtest.topk must be >= 1 and backtest.n_drop >= 0, got {b.topk}, {b.n_drop}")
    p = settings.promotion
    if not 0 < p.max_p <= 1 or p.min_sessions < 1 or p.recent_sessions < 1:
        raise ConfigError(f"promotion: need 0 < max_p <= 1, min_sessions >= 1 and recent_sessions >= 1, "
                          f"got {p.max_p}, {p.min_sessions}, {p.recent_sessions}")
    for code in {settings.file.calendar, *settings.file.calendars.values()} - {""}:
        try:
            check_code(code)
        except CalendarError as exc:
            raise ConfigError(f"file calendar: {exc}") from None
    try:
        parse_cutoff(settings.calendar.close_cutoff)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_symbols(settings: Settings) -> None:
    """Raise SymbolError for an ill-formed symbol (paths included) or a foreign one without
    a calendar; foreign tickers are allowed only for file imports."""
    foreign_ok = settings.provider == "file"
    for sym in settings.symbols:
        validate_symbol(sym, allow_foreign=foreign_ok)
        if foreign_ok:
            instrument(sym, calendar=settings.file.calendars.get(sym) or settings.file.calendar or None)


def check_dates(settings: Settings, dates: Sequence[dt.date]) -> None:
    """Raise ValueError for a date in the future (exchange time zone), today's session before
    the close cutoff, or a date before the calendar starts. Dates past the published calendar
    are allowed: they run on provisional sessions (``kline.calendar``)."""
    tz, cutoff = settings.timezone, settings.calendar.close_cutoff
    now = today(tz)
    lo, _ = calendar_bounds(A_SHARE_CALENDAR)
    for d in dates:
        if d > now:
            raise ValueError(f"date {d} is in the future (today is {now} in {tz})")
        if session_not_closed(d, cutoff, tz):
            raise ValueError(f"date {d} is today's session, not closed before {cutoff} {tz} "
                             "(calendar.close_cutoff); run it after the cutoff or give an earlier date")
        if d < lo:
            raise ValueError(f"date {d} is before the XSHG trading calendar starts ({lo})")


__all__ = ["ConfigError", "SymbolError", "check_dates", "check_settings", "check_symbols"]
