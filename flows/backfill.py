"""The backfill flow: the daily ingest path over ``[start, end]`` in month chunks, each a
cached, retried task run, so an interrupted backfill resumes where it stopped."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows._common import parse_date, resolve_settings
from kline.ingestion import month_chunks
from kline.lake import Lake
from tasks._common import bind, stage_settings
from tasks.ingest import ingest_chunk, retry_options

# Terminal progress callbacks (the CLI registers one): fn(done, total, label).
progress_listeners: list[Callable[[int, int, str], None]] = []


def _progress(done: int, total: int, label: str, artifact_id) -> None:
    if artifact_id is not None:
        update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1))
    for fn in progress_listeners:
        fn(done, total, label)


@flow(name="kline-backfill", flow_run_name="backfill-{start}-{end}", log_prints=True)
def backfill_flow(
    start: str,
    end: str,
    symbols: list[str] | None = None,
    provider: str | None = None,
    lake: str | None = None,
    config_file: str | None = None,
    source: str | None = None,
    calendar: str | None = None,
    refresh: bool = False,
) -> dict:
    """Ingest ``[start, end]`` (ISO dates, inclusive) for the universe in month chunks."""
    logger = get_run_logger()
    settings = resolve_settings(config_file, lake, provider, symbols, source, calendar)
    a, b = parse_date(start, "start"), parse_date(end, "end")
    if a > b:
        raise ValueError(f"start {a} is after end {b}")
    lk = Lake(settings.lake)
    sub = stage_settings(settings, "ingest")
    task = bind(ingest_chunk, lk.root, refresh, **retry_options(sub))
    chunks = month_chunks(a, b)
    artifact_id = create_progress_artifact(progress=0.0, key="backfill-progress",
                                           description=f"backfill {a}..{b}")
    refs = []
    with tags(f"provider:{settings.provider}", f"universe:{len(settings.symbols)}", "backfill"):
        for i, (c0, c1) in enumerate(chunks, 1):
            # each chunk is logged as of its own end: what a daily run on that date would know
            refs.append(task(lk.root, sub, list(settings.symbols), c0.isoformat(), c1.isoformat(),
                             c1.isoformat()))
            _progress(i, len(chunks), f"{c0:%Y-%m}", artifact_id)
    rows = sum(r["rows"] for r in refs)
    logger.info("backfilled %d rows in %d chunk(s), %s..%s", rows, len(chunks), a, b)
    return {"start": a.isoformat(), "end": b.isoformat(), "lake": settings.lake,
            "ingested_rows": rows, "chunks": len(chunks)}
