"""Trading sessions from ``exchange-calendars`` (XSHG for A-shares).

Dates are ``datetime.date`` session labels; every function takes the calendar code so a
file import of a foreign symbol (``XNYS``) uses the same code path.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

A_SHARE_CALENDAR = "XSHG"
CALENDAR_START = "1991-01-02"  # far enough back for every index series we serve


class CalendarError(ValueError):
    """Unknown calendar code or a date outside the calendar's range."""


@functools.lru_cache(maxsize=16)
def _calendar(code: str):
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xcals.get_calendar(code, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName:
        raise CalendarError(f"unknown exchange calendar {code!r}") from None


@functools.lru_cache(maxsize=16)
def _session_array(code: str) -> np.ndarray:
    """All sessions of the calendar as sorted ``datetime64[D]``."""
    return _calendar(code).sessions.values.astype("datetime64[D]")


def _d64(day: dt.date) -> np.datetime64:
    return np.datetime64(day, "D")


def _to_date(x: np.datetime64) -> dt.date:
    return pd.Timestamp(x).date()


def calendar_bounds(code: str = A_SHARE_CALENDAR) -> tuple[dt.date, dt.date]:
    """First and last session the calendar knows."""
    s = _session_array(code)
    return _to_date(s[0]), _to_date(s[-1])


def is_session(day: dt.date, code: str = A_SHARE_CALENDAR) -> bool:
    s = _session_array(code)
    i = np.searchsorted(s, _d64(day))
    return bool(i < len(s) and s[i] == _d64(day))


def sessions_in_range(start: dt.date, end: dt.date, code: str = A_SHARE_CALENDAR) -> list[dt.date]:
    """Sessions with ``start <= session <= end`` (both inclusive), ascending."""
    return [_to_date(x) for x in sessions_array(start, end, code)]


def sessions_array(start: dt.date, end: dt.date, code: str = A_SHARE_CALENDAR) -> np.ndarray:
    """Like ``sessions_in_range`` but as ``datetime64[D]`` (fast, for vector code)."""
    s = _session_array(code)
    lo = np.searchsorted(s, _d64(start), side="left")
    hi = np.searchsorted(s, _d64(end), side="right")
    return s[lo:hi]


def previous_session(day: dt.date, code: str = A_SHARE_CALENDAR) -> dt.date:
    """Latest session strictly before ``day``."""
    s = _session_array(code)
    i = np.searchsorted(s, _d64(day), side="left")
    if i == 0:
        raise CalendarError(f"no {code} session before {day}")
    return _to_date(s[i - 1])


def next_session(day: dt.date, code: str = A_SHARE_CALENDAR) -> dt.date:
    """Earliest session strictly after ``day``."""
    s = _session_array(code)
    i = np.searchsorted(s, _d64(day), side="right")
    if i >= len(s):
        raise CalendarError(f"no {code} session after {day} in the calendar")
    return _to_date(s[i])


def session_on_or_before(day: dt.date, code: str = A_SHARE_CALENDAR) -> dt.date:
    """``day`` if it is a session, else the previous session."""
    return day if is_session(day, code) else previous_session(day, code)


def today(tz: str = "Asia/Shanghai") -> dt.date:
    """Today's date in the exchange's time zone."""
    return dt.datetime.now(ZoneInfo(tz)).date()
