"""Ingest stage: one task run per chunk of dates for all requested symbols."""

from __future__ import annotations

import datetime as dt

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.tasks import exponential_backoff

from kline.ingestion import ingest_range
from kline.lake import Lake
from kline.providers import is_transient, make_provider
from tasks import budget, events
from tasks._common import settings_from, use_layers
from tasks.secrets import prefect_secret_loader

budget.install()  # tushare calls share the server's vendor budget where one is set up


def retry_transient_only(task, task_run, state) -> bool:
    """Retry condition: only errors the provider marks as transient."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we classify, not swallow
        return is_transient(exc)
    return False


def retry_options(ingest_settings: dict) -> dict:
    """Retries with exponential backoff and jitter from the ``ingest`` section."""
    cfg = settings_from(ingest_settings).ingest
    return {
        "retries": cfg.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=cfg.retry_delay_s)
        if cfg.retry_delay_s > 0 else 0,
        "retry_jitter_factor": cfg.retry_jitter if cfg.retry_delay_s > 0 else None,
        "retry_condition_fn": retry_transient_only,
    }


@task(
    name="ingest",
    task_run_name="ingest-{start}..{end}",
    # as_of only labels the log entry; a chunk fetched for any run is the same chunk; the
    # calendar layers are the run's context carried to another process, not an input
    cache_policy=(INPUTS - "as_of" - "calendars") + TASK_SOURCE,
    persist_result=True,
    retry_condition_fn=retry_transient_only,
)
def ingest_chunk(
    lake_root: str,
    settings: dict,
    symbols: list[str],
    start: str,
    end: str,
    as_of: str | None = None,
    source_version: str = "",
    calendars: dict | None = None,
    layout: str = "day",
) -> dict:
    """Fetch ``symbols`` over ``[start, end]`` (ISO dates) into the raw layer, for a run as of
    ``as_of`` (default ``end``). ``source_version`` (``kline.ingestion.source_fingerprint``)
    only keys the cache: a changed vendor file is read again.

    ``settings`` is the ingest stage's sub-dict (``tasks._common.stage_settings``).
    ``calendars`` (``kline.calendar.layers_snapshot``) re-establishes the run's calendar
    layers where the task runs in another process (a Dask worker). ``layout``: raw day files
    (daily runs) or month files (``"month"``, backfills; ``kline.lake.partitions``).
    Returns partition keys, row counts and the content hash, never data.
    """
    use_layers(calendars)
    s = settings_from(settings).replace(symbols=symbols)
    provider = make_provider(s, token_loader=prefect_secret_loader)
    ref = ingest_range(
        provider,
        Lake(lake_root),
        symbols,
        dt.date.fromisoformat(start),
        dt.date.fromisoformat(end),
        as_of=dt.date.fromisoformat(as_of) if as_of else None,
        layout=layout,
    )
    events.emit(events.INGESTED, events.data_resource(lake_root, "raw.bars"), "raw bars", lake_root, symbols,
                {"start": start, "end": end, "rows": ref.get("rows"), "provider": s.provider,
                 "content_hash": ref.get("content_hash")})
    return ref
