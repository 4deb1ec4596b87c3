"""The daily flow: ingest every session since the last run up to ``run_date``, then the
downstream stages. ``kline run`` and the ``daily`` deployment call it."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from flows._common import default_run_date, parse_date, resolve_settings
from kline.calendar import A_SHARE_CALENDAR, is_session
from kline.config import Settings
from kline.ingestion import plan_ingest
from kline.lake import Lake
from tasks._common import bind, stage_settings
from tasks.ingest import ingest_chunk, retry_options


def daily_run_name() -> str:
    params = flow_run.parameters or {}
    return f"daily-{params.get('run_date') or default_run_date()}"


def run_ingest(settings: Settings, run_date: dt.date, refresh: bool = False) -> list[dict]:
    """Ingest stage of a run as of ``run_date``: one cached, retried task run per chunk."""
    lake = Lake(settings.lake)
    sub = stage_settings(settings, "ingest")
    task = bind(ingest_chunk, lake.root, refresh, **retry_options(sub))
    refs = []
    for chunk in plan_ingest(lake, settings, run_date):
        refs.append(
            task(lake.root, sub, list(chunk.symbols), chunk.start.isoformat(), chunk.end.isoformat(),
                 run_date.isoformat())
        )
    return refs


@flow(name="kline-daily", flow_run_name=daily_run_name, log_prints=True)
def daily_flow(
    run_date: str | None = None,
    symbols: list[str] | None = None,
    provider: str | None = None,
    lake: str | None = None,
    config_file: str | None = None,
    source: str | None = None,
    calendar: str | None = None,
    refresh: bool = False,
) -> dict:
    """Run the pipeline as of ``run_date`` (ISO date; default: the latest XSHG session on or
    before today in Asia/Shanghai). A non-session date completes without work."""
    logger = get_run_logger()
    settings = resolve_settings(config_file, lake, provider, symbols, source, calendar)
    day = parse_date(run_date, "run_date") or default_run_date(settings.timezone)
    if not is_session(day, A_SHARE_CALENDAR):
        logger.info("%s is not a trading day (XSHG); nothing to do", day)
        return {"run_date": day.isoformat(), "trading_day": False}
    with tags(f"provider:{settings.provider}", f"universe:{len(settings.symbols)}"):
        refs = run_ingest(settings, day, refresh)
    rows = sum(r["rows"] for r in refs)
    logger.info("ingested %d rows in %d chunk(s) as of %s", rows, len(refs), day)
    return {
        "run_date": day.isoformat(),
        "trading_day": True,
        "lake": settings.lake,
        "ingested_rows": rows,
        "chunks": [f"{r['start']}..{r['end']}" for r in refs],
    }
