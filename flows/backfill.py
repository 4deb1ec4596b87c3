"""The backfill flow, two ways:

- data backfill (default): the daily ingest path over ``[start, end]`` in chunks of about
  ``ingest.backfill_chunk_rows`` bars (sessions per chunk = that // symbols per batch), each
  chunk ingested and validated per symbol batch by task runs cached and retried on their own
  (an interrupted backfill redoes at most the chunk it was in), on the ``[run]`` task runner:
  as many batches as it runs at once go through every chunk before the next batches start,
  then features, training, backtest and the report once, as of ``end``; it writes raw month
  files (``kline.lake.partitions``: a later daily run's day file wins for its day);
- replay (``replay=True``): the daily flow as of every session in ``[start, end]``, each its
  own flow run named after its date, point in time, with bounded concurrency; re-running a
  replay finds every stage cached.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows._common import cap_end, checked, parse_date, resolve_settings, run_tags, universe_as_of
from flows.daily import daily_flow
from flows.hooks import publish_failure, stage
from flows.runner import fan_out, task_runner
from flows.stages import (
    ingest_calls,
    merge_validation,
    model_stages,
    prepare_calendars,
    universe_calendar,
    validate,
    with_history,
)
from kline.calendar import session_on_or_before, sessions_in_range
from kline.ingestion import row_chunks, symbol_batches
from kline.lake import Lake

# Terminal progress callbacks (the CLI registers one): fn(done, total, label).
progress_listeners: list[Callable[[int, int, str], None]] = []


def _progress(done: int, total: int, label: str, artifact_id) -> None:
    if artifact_id is not None:
        update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1))
    for fn in progress_listeners:
        fn(done, total, label)


@flow(name="kline-backfill", flow_run_name="backfill-{start}-{end}", log_prints=True,
      on_failure=[publish_failure], on_crashed=[publish_failure])
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
    replay: bool = False,
    models: bool = True,
) -> dict:
    """Backfill ``[start, end]`` (ISO dates, inclusive): ingest + validate in row-sized chunks,
    then (``models``) train, backtest and report as of the last session on or before
    ``end``; or, with ``replay``, run the daily flow as of every session in the range."""
    logger = get_run_logger()
    settings = resolve_settings(config_file, lake, provider, symbols, source, calendar)
    a, b = parse_date(start, "start"), parse_date(end, "end")
    if a > b:
        raise ValueError(f"start {a} is after end {b}")
    prepare_calendars(settings)
    b, note = cap_end(settings, b)
    if note:
        logger.info(note)
        if a > b:
            raise ValueError(f"{note}: nothing to backfill from {a}")
    checked(settings, [a, b])
    if replay:
        return _replay(settings, a, b, config_file, refresh)
    with tags(*run_tags(settings, "backfill")):
        prepare_calendars(settings, a, b, fetch=True)
    lk = Lake(settings.lake)
    # the last session: the date the models are built as of (a symbol whose bar on it is
    # quarantined sits out), over the universe's members on that date
    last = session_on_or_before(b, universe_calendar(settings))
    final = universe_as_of(settings, last)
    span = universe_as_of(settings, a, b)
    batch = min(len(span.symbols), settings.run.batch_symbols or len(span.symbols))
    chunks = row_chunks(a, b, sessions_in_range(a, b, universe_calendar(settings)), batch,
                        settings.ingest.backfill_chunk_rows)
    steps = _steps(settings, list(span.symbols), chunks)
    artifact_id = create_progress_artifact(progress=0.0, key="backfill-progress",
                                           description=f"backfill {a}..{b}")
    summaries = []
    rows = 0
    notes: dict[str, dict] = {}
    members: dict[tuple, set[str]] = {}
    with tags(*run_tags(settings, "backfill")):
        with task_runner(settings) as runner:
            for i, (group, (c0, c1), label) in enumerate(steps, 1):
                # a chunk covers the members of any of its days (no survivorship bias); it is
                # logged as of its own end: what a daily run on that date would know
                if (c0, c1) not in members:
                    members[(c0, c1)] = set(universe_as_of(settings, c0, c1).symbols)
                spans = [(s, c0, c1) for s in ([x for x in g if x in members[(c0, c1)]] for g in group) if s]
                universe = [x for s, _, _ in spans for x in s]
                task, calls = ingest_calls(settings, spans, None, refresh)
                calls = [{**c, "layout": "month"} for c in calls]  # month files: ~20 per chunk, not ~500
                with stage("ingest", universe):
                    refs = fan_out(runner, task, calls)
                with stage("validate", universe):
                    summaries += validate(settings, refs, last, refresh, runner)
                for ref in refs:
                    rows += ref["rows"]
                    for sym, n in (ref.get("provider_notes") or {}).items():  # vendor rows dropped or collapsed
                        notes.setdefault(sym, {}).update(n)
                _progress(i, len(steps), label, artifact_id)
        out = {"start": a.isoformat(), "end": b.isoformat(), "lake": lk.root, "ingested_rows": rows,
               "chunks": len(chunks), "row_notes": notes}
        if models:
            validation = merge_validation(summaries)
            excluded = set(validation["excluded_symbols"])
            kept = with_history(final, last, [s for s in final.symbols if s not in excluded])
            out.update(run_date=last.isoformat(), excluded_symbols=sorted(excluded))
            if kept:
                result = model_stages(final, last, kept, validation, refresh)
                out.update(report=result["report"]["files"]["report.html"], summary=result["report"].get("summary"))
    logger.info("backfilled %d rows in %d chunk(s), %s..%s", rows, len(chunks), a, b)
    return out


def _steps(settings, symbols: list[str], chunks: list[tuple]) -> list[tuple[list[list[str]], tuple, str]]:
    """(symbol batches run side by side, chunk, progress label) in order: each group of as
    many batches as the runner runs at once goes through every chunk, in date order, before
    the next group starts, so a batch's symbols stay warm (a provider's per-symbol state) and
    one batch's chunks are validated in order; one group (the default for up to
    ``run.batch_symbols`` symbols) is plain chunk order."""
    batches = symbol_batches(symbols, settings.run.batch_symbols)
    if settings.run.task_runner == "dask":
        lanes = max(1, settings.run.dask_workers) if not settings.run.dask_address else len(batches)
    else:
        lanes = max(1, settings.max_concurrency)
    groups = [batches[i:i + lanes] for i in range(0, len(batches), lanes)] or [[]]
    return [(g, c, f"{c[0]}..{c[1]}" + (f" (symbols {k}/{len(groups)})" if len(groups) > 1 else ""))
            for k, g in enumerate(groups, 1) for c in chunks]


def _replay(settings, a, b, config_file: str | None, refresh: bool) -> dict:
    """The daily flow as of each session in ``[a, b]``, ``settings.max_concurrency`` at once."""
    logger = get_run_logger()
    days = sessions_in_range(a, b, universe_calendar(settings))
    artifact_id = create_progress_artifact(progress=0.0, key="replay-progress",
                                           description=f"replay {a}..{b}")
    # a market universe is resolved by each daily run as of its own date
    params = {"symbols": list(settings.symbols) if settings.universe == "default" else None,
              "provider": settings.provider, "lake": settings.lake,
              "config_file": config_file, "source": settings.file.source or None,
              "calendar": settings.file.calendar or None, "refresh": refresh}

    def one(day) -> dict:
        return daily_flow(run_date=day.isoformat(), **params)

    results = []
    workers = max(1, settings.max_concurrency)
    if workers == 1:
        for i, d in enumerate(days, 1):
            results.append(one(d))
            _progress(i, len(days), d.isoformat(), artifact_id)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, r in enumerate(pool.map(one, days), 1):
                results.append(r)
                _progress(i, len(days), r["run_date"], artifact_id)
    logger.info("replayed %d session(s), %s..%s", len(days), a, b)
    return {"start": a.isoformat(), "end": b.isoformat(), "lake": Lake(settings.lake).root,
            "replayed": [r["run_date"] for r in results],
            "reports": [r.get("report") for r in results]}
