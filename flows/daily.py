"""The daily flow: ingest every session since the last run up to ``run_date``, validate,
build features, retrain per policy, backtest, decide promotion and report. ``kline run``
and the ``daily`` deployment call it."""

from __future__ import annotations

from prefect import flow, get_run_logger, tags
from prefect.runtime import flow_run

from flows._common import checked, default_run_date, parse_date, resolve_settings, run_tags
from flows.hooks import publish_failure
from flows.stages import run_pipeline, universe_calendar
from kline.calendar import is_session


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
    """Run the pipeline as of ``run_date`` (ISO date; default: the latest XSHG session on or
    before today in Asia/Shanghai). A date that is not a session completes without work."""
    logger = get_run_logger()
    settings = resolve_settings(config_file, lake, provider, symbols, source, calendar)
    day = parse_date(run_date, "run_date") or default_run_date(settings.timezone)
    checked(settings, [day])
    cal = universe_calendar(settings)
    if not is_session(day, cal):
        logger.info("%s is not a trading day (%s); nothing to do", day, cal)
        return {"run_date": day.isoformat(), "trading_day": False}
    with tags(*run_tags(settings)):
        out = run_pipeline(settings, day, refresh)
    logger.info("ingested %d rows in %d chunk(s) as of %s", out["ingested_rows"], len(out["chunks"]), day)
    if out.get("summary"):
        logger.info(out["summary"])
    return out
