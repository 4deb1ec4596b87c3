"""The daily flow: ingest every session since the last run up to ``run_date``, validate,
build features, retrain per policy, backtest, decide promotion and report. ``kline run``
and the ``daily`` deployment call it."""

from __future__ import annotations

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from flows._common import (
    checked,
    default_run_date,
    parse_date,
    resolve_settings,
    run_tags,
    universe_as_of,
)
from flows.hooks import publish_failure
from flows.stages import prepare_calendars, run_pipeline, universe_calendar
from kline.calendar import calendar_info, is_provisional, is_session


def daily_run_name() -> str:
    params = flow_run.parameters or {}
    return f"daily-{params.get('run_date') or default_run_date()}"


@flow(name="kline-daily", flow_run_name=daily_run_name, log_prints=True, on_failure=[publish_failure],
      on_crashed=[publish_failure])
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
    """Run the pipeline as of ``run_date`` (ISO date; default: the latest session counted as
    closed, i.e. today's only after ``calendar.close_cutoff`` Asia/Shanghai). A date that is
    not a session completes without work; so does a provisional session (past the published
    calendar) on which no symbol of the universe has a bar."""
    logger = get_run_logger()
    settings = resolve_settings(config_file, lake, provider, symbols, source, calendar)
    prepare_calendars(settings)
    day = parse_date(run_date, "run_date") or default_run_date(settings)
    checked(settings, [day])
    settings = universe_as_of(settings, day)  # the universe's members on the run date
    cal = universe_calendar(settings)
    with tags(*run_tags(settings)):
        prepare_calendars(settings, day, fetch=True)
        if not is_session(day, cal):
            logger.info("%s is not a trading day (%s); nothing to do", day, cal)
            return {"run_date": day.isoformat(), "trading_day": False, "provisional": is_provisional(day, cal)}
        if is_provisional(day, cal):
            info = calendar_info(cal)
            logger.warning("%s is a PROVISIONAL %s session: the calendar is known only through %s (%s); "
                           "weekdays past it are assumed open except fixed-date closures",
                           day, cal, info["known_through"], info["source"])
        out = run_pipeline(settings, day, refresh)
    if not out.get("trading_day", True):
        logger.warning("%s: provisional session with no bar for any symbol of the universe: treated as "
                       "closed", day)
        return out
    logger.info("ingested %d rows in %d chunk(s) as of %s", out["ingested_rows"], len(out["chunks"]), day)
    if out.get("summary"):
        logger.info(out["summary"])
    return out
