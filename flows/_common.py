"""Flow plumbing shared by the daily and backfill flows: parameters -> settings, run dates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kline.calendar import (
    A_SHARE_CALENDAR,
    VendorCalendar,
    configure,
    last_closed_session,
    previous_session,
    run_layers,
    session_not_closed,
    vendor_calendar,
)
from kline.config import DEFAULT_UNIVERSE, Settings, load_settings
from kline.lake import Lake, configure_storage


def resolve_settings(
    config_file: str | None = None,
    lake: str | None = None,
    provider: str | None = None,
    symbols: list[str] | None = None,
    source: str | None = None,
    calendar: str | None = None,
) -> Settings:
    """Settings from file and environment, overridden by the flow's parameters (``symbols``
    given here replace the configured universe); an object-store lake is reached with their
    ``[storage]`` in this process from now on."""
    overrides: dict[str, Any] = {
        "lake": lake,
        "provider": provider,
        "symbols": list(symbols) if symbols else None,
        "universe": "default" if symbols else None,
        "file": {"source": source, "calendar": calendar},
    }
    settings = load_settings(config_file, overrides)
    if (settings.provider == "file" and not symbols and settings.symbols == DEFAULT_UNIVERSE
            and settings.universe == "default"):
        # a vendor folder defines its own universe: one symbol per file
        from kline.providers.files import FileProvider

        f = settings.file
        found = FileProvider(f.source, f.calendar, f.columns, f.calendars, f.estimate_amount).available_symbols()
        settings = settings.replace(symbols=found)
    configure_storage(settings.storage)
    return settings


def default_run_date(settings: Settings | None = None) -> dt.date:
    """The latest session counted as closed now: today's only after ``calendar.close_cutoff``
    in ``settings.timezone`` (Asia/Shanghai), else the previous one."""
    s = settings or Settings()
    return last_closed_session(s.calendar.close_cutoff, s.timezone, A_SHARE_CALENDAR)


def cap_end(settings: Settings, end: dt.date) -> tuple[dt.date, str | None]:
    """A backfill's end, capped like the default run date: today's session before the close
    cutoff becomes the previous session. Returns the end and a note when it was capped."""
    cutoff, tz = settings.calendar.close_cutoff, settings.timezone
    if not session_not_closed(end, cutoff, tz):
        return end, None
    capped = previous_session(end, A_SHARE_CALENDAR)
    return capped, (f"end {end} capped to {capped}: today's session is not closed before "
                    f"{cutoff} {tz} (calendar.close_cutoff)")


def calendar_codes(settings: Settings) -> set[str]:
    """The exchange calendars a run may ask for: XSHG and the file import's."""
    return {A_SHARE_CALENDAR, settings.file.calendar, *settings.file.calendars.values()} - {""}


def use_calendars(settings: Settings, vendor: VendorCalendar | None = None, as_of: dt.date | None = None) -> None:
    """Set the calendar layers for a run on ``settings`` (in this context): the settings'
    holidays, the vendor calendar (given, else what the lake has cached), the lake's bars up
    to ``as_of`` (the run date: a run knows no closure after it)."""
    lake = Lake(settings.lake)
    if vendor is None:
        vendor = vendor_calendar(None, lake, range(1990, dt.date.today().year + 3))
    configure(run_layers(settings.calendar, calendar_codes(settings), lake, vendor, as_of))


def parse_date(value: str | dt.date | None, name: str) -> dt.date | None:
    """A date given as YYYY-MM-DD (or YYYYMMDD); ValueError naming ``name`` otherwise."""
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: not a date (YYYY-MM-DD): {value!r}") from None


def checked(settings: Settings, dates: list[dt.date]) -> None:
    """The preflight checks (universe, symbols, settings, dates, lake): a run started from a
    deployment refuses bad input before it writes anything, like the CLI does."""
    from kline.preflight import check_dates, check_lake, check_settings, check_symbols
    from kline.universe import check_universe

    check_universe(settings)
    check_symbols(settings)
    check_settings(settings)
    check_dates(settings, dates)
    check_lake(settings)


def universe_as_of(settings: Settings, start: dt.date, end: dt.date | None = None) -> Settings:
    """``settings`` with ``symbols`` = the configured universe on any day of ``[start, end]``
    (point in time; unchanged for ``universe = "default"``)."""
    if settings.universe == "default":
        return settings
    from kline.providers import make_provider
    from kline.universe import static_codes, with_universe

    codes = static_codes(settings)
    if codes is not None:
        return settings.replace(symbols=list(codes))
    loader = None
    if settings.provider == "tushare" and settings.tushare.secret_block:
        from tasks.secrets import prefect_secret_loader as loader
    return with_universe(settings, make_provider(settings, token_loader=loader), start, end)


def run_tags(settings: Settings, *extra: str) -> list[str]:
    """Tags for a run's task runs: the provider and the universe (its symbols when few,
    else their count and a short hash), so the UI can filter runs by either."""
    import hashlib

    syms = sorted(settings.symbols)
    if isinstance(settings.universe, str) and settings.universe != "default":
        universe = settings.universe.replace("file:", "file-")
    elif len(syms) <= 8:
        universe = ",".join(syms)
    else:
        universe = f"{len(syms)}-symbols-{hashlib.sha256(','.join(syms).encode()).hexdigest()[:8]}"
    return [f"provider:{settings.provider}", f"universe:{universe}", *extra]
