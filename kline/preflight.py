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
    for name, value, lo, hi in number_bounds(settings):
        if not lo <= value <= hi:
            raise ConfigError(f"{name} = {value!r}: out of range, expected {lo} to {hi}")


def number_bounds(s: Settings) -> list[tuple[str, float, float, float]]:
    """(setting, value, lowest, highest) for the numbers a run would otherwise accept and choke
    on later: a negative count, or one so large the run never ends."""
    t, i = s.train, s.ingest
    return [
        ("train.epochs", t.epochs, 1, 100_000),
        ("train.hidden", t.hidden, 1, 4096),
        ("train.layers", t.layers, 1, 16),
        ("train.patience", t.patience, 0, 100_000),
        ("train.batch_size", t.batch_size, 0, 10_000_000),
        ("train.lr", t.lr, 1e-12, 10.0),
        ("train.test_sessions", t.test_sessions, 1, 100_000),
        ("ingest.history_years", i.history_years, 1, 100),
        ("ingest.retries", i.retries, 0, 20),
        ("ingest.retry_delay_s", i.retry_delay_s, 0, 3600),
        ("tushare.calls_per_minute", s.tushare.calls_per_minute, 1, 100_000),
        ("tushare.timeout_s", s.tushare.timeout_s, 0.1, 3600),
        ("max_concurrency", s.max_concurrency, 1, 64),
        ("file.max_mb", s.file.max_mb, 1, 1_048_576),
    ]


def check_lake(settings: Settings) -> None:
    """Raise ConfigError when a local lake root cannot hold a lake: a file, or a folder this
    process may not write (refused before any work, not half-way through a run)."""
    import os

    root = settings.lake
    if "://" in str(root) and not str(root).startswith("file://"):
        return
    path = str(root).removeprefix("file://")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"lake {path}: not a folder (a file is in the way)")
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(os.path.abspath(probe))
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"lake {path}: read-only (no write permission on {probe})")


# more codes than the whole A-share market lists (about 5 400 stocks): a list this long is a
# mistake (a pasted file, a loop gone wrong), and the whole market is ``universe = "all"``
MAX_SYMBOLS = 6000


def check_symbols(settings: Settings) -> None:
    """Raise SymbolError for more than ``MAX_SYMBOLS`` codes, an ill-formed symbol (paths
    included) or a foreign one without a calendar; foreign tickers are allowed only for
    file imports. The message names one code, never the list."""
    if len(settings.symbols) > MAX_SYMBOLS:
        raise SymbolError(f"symbols: {len(settings.symbols)} codes given, more than the {MAX_SYMBOLS} a list may "
                          'hold; for the whole market set universe = "all"')
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
