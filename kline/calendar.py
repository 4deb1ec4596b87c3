"""Trading sessions, layered (the one module every stage asks for a session).

Layers, each overriding the ones before where it speaks:

1. ``exchange-calendars`` (published holidays), extended through its own extension point: a
   subclass whose precomputed holidays include the years of
2. the holiday file shipped with kline (``kline/holidays.toml``, whole years the library does
   not list yet) and a user's ``[calendar] holiday_file``; then ``[calendar] holidays`` /
   ``extra_sessions`` from the settings (single days, anywhere);
3. the vendor's calendar (tushare ``trade_cal``), the authority where it disagrees (logged);
4. past everything known, **provisional** sessions: weekdays minus the fixed-date closures of
   ``FIXED_CLOSURES``, minus provisional days on which the lake holds no bar at all (treated
   as closures: no vendor traded them).

Dates are ``datetime.date`` session labels; every function takes the calendar code, so a
file import of a foreign symbol (``XNYS``) uses the same code path. The layers beyond the
library are set per context by ``configure`` (the flows call it at their start, from the
run's settings and lake, point in time); without it, layers 1, 2 (packaged file) and 4
apply. ``market_sessions`` is that plain calendar, for the synthetic market and caches.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import tomllib
import warnings
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

A_SHARE_CALENDAR = "XSHG"
CALENDAR_START = "1991-01-02"  # far enough back for every index series we serve
HOLIDAY_FILE = Path(__file__).with_name("holidays.toml")

# Closures that fall on the same dates every year: what a provisional calendar can assume.
# XSHG: New Year's Day, Labour Day (1-5 May), National Day (1-7 October); the lunar holidays
# (Spring Festival, Qingming, Dragon Boat, Mid-Autumn) move and are only known once published.
_CHINA_FIXED = ((1, 1), *((5, d) for d in range(1, 6)), *((10, d) for d in range(1, 8)))
_US_FIXED = ((1, 1), (7, 4), (12, 25))
FIXED_CLOSURES: dict[str, tuple[tuple[int, int], ...]] = {
    "XSHG": _CHINA_FIXED, "XSHE": _CHINA_FIXED, "XNYS": _US_FIXED, "XNAS": _US_FIXED}


class CalendarError(ValueError):
    """Unknown calendar code or a date outside the calendar's range."""


@dataclasses.dataclass(frozen=True)
class VendorCalendar:
    """A vendor's own calendar over ``[start, end]``: the open days in it (``source`` names it)."""

    source: str
    start: dt.date
    end: dt.date
    open_days: frozenset[dt.date]


@dataclasses.dataclass(frozen=True)
class Layers:
    """What a run adds to the library's calendar for one code (see the module docstring)."""

    holidays: frozenset[dt.date] = frozenset()
    extra_sessions: frozenset[dt.date] = frozenset()
    holiday_files: tuple[str, ...] = ()
    vendor: VendorCalendar | None = None
    no_bar_days: frozenset[dt.date] = frozenset()  # days the lake holds no bar for (layer 4)
    last_bar_day: dt.date | None = None  # the lake's latest bar: no-bar days after it say nothing


@dataclasses.dataclass(frozen=True)
class Built:
    """One code's sessions with where each stretch comes from."""

    code: str
    sessions: np.ndarray  # datetime64[D], sorted
    known_through: dt.date  # last date known for sure (later sessions are provisional)
    sources: tuple[tuple[str, dt.date], ...]  # (source, known through), in layer order
    disagreements: tuple[str, ...]  # vendor vs the other layers, one line each
    provisional_closures: tuple[dt.date, ...]  # provisional weekdays closed for want of any bar


# The run's layers per code. A context variable: a flow run sets its own, the tasks it starts
# (threads that copy the context) see them, and concurrent runs in other threads do not.
_layers: contextvars.ContextVar[dict[str, Layers] | None] = contextvars.ContextVar("kline_calendar_layers",
                                                                                  default=None)
PROVISIONAL_HORIZON = dt.date(2032, 12, 31)  # provisional sessions reach at least this far


def configure(layers: dict[str, Layers]) -> None:
    """Set the run-level layers (2-4) of every code for this context; codes not named get none."""
    _layers.set(dict(layers))


def layers_snapshot() -> dict[str, Layers] | None:
    """This context's run-level layers (None: not configured), for a worker in another
    process or thread that must ``configure`` the same ones."""
    layers = _layers.get()
    return dict(layers) if layers is not None else None


def current_layers(code: str) -> Layers:
    return (_layers.get() or {}).get(code, Layers())


@functools.lru_cache(maxsize=16)
def _library_class(code: str):
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return type(xcals.get_calendar(code, start=CALENDAR_START))
    except xcals.errors.InvalidCalendarName:
        raise CalendarError(f"unknown exchange calendar {code!r}") from None


def check_code(code: str) -> None:
    """Raise CalendarError for a code exchange-calendars does not know."""
    _library_class(code)


@functools.lru_cache(maxsize=32)
def holiday_file_years(code: str, path: str) -> dict[int, tuple[dt.date, ...]]:
    """Whole years of closed weekdays for ``code`` in a holiday file (TOML: ``[XSHG]`` with
    ``2027 = ["2027-01-01", ...]``); each listed year counts as complete."""
    p = Path(path)
    if not p.is_file():
        raise CalendarError(f"holiday file not found: {path}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CalendarError(f"holiday file {path}: not valid TOML ({exc})") from None
    out: dict[int, tuple[dt.date, ...]] = {}
    for year, days in (data.get(code) or {}).items():
        try:
            y = int(year)
            parsed = tuple(sorted(dt.date.fromisoformat(str(d)) for d in days))
        except (TypeError, ValueError):
            raise CalendarError(f"holiday file {path}: [{code}] {year}: expected a year and ISO dates") from None
        if any(d.year != y for d in parsed):
            raise CalendarError(f"holiday file {path}: [{code}] {year} lists a date of another year")
        out[y] = parsed
    return out


def _library(code: str, files: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, dt.date]]]:
    """Layers 1-2 (files): sessions from exchange-calendars, extended by whole file years
    through a subclass of the library's own calendar class."""
    import exchange_calendars as xcals
    from exchange_calendars.precomputed_exchange_calendar import PrecomputedExchangeCalendar

    base = _library_class(code)
    precomputed = issubclass(base, PrecomputedExchangeCalendar)
    if precomputed:
        lib_end = base.bound_max().date()
    else:  # rule-based: the rules are published a year ahead at most
        lib_end = dt.date(dt.date.today().year + 1, 12, 31)
        bmax = base.bound_max()
        if bmax is not None:
            lib_end = min(lib_end, bmax.date())
    sources = [(f"exchange-calendars {xcals.__version__}", lib_end)]
    extra: list[dt.date] = []
    end = lib_end
    for path in files:
        years = holiday_file_years(code, path)
        new = sorted(y for y in years if y > end.year)
        # only consecutive years extend what is known; a gap stays provisional
        for y in new:
            if y != end.year + 1:
                break
            extra.extend(years[y])
            end = dt.date(y, 12, 31)
        if end > sources[-1][1]:
            sources.append((f"holiday file {Path(path).name}", end))
    cls = base
    if extra:
        extra_idx = pd.DatetimeIndex(sorted(set(extra)))
        if precomputed:
            holidays = pd.DatetimeIndex(base.precomputed_holidays()).union(extra_idx)
            cls = type(f"Kline{base.__name__}", (base,), {"precomputed_holidays": classmethod(lambda c: holidays)})
        else:
            base_adhoc = base.adhoc_holidays.fget
            cls = type(f"Kline{base.__name__}", (base,),
                       {"adhoc_holidays": property(lambda self: list(base_adhoc(self)) + list(extra_idx))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = cls(start=CALENDAR_START, end=end.isoformat())
    return cal.sessions.values.astype("datetime64[D]"), sources


def _weekdays(start: dt.date, end: dt.date) -> np.ndarray:
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1, dtype="datetime64[D]")
    return days[np.is_busday(days)]


def fixed_closures(code: str, years: Iterable[int]) -> set[dt.date]:
    """The fixed-date closures of ``code`` in ``years`` (see ``FIXED_CLOSURES``)."""
    return {dt.date(y, m, d) for y in years for m, d in FIXED_CLOSURES.get(code, ())}


def _as_d64(days: Iterable[dt.date]) -> np.ndarray:
    return np.array(sorted(days), dtype="datetime64[D]")


def _built(code: str) -> Built:
    """``code``'s sessions (sorted ``datetime64[D]``) with this context's layers."""
    return _build(code, current_layers(code))


def market_sessions(code: str = A_SHARE_CALENDAR) -> np.ndarray:
    """Sessions of layers 1, the packaged holiday file and 4 only, whatever a run configured:
    the calendar a simulated market trades on (deterministic for a kline release)."""
    return _build(code, Layers()).sessions


@functools.lru_cache(maxsize=32)
def _build(code: str, layers: Layers) -> Built:
    files = (str(HOLIDAY_FILE), *layers.holiday_files)
    sessions, sources = _library(code, files)
    known = sources[-1][1]
    vendor = layers.vendor
    if vendor is not None and vendor.end >= known:
        sources.append((vendor.source, vendor.end))
    known_through = max(known, vendor.end if vendor else known)
    horizon = max(PROVISIONAL_HORIZON, dt.date(known_through.year + 2, 12, 31))
    # layer 4 past the library and files: weekdays minus fixed closures
    provisional = _weekdays(known + dt.timedelta(days=1), horizon)
    closed = _as_d64(fixed_closures(code, range(known.year, horizon.year + 1)))
    provisional = np.setdiff1d(provisional, closed)
    s = np.union1d(sessions, provisional)
    # settings: single days anywhere
    s = np.setdiff1d(s, _as_d64(layers.holidays))
    s = np.union1d(s, _as_d64(d for d in layers.extra_sessions if d.weekday() < 5))
    disagreements: list[str] = []
    if vendor is not None:  # layer 3: the vendor is the authority over its range
        lo, hi = np.datetime64(vendor.start, "D"), np.datetime64(vendor.end, "D")
        inside = s[(s >= lo) & (s <= hi)]
        v = _as_d64(vendor.open_days)
        only_vendor, only_local = np.setdiff1d(v, inside), np.setdiff1d(inside, v)
        for what, days in (("open", only_vendor), ("closed", only_local)):
            if len(days):
                disagreements.append(f"{vendor.source} says {code} is {what} on "
                                     + ", ".join(str(d) for d in days[:20]) + (" ..." if len(days) > 20 else "")
                                     + " (other layers disagree; the vendor wins)")
        s = np.union1d(s[(s < lo) | (s > hi)], v)
    # provisional days on which the lake holds no bar at all: nobody traded them
    no_bar: list[dt.date] = []
    if layers.last_bar_day is not None:
        kt, last = np.datetime64(known_through, "D"), np.datetime64(layers.last_bar_day, "D")
        cand = s[(s > kt) & (s <= last)]
        have = _as_d64(layers.no_bar_days)
        no_bar = [to_date(x) for x in np.intersect1d(cand, have)]
        s = np.setdiff1d(s, _as_d64(no_bar))
    for line in disagreements:
        log.warning(line)
    return Built(code, s, known_through, tuple(sources), tuple(disagreements), tuple(no_bar))


def _d64(day: dt.date) -> np.datetime64:
    return np.datetime64(day, "D")


def to_date(x: np.datetime64) -> dt.date:
    """A ``datetime64`` session label as a ``datetime.date``."""
    return pd.Timestamp(x).date()


def calendar_bounds(code: str = A_SHARE_CALENDAR) -> tuple[dt.date, dt.date]:
    """First and last session the calendar holds (provisional ones included)."""
    s = _built(code).sessions
    return to_date(s[0]), to_date(s[-1])


def known_through(code: str = A_SHARE_CALENDAR) -> dt.date:
    """The last date whose sessions are known for sure; later ones are provisional."""
    return _built(code).known_through


def is_provisional(day: dt.date, code: str = A_SHARE_CALENDAR) -> bool:
    """True for a date past everything published about ``code``."""
    return day > _built(code).known_through


def calendar_info(code: str = A_SHARE_CALENDAR) -> dict:
    """How far ``code`` is known for sure and from which source, for status and reports."""
    b = _built(code)
    return {
        "calendar": code,
        "known_through": b.known_through.isoformat(),
        "source": b.sources[-1][0] if b.known_through == b.sources[-1][1] else b.sources[0][0],
        "layers": [{"source": s, "through": d.isoformat()} for s, d in b.sources],
        "provisional_from": (b.known_through + dt.timedelta(days=1)).isoformat(),
        "provisional_closures": [d.isoformat() for d in b.provisional_closures],
        "disagreements": list(b.disagreements),
    }


def fingerprint(code: str, end: dt.date) -> str:
    """Hash of the sessions through ``end`` (plus a month) and of what is provisional there:
    a cache key part that changes when the calendar a run saw changes."""
    b = _built(code)
    horizon = np.datetime64(end + dt.timedelta(days=31), "D")
    s = b.sessions[b.sessions <= horizon]
    tag = b.known_through.isoformat() if b.known_through <= end + dt.timedelta(days=31) else "known"
    return hashlib.sha256(s.tobytes() + tag.encode()).hexdigest()[:16]


def is_session(day: dt.date, code: str = A_SHARE_CALENDAR) -> bool:
    s = _built(code).sessions
    i = np.searchsorted(s, _d64(day))
    return bool(i < len(s) and s[i] == _d64(day))


def sessions_in_range(start: dt.date, end: dt.date, code: str = A_SHARE_CALENDAR) -> list[dt.date]:
    """Sessions with ``start <= session <= end`` (both inclusive), ascending."""
    return [to_date(x) for x in sessions_array(start, end, code)]


def sessions_array(start: dt.date, end: dt.date, code: str = A_SHARE_CALENDAR) -> np.ndarray:
    """Like ``sessions_in_range`` but as ``datetime64[D]`` (fast, for vector code)."""
    s = _built(code).sessions
    lo = np.searchsorted(s, _d64(start), side="left")
    hi = np.searchsorted(s, _d64(end), side="right")
    return s[lo:hi]


def previous_session(day: dt.date, code: str = A_SHARE_CALENDAR) -> dt.date:
    """Latest session strictly before ``day``."""
    s = _built(code).sessions
    i = np.searchsorted(s, _d64(day), side="left")
    if i == 0:
        raise CalendarError(f"no {code} session before {day}")
    return to_date(s[i - 1])


def next_session(day: dt.date, code: str = A_SHARE_CALENDAR) -> dt.date:
    """Earliest session strictly after ``day`` (provisional past the known calendar)."""
    s = _built(code).sessions
    i = np.searchsorted(s, _d64(day), side="right")
    if i >= len(s):
        raise CalendarError(f"no {code} session after {day} in the calendar")
    return to_date(s[i])


def session_on_or_before(day: dt.date, code: str = A_SHARE_CALENDAR) -> dt.date:
    """``day`` if it is a session, else the previous session."""
    return day if is_session(day, code) else previous_session(day, code)


def today(tz: str = "Asia/Shanghai") -> dt.date:
    """Today's date in the exchange's time zone."""
    return dt.datetime.now(ZoneInfo(tz)).date()


def parse_cutoff(text: str) -> dt.time:
    """``"HH:MM"`` -> time; ValueError naming the setting otherwise."""
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"calendar.close_cutoff: expected HH:MM, got {text!r}") from None


def last_closed_session(cutoff: str, tz: str = "Asia/Shanghai", code: str = A_SHARE_CALENDAR,
                        now: dt.datetime | None = None) -> dt.date:
    """The latest session counted as closed at ``now`` (default: the clock): today's session
    only from ``cutoff`` (local time in ``tz``: the close plus the vendors' publishing delay)."""
    local = (now or dt.datetime.now(ZoneInfo(tz))).astimezone(ZoneInfo(tz))
    day = local.date()
    if is_session(day, code) and local.time() < parse_cutoff(cutoff):
        return previous_session(day, code)
    return session_on_or_before(day, code)


def session_not_closed(day: dt.date, cutoff: str, tz: str = "Asia/Shanghai", code: str = A_SHARE_CALENDAR,
                       now: dt.datetime | None = None) -> bool:
    """True when ``day`` is today's session and the clock in ``tz`` is before ``cutoff``."""
    local = (now or dt.datetime.now(ZoneInfo(tz))).astimezone(ZoneInfo(tz))
    return day == local.date() and is_session(day, code) and local.time() < parse_cutoff(cutoff)


# -- a run's layers: settings, the lake's cached vendor calendar and its bars -------------------

def vendor_year(provider, lake, year: int) -> pd.DataFrame | None:
    """The vendor's calendar of ``year`` (columns ``cal_date``, ``is_open``): from the lake's
    cache, else fetched through ``provider.trade_cal`` when a provider is given (a complete
    year is cached, a partial one used for this run only). None when unknown."""
    path = lake.paths.trade_cal(provider.name if provider else "tushare", year) if lake else None
    if path and lake.exists(path):
        return lake.read_table(path).to_pandas()
    if provider is None or not hasattr(provider, "trade_cal"):
        return None
    df = provider.trade_cal(dt.date(year, 1, 1), dt.date(year, 12, 31))
    if df is None or df.empty:
        return None
    days = (dt.date(year, 12, 31) - dt.date(year, 1, 1)).days + 1
    if path and df["cal_date"].nunique() == days:
        import pyarrow as pa

        lake.atomic_write_table(path, pa.Table.from_pandas(df, preserve_index=False))
    return df


def vendor_calendar(provider, lake, years: Iterable[int], source: str = "tushare trade_cal") -> VendorCalendar | None:
    """Layer 3 over the contiguous run of ``years`` the vendor knows (see ``vendor_year``);
    the range ends at the last day the vendor lists."""
    frames = []
    for y in sorted(set(years)):
        df = vendor_year(provider, lake, y)
        if df is None:
            if frames:
                break
            continue
        frames.append(df)
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    dates = pd.to_datetime(df["cal_date"]).dt.date
    is_open = df["is_open"].astype(bool)  # provider.trade_cal's column, as cached
    return VendorCalendar(source, min(dates), max(dates), frozenset(dates[is_open.to_numpy()]))


def _cfg_days(values: Iterable[str], name: str) -> frozenset[dt.date]:
    out = set()
    for v in values:
        try:
            out.add(dt.date.fromisoformat(str(v)))
        except ValueError:
            raise CalendarError(f"calendar.{name}: not a date (YYYY-MM-DD): {v!r}") from None
    return frozenset(out)


def run_layers(cfg, codes: Iterable[str], lake=None, vendor: VendorCalendar | None = None,
               as_of: dt.date | None = None) -> dict[str, Layers]:
    """Layers 2-4 of each code for a run: ``cfg`` is the ``[calendar]`` settings section
    (single days apply to XSHG; the holiday file to every code it names), ``lake`` gives the
    days that hold bars (point in time: only those up to ``as_of``), ``vendor`` the A-share
    vendor calendar."""
    files = (cfg.holiday_file,) if cfg.holiday_file else ()
    for f in files:
        if not Path(f).is_file():
            raise CalendarError(f"calendar.holiday_file: file not found: {f}")
    raw = sorted(lake.raw_dates(end=as_of)) if lake is not None else []
    common = Layers(holiday_files=files, no_bar_days=_no_bar_days(raw), last_bar_day=raw[-1] if raw else None)
    out = dict.fromkeys(codes, common)
    out[A_SHARE_CALENDAR] = dataclasses.replace(
        common, holidays=_cfg_days(cfg.holidays, "holidays"), vendor=vendor,
        extra_sessions=_cfg_days(cfg.extra_sessions, "extra_sessions"))
    return out


def _no_bar_days(raw: list[dt.date]) -> frozenset[dt.date]:
    """Weekdays of the last two years up to the lake's latest bar that hold no bar at all
    (``_built`` keeps only the provisional ones)."""
    if not raw:
        return frozenset()
    start = max(raw[0], raw[-1] - dt.timedelta(days=731))
    weekdays = _weekdays(start, raw[-1])
    return frozenset(to_date(x) for x in np.setdiff1d(weekdays, _as_d64(raw)))
