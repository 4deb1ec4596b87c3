"""The two deployments as code, for ``kline serve`` (no work pool); ``prefect.yaml`` declares
the same ones for ``prefect deploy`` and a process worker."""

from __future__ import annotations

from typing import Any

from prefect.schedules import Cron

from flows.backfill import backfill_flow
from flows.daily import daily_flow

DAILY_CRON = "0 18 * * 1-5"  # after the close and the vendors' evening update
DAILY_TIMEZONE = "Asia/Shanghai"


def build_deployments(parameters: dict[str, Any] | None = None) -> list:
    """``daily`` (scheduled) and ``backfill`` (on demand) runner deployments."""
    params = {k: v for k, v in (parameters or {}).items() if v is not None}
    daily = daily_flow.to_deployment(
        name="daily",
        schedules=[Cron(DAILY_CRON, timezone=DAILY_TIMEZONE)],
        parameters=params,
        tags=["kline", "daily"],
    )
    backfill = backfill_flow.to_deployment(name="backfill", parameters=params, tags=["kline", "backfill"])
    return [daily, backfill]


def serve_deployments(parameters: dict[str, Any] | None = None, limit: int | None = None) -> None:
    """Serve both deployments from this process until interrupted."""
    from prefect import serve

    serve(*build_deployments(parameters), limit=limit)
