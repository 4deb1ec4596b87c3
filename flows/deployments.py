"""The two deployments as code, for ``kline serve`` (no work pool); ``prefect.yaml`` declares
the same ones for ``prefect deploy`` and a process worker, with ``daily`` and ``backfill`` of
this module as entrypoints: the flows with the run timeouts of the worker's settings
(``kline.toml`` in its working directory, ``KLINE_ALERTS_*``), read when they are looked up."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron

from flows.backfill import backfill_flow
from flows.daily import daily_flow
from kline.config import ConfigError, Settings, load_settings

DAILY_CRON = "0 18 * * 1-5"  # after the close and the vendors' evening update; prefect.yaml repeats it
DAILY_TIMEZONE = "Asia/Shanghai"
# one daily run at a time; a second one waits (AwaitingConcurrencySlot) instead of overlapping
DAILY_CONCURRENCY = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def timed_flows(settings: Settings) -> tuple:
    """The daily and backfill flows with ``settings.alerts``' run timeouts (0 = none)."""
    a = settings.alerts
    return (daily_flow.with_options(timeout_seconds=a.daily_timeout_s or None),
            backfill_flow.with_options(timeout_seconds=a.backfill_timeout_s or None))


def __getattr__(name: str) -> Any:
    """``daily`` and ``backfill`` (prefect.yaml's entrypoints), timed by the settings read now."""
    if name not in ("daily", "backfill"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        settings = load_settings()
    except ConfigError:  # the run itself reports a bad config, with the file's name
        settings = Settings()
    daily, backfill = timed_flows(settings)
    return daily if name == "daily" else backfill


def build_deployments(parameters: dict[str, Any] | None = None, settings: Settings | None = None) -> list:
    """``daily`` (scheduled, one run at a time) and ``backfill`` (on demand) runner
    deployments, with the run timeouts of ``settings.alerts`` (0 = none)."""
    timed_daily, timed_backfill = timed_flows(settings or Settings())
    params = {k: v for k, v in (parameters or {}).items() if v is not None}
    daily_dep = timed_daily.to_deployment(
        name="daily",
        schedules=[Cron(DAILY_CRON, timezone=DAILY_TIMEZONE)],
        parameters=params,
        tags=["kline", "daily"],
        concurrency_limit=DAILY_CONCURRENCY,
    )
    backfill_dep = timed_backfill.to_deployment(name="backfill", parameters=params, tags=["kline", "backfill"])
    return [daily_dep, backfill_dep]


def serve_deployments(parameters: dict[str, Any] | None = None, limit: int | None = None,
                      settings: Settings | None = None) -> None:
    """Serve both deployments from this process until interrupted. Stopping it leaves the
    daily schedule active (Prefect's default would pause it): a restart resumes the service."""
    from prefect import serve

    serve(*build_deployments(parameters, settings), limit=limit, pause_on_shutdown=False)
