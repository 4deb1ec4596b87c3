"""Calendar stage: the vendor's trading calendar (tushare ``trade_cal``), cached in the lake."""

from __future__ import annotations

import datetime as dt
import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from kline.calendar import VendorCalendar, vendor_calendar
from kline.lake import Lake
from kline.providers import ProviderError, is_transient, make_provider
from tasks._common import settings_from
from tasks.ingest import retry_transient_only
from tasks.secrets import prefect_secret_loader

log = logging.getLogger(__name__)


# the lake is the cache: whole published years are stored there, the rest is asked again
@task(name="trade-cal", task_run_name="trade-cal-{start_year}..{end_year}", cache_policy=NO_CACHE,
      retry_condition_fn=retry_transient_only)
def vendor_calendar_task(lake_root: str, settings: dict, start_year: int, end_year: int) -> dict | None:
    """The vendor calendar over ``[start_year, end_year]`` as ``{source, start, end,
    open_days}`` (ISO dates), fetched once per whole published year; None when the provider
    has none or the account may not call it (logged)."""
    provider = make_provider(settings_from(settings), token_loader=prefect_secret_loader)
    if not hasattr(provider, "trade_cal"):
        return None
    try:
        vc = vendor_calendar(provider, Lake(lake_root), range(start_year, end_year + 1))
    except ProviderError as exc:
        if is_transient(exc):
            raise
        log.warning("no vendor calendar (%s); the other calendar layers decide", exc)
        return None
    if vc is None:
        return None
    return {"source": vc.source, "start": vc.start.isoformat(), "end": vc.end.isoformat(),
            "open_days": sorted(d.isoformat() for d in vc.open_days)}


def from_ref(ref: dict | None) -> VendorCalendar | None:
    """The task's result back as a ``VendorCalendar``."""
    if not ref:
        return None
    return VendorCalendar(ref["source"], dt.date.fromisoformat(ref["start"]), dt.date.fromisoformat(ref["end"]),
                          frozenset(dt.date.fromisoformat(d) for d in ref["open_days"]))
