"""The pipeline's stages as the flows call them: each binds its task to the lake (results
and cache persist there), hands it only its stage's settings, and passes references on.

``ingest → validate → features → train → backtest → promote → forecast → report``; the daily flow runs
them all, the backfill flow runs ingest and validate per chunk and the rest once. Ingest,
validate and features fan out per coarse symbol batch (``run.batch_symbols``) on the run's
task runner; train, backtest, promote, forecast and report run once, in the flow, on the whole
universe (the models are global: one fit over every symbol's windows).
"""

from __future__ import annotations

import datetime as dt

from prefect import Task, get_run_logger
from prefect.task_runners import TaskRunner

from flows._common import use_calendars
from flows.hooks import stage
from flows.runner import fan_out, task_runner
from kline.calendar import (
    A_SHARE_CALENDAR,
    calendar_info,
    current_layers,
    is_provisional,
    layers_snapshot,
)
from kline.calendar import fingerprint as calendar_fingerprint
from kline.config import Settings
from kline.ingestion import history_start, plan_ingest, source_fingerprint, symbol_batches
from kline.instruments import SymbolError, instrument
from kline.lake import Lake
from kline.rules import describe_limit_sources
from kline.train_stage import sessions_needed
from tasks._common import bind, stage_settings
from tasks.backtest import backtest, promote
from tasks.calendar import from_ref, vendor_calendar_task
from tasks.features import build_features_task, combine_features_task, feature_batches
from tasks.forecast import forecast
from tasks.ingest import ingest_chunk, retry_options
from tasks.report import report
from tasks.train import train_task
from tasks.validate import validate_chunk_task


def symbol_calendars(settings: Settings) -> dict[str, str]:
    """Each symbol's exchange calendar (XSHG for A-shares, the file config for others)."""
    out = {}
    for sym in settings.symbols:
        cal = settings.file.calendars.get(sym) or settings.file.calendar or None
        try:
            out[sym] = instrument(sym, calendar=cal).calendar
        except SymbolError:
            out[sym] = A_SHARE_CALENDAR
    return out


def universe_calendar(settings: Settings) -> str:
    """The calendar that decides run dates: the universe's own when it has only one."""
    cals = set(symbol_calendars(settings).values())
    return cals.pop() if len(cals) == 1 else A_SHARE_CALENDAR


def prepare_calendars(settings: Settings, first: dt.date | None = None, last: dt.date | None = None,
                      fetch: bool = False) -> dict:
    """Set the run's calendar layers (``kline.calendar``). With ``fetch`` and the tushare
    provider, the vendor's ``trade_cal`` of the years a run over ``[first, last]`` may touch
    (from its history start to the year after) is loaded by a retried task, cached in the
    lake per published year. Returns the A-share calendar's ``calendar_info``."""
    vendor = None
    if fetch and settings.provider == "tushare" and settings.tushare.trade_cal_check and first:
        lake = Lake(settings.lake)
        sub = stage_settings(settings, "ingest")
        start = history_start(first, settings.ingest.history_years)
        ref = bind(vendor_calendar_task, lake.root, **retry_options(sub))(
            lake.root, sub, start.year, (last or first).year + 1)
        vendor = from_ref(ref)
    use_calendars(settings, vendor, last or first)
    info = calendar_info(universe_calendar(settings))
    if fetch:
        for line in info["disagreements"]:
            get_run_logger().warning(line)
    return info


def ingest_calls(settings: Settings, spans: list[tuple[list[str], dt.date, dt.date]], as_of: dt.date | None,
                 refresh: bool = False) -> tuple[Task, list[dict]]:
    """The bound ingest task and its keyword arguments, one per (span, symbol batch) of
    ``run.batch_symbols``; ``as_of`` None logs each span as of its own end."""
    lake = Lake(settings.lake)
    sub = stage_settings(settings, "ingest")
    task = bind(ingest_chunk, lake.root, refresh, **retry_options(sub))
    version, layers = source_fingerprint(settings), layers_snapshot()
    calls = [dict(lake_root=lake.root, settings=sub, symbols=batch, start=a.isoformat(), end=b.isoformat(),
                  as_of=(as_of or b).isoformat(), source_version=version, calendars=layers)
             for symbols, a, b in spans for batch in symbol_batches(symbols, settings.run.batch_symbols)]
    return task, calls


def ingest(settings: Settings, run_date: dt.date, refresh: bool = False, runner: TaskRunner | None = None) -> list[dict]:
    """One cached, retried ingest task run per chunk planned for a run as of ``run_date`` and
    symbol batch, on ``runner`` (default: one after another in the flow's thread)."""
    spans = [(list(c.symbols), c.start, c.end) for c in plan_ingest(Lake(settings.lake), settings, run_date)]
    task, calls = ingest_calls(settings, spans, run_date, refresh)
    return _run(task, calls, runner)


def validate(settings: Settings, chunks: list[dict], run_date: dt.date | None, refresh: bool = False,
             runner: TaskRunner | None = None) -> list[dict]:
    """One validation task run per ingested chunk (and batch), on ``runner`` as ``ingest``."""
    lake = Lake(settings.lake)
    task = bind(validate_chunk_task, lake.root, refresh)
    sub = stage_settings(settings, "validate")
    day = run_date.isoformat() if run_date else None
    layers = layers_snapshot()
    calls = [dict(lake_root=lake.root, settings=sub, chunk=chunk, run_date=day,
                  quarantine_alert_rows=settings.alerts.quarantine_rows, calendars=layers) for chunk in chunks]
    return _run(task, calls, runner)


def _run(task: Task, calls: list[dict], runner: TaskRunner | None) -> list:
    if runner is None:
        return [task(**kw) for kw in calls]
    return fan_out(runner, task, calls)


def merge_validation(summaries: list[dict]) -> dict:
    """One run-level validation summary from per-chunk ones (counts summed per symbol)."""
    by_symbol: dict[str, dict] = {}
    failed: set[str] = set()
    excluded: set[str] = set()
    facts: dict[str, set[str]] = {}
    for s in summaries:
        for table, sources in (s.get("limit_facts") or {}).items():
            facts.setdefault(table, set()).update(sources)
        for sym, counts in (s.get("by_symbol") or {}).items():
            acc = by_symbol.setdefault(sym, {"warnings": {}})
            for k, v in counts.items():
                if k == "warnings":
                    for rule, n in v.items():
                        acc["warnings"][rule] = acc["warnings"].get(rule, 0) + n
                elif isinstance(v, int | float):
                    acc[k] = acc.get(k, 0) + v
        failed.update(s.get("failed_expectations") or [])
        excluded.update(s.get("excluded_symbols") or [])
    return {
        "chunks": len(summaries),
        "rows_checked": sum(s.get("rows_checked", 0) for s in summaries),
        "rows_passed": sum(s.get("rows_passed", 0) for s in summaries),
        "rows_quarantined": sum(s.get("rows_quarantined", 0) for s in summaries),
        "by_symbol": by_symbol,
        "failed_expectations": sorted(failed),
        "excluded_symbols": sorted(excluded),
        "price_limits": describe_limit_sources({k: sorted(v) for k, v in facts.items()}),
        "docs_path": next((s.get("docs_path") for s in reversed(summaries) if s.get("docs_path")), None),
        "docs_pages": next((s.get("docs_pages") for s in reversed(summaries) if s.get("docs_pages")), {}),
    }


def feature_panel(settings: Settings, run_date: dt.date, symbols: list[str], upstream: str, refresh: bool = False,
             runner: TaskRunner | None = None) -> dict:
    """The feature panel of ``symbols`` as of ``run_date``: one cached task run per symbol
    batch (``tasks.features.feature_batches``) on ``runner`` (without one, a runner of the
    run's settings is started when there is more than one batch), then, for several batches,
    one that concatenates them. The panel is the same whatever the batches and the runner."""
    lake = Lake(settings.lake)
    sub = stage_settings(settings, "features")
    day = run_date.isoformat()
    task = bind(build_features_task, lake.root, refresh)
    layers = layers_snapshot()
    calls = [dict(lake_root=lake.root, settings=sub, run_date=day, symbols=batch, upstream=upstream,
                  context_symbols=context, calendars=layers)
             for batch, context in feature_batches(symbols, settings.features, settings.run.batch_symbols)]
    if runner is None and len(calls) > 1:
        with task_runner(settings) as started:
            parts = fan_out(started, task, calls)
    else:
        parts = _run(task, calls, runner)
    if len(parts) == 1:  # the whole universe in one batch: its panel is the panel
        return parts[0]
    return bind(combine_features_task, lake.root, refresh)(lake.root, sub, day, parts)


def model_stages(
    settings: Settings, run_date: dt.date, symbols: list[str], validation: dict, refresh: bool = False,
    runner: TaskRunner | None = None,
) -> dict:
    """features → train → backtest → promote → forecast → report as of ``run_date``; the
    features' symbol batches on ``runner`` (see ``feature_panel``).

    Keys downstream caches on the curated layer's content fingerprint, so nothing re-runs
    unless curated data or the stage's own settings changed."""
    lake = Lake(settings.lake)
    root, day = lake.root, run_date.isoformat()
    # the calendar decides each row's target session: a change there is a change upstream
    upstream = f"{lake.curated_fingerprint(run_date)}|{calendar_fingerprint(A_SHARE_CALENDAR, run_date)}"
    with stage("features", symbols):
        features = feature_panel(settings, run_date, symbols, upstream, refresh, runner)
    with stage("train", symbols):
        trained = bind(train_task, root, refresh)(
            root, stage_settings(settings, "train"), day, symbols, features["path"], features["data_fingerprint"]
        )
    calendars = {s: c for s, c in symbol_calendars(settings).items() if s in symbols}
    bt_settings = stage_settings(settings, "backtest")
    with stage("backtest", symbols):
        bt = bind(backtest, root, refresh)(
            root, bt_settings, day, symbols, features["data_fingerprint"], calendars, features["path"]
        )
        candidate = {"name": trained["name"], "version": trained.get("version")}
        decision = bind(promote, root, refresh)(root, stage_settings(settings, "promote"), day, bt, candidate,
                                                alerts=settings.to_dict()["alerts"], features_path=features["path"])
    with stage("forecast", symbols):
        b = settings.backtest
        nxt = bind(forecast, root, refresh)(root, day, symbols, features["path"], decision, bt,
                                            [b.interval_low, b.interval_high])
    with stage("report", symbols):
        rep = bind(report, root, refresh)(
            root, day, symbols, bt, decision, trained["name"], trained.get("version"), None, validation, nxt
        )
    return {"features": features, "train": trained, "backtest": bt, "decision": decision, "forecast": nxt,
            "report": rep}


def with_history(settings: Settings, run_date: dt.date, symbols: list[str]) -> list[str]:
    """The symbols with enough curated history up to ``run_date`` for the model stages
    (``kline.train_stage.sessions_needed``); the others are named in one log line."""
    need = sessions_needed(settings.features, settings.train)
    bars = Lake(settings.lake).read_curated_bars(symbols, end=run_date, columns=["symbol", "trade_date"])
    have = bars["symbol"].value_counts().reindex(symbols, fill_value=0)
    short = have[have < need]
    if not short.empty:
        get_run_logger().warning(
            "too little history for the model stages as of %s: %s; they need %d sessions "
            "(features, window and training targets, twice over for the walk-forward)%s", run_date,
            ", ".join(f"{s} has {n}" for s, n in short.items()), need,
            "" if len(short) < len(symbols) else "; model stages skipped, the data stages are done")
    return [s for s in symbols if s not in short.index]


def run_pipeline(settings: Settings, run_date: dt.date, refresh: bool = False) -> dict:
    """The whole daily pipeline as of ``run_date`` (a session of the universe's calendar)."""
    with task_runner(settings) as runner:  # one runner (a Dask cluster lives as long as it) for the whole run
        return _pipeline(settings, run_date, refresh, runner)


def _pipeline(settings: Settings, run_date: dt.date, refresh: bool, runner: TaskRunner) -> dict:
    logger = get_run_logger()
    universe = list(settings.symbols)
    with stage("ingest", universe):
        chunks = ingest(settings, run_date, refresh, runner)
    with stage("validate", universe):
        summaries = validate(settings, chunks, run_date, refresh, runner)
    cal = universe_calendar(settings)
    provisional = is_provisional(run_date, cal)
    if provisional:
        use_calendars(settings, current_layers(A_SHARE_CALENDAR).vendor, run_date)  # the bars just ingested decide closures
        if not Lake(settings.lake).raw_dates(run_date, run_date):
            # what was ingested before the run date is validated above; nothing to model today
            return {"run_date": run_date.isoformat(), "trading_day": False, "provisional": True,
                    "ingested_rows": sum(c["rows"] for c in chunks)}
    validation = merge_validation(summaries)
    symbols = [s for s in settings.symbols if s not in set(validation["excluded_symbols"])]
    symbols = with_history(settings, run_date, symbols)
    if validation["excluded_symbols"]:
        logger.warning("left out of the downstream stages (run-date bar quarantined): %s",
                       ", ".join(validation["excluded_symbols"]))
    out = {
        "run_date": run_date.isoformat(),
        "trading_day": True,
        "lake": Lake(settings.lake).root,
        "ingested_rows": sum(c["rows"] for c in chunks),
        "chunks": [f"{c['start']}..{c['end']}" for c in chunks],
        "excluded_symbols": validation["excluded_symbols"],
        "provisional": provisional,
        "calendar": calendar_info(cal),
    }
    if not symbols:
        logger.warning("no symbol is left for the model stages as of %s", run_date)
        return out
    models = model_stages(settings, run_date, symbols, validation, refresh, runner)
    out.update(
        model_version=models["train"].get("version"),
        promoted=bool(models["decision"].get("promote")),
        forecast_provisional=bool(models["forecast"].get("provisional")),
        summary=models["report"].get("summary"),
        report=models["report"]["files"]["report.html"],
    )
    return out
