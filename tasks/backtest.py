"""Backtest stage: walk-forward evaluation of every model, then the champion decision.

``backtest`` is cached on (run date, symbols, stage settings, data fingerprint) and writes
``backtests/<run_date>-<key>/``: ``predictions.parquet``, ``equity.parquet`` and
``summary.json``. ``promote`` reads that summary and the registry's champion, decides, and
records the decision; it is cached on the same small inputs, so re-running a date keeps the
decision made the first time rather than re-deciding against a champion set since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pandas as pd
import pyarrow as pa
from prefect import task

from kline import registry
from kline.backtest import decide_promotion, run_backtest
from kline.calendar import A_SHARE_CALENDAR
from kline.features import build_features, load_panel
from kline.instruments import is_a_share_code
from kline.jsonable import jsonable
from kline.lake import Lake, content_hash
from kline.monitoring import decay_verdict
from tasks import events
from tasks._common import STAGE_CACHE, settings_from

PREDICTIONS_FILE = "predictions.parquet"
EQUITY_FILE = "equity.parquet"
SUMMARY_FILE = "summary.json"
DECISION_FILE = "decision.json"


def backtest_run_id(run_date: str, settings: dict, symbols: list[str], data_fingerprint: str) -> str:
    """``<run_date>-<12 hex>``: one folder per date and configuration, so runs with other
    settings never overwrite each other."""
    blob = json.dumps([settings, sorted(symbols), data_fingerprint], sort_keys=True).encode()
    return f"{run_date}-{hashlib.sha256(blob).hexdigest()[:12]}"


@task(name="backtest", task_run_name="backtest-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def backtest(
    lake_root: str,
    settings: dict,
    run_date: str,
    symbols: list[str],
    data_fingerprint: str = "",
    calendars: dict[str, str] | None = None,
    features_path: str | None = None,
) -> dict:
    """Walk-forward backtest of ``settings["backtest"]["models"]`` on curated bars of
    ``symbols`` up to ``run_date`` (ISO). ``settings`` is the backtest stage's sub-dict;
    ``data_fingerprint`` (of the curated input) is there to key the cache. The panel is the
    features stage's (``features_path``) when given, else built here from the same bars.

    Returns the run id, file paths, the held-out span and each model's promotion metric.
    """
    s = settings_from(settings)
    lake = Lake(lake_root)
    day = dt.date.fromisoformat(run_date)
    bars = lake.read_curated_bars(symbols, end=day)
    if bars.empty:
        raise ValueError(f"no curated bars for {symbols} up to {run_date}: run ingest and validate first")
    adj = lake.read_adj_factor(symbols, end=day)
    facts = lake.read_instrument_facts(symbols, end=day)
    calendars = dict(calendars or {})
    foreign = {c for sym, c in calendars.items() if not is_a_share_code(sym)}
    calendar = foreign.pop() if len(foreign) == 1 else A_SHARE_CALENDAR
    if features_path:
        panel = load_panel(lake, features_path)
        panel = panel[panel["symbol"].isin(symbols) & (pd.to_datetime(panel["trade_date"]).dt.date <= day)].copy()
        panel.loc[pd.to_datetime(panel["target_date"]).dt.date > day, "target"] = float("nan")  # point in time
    else:  # features from the same bars, prices adjusted by the factor
        panel = build_features(bars, s.features, adj, calendar=calendar)
    result = run_backtest(panel.reset_index(drop=True), bars, s, calendars=calendars, adj_factor=adj, facts=facts)

    run = backtest_run_id(run_date, settings, symbols, data_fingerprint)
    paths = lake.paths
    folder = paths.backtest_dir(run)
    summary = {
        "run": run,
        "run_date": run_date,
        "data_fingerprint": data_fingerprint or content_hash(bars),
        **result.summary(),
    }
    equity = result.equity.rename_axis("trade_date").reset_index()
    lake.atomic_write_table(f"{folder}/{PREDICTIONS_FILE}", pa.Table.from_pandas(result.predictions, preserve_index=False))
    lake.atomic_write_table(f"{folder}/{EQUITY_FILE}", pa.Table.from_pandas(equity, preserve_index=False))
    lake.atomic_write_text(f"{folder}/{SUMMARY_FILE}", json.dumps(jsonable(summary), indent=1))
    metric = s.backtest.promote_metric
    return {
        "run": run,
        "dir": folder,
        "predictions": f"{folder}/{PREDICTIONS_FILE}",
        "equity": f"{folder}/{EQUITY_FILE}",
        "summary": f"{folder}/{SUMMARY_FILE}",
        "data_fingerprint": summary["data_fingerprint"],
        "test_start": result.test_dates[0].isoformat(),
        "test_end": result.test_dates[-1].isoformat(),
        "scored_sessions": summary["scored_sessions"],
        "metric": metric,
        "values": jsonable({m: f.get(metric) for m, f in result.forecast.items()}),
    }


def _champion_record(lake: Lake, name: str, metric: str) -> dict | None:
    """The registry's champion as ``decide_promotion`` reads it: version and the metric
    value recorded when it was promoted (None when recorded under another metric)."""
    rec = registry.get_champion(lake, name)
    if not rec:
        return None
    decision = rec.get("decision") or {}
    value = decision.get("candidate_value") if decision.get("metric") == metric else None
    # a champion set by the train stage's bootstrap was never compared with anything
    basis = "bootstrap" if str(decision.get("rule", "")).startswith("bootstrap") else "promoted"
    return {"version": rec.get("version"), "metric_value": value, "basis": basis}


# ``alerts`` keys the cache (the decay verdict depends on it); a re-run with other alert
# settings reads the promotion decision already recorded for this backtest, never re-decides
@task(name="promote", task_run_name="promote-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def promote(lake_root: str, settings: dict, run_date: str, backtest_ref: dict, candidate: dict,
            alerts: dict | None = None) -> dict:
    """Champion/challenger: ``candidate`` (``{"name", "version"}`` from the train stage)
    becomes champion only if its walk-forward metric beats persistence and the champion's.

    Records the decision beside the backtest and in the candidate's registry folder
    (``promotion-<run_date>.json``), moves the champion pointer on promotion; returns it.
    Emits ``kline.model.promoted`` on promotion and, given ``alerts`` (the ``[alerts]``
    section), ``kline.model.decayed`` when the champion's rolling walk-forward MASE is above
    its threshold (the verdict is in the returned ``decay``).
    """
    s = settings_from(settings)
    lake = Lake(lake_root)
    summary = json.loads(lake.read_text(backtest_ref["summary"]))
    name, version = candidate["name"], candidate.get("version")
    metric = s.backtest.promote_metric
    forecast = {m: {k: (float("nan") if v is None else v) for k, v in f.items()}
                for m, f in summary["forecast"].items()}
    symbols = summary.get("symbols") or []
    recorded = f"{lake.paths.model_dir(name, version)}/promotion-{run_date}.json" if version else None
    previous = json.loads(lake.read_text(recorded)) if recorded and lake.exists(recorded) else None
    if previous and previous.get("backtest_run") == backtest_ref["run"]:
        decision = previous  # decided already (the champion pointer moved then, if at all)
    else:
        decision = _decide(lake, name, version, forecast, metric, run_date, backtest_ref, recorded)
        _announce(decision, lake_root, name, version, metric, run_date, symbols)
    if alerts is not None:
        decision = {**decision, "decay": _check_decay(lake, name, metric, backtest_ref, alerts, run_date, symbols)}
    return decision


def _decide(lake: Lake, name: str, version: str | None, forecast: dict, metric: str, run_date: str,
            backtest_ref: dict, recorded: str | None) -> dict:
    """Decide, record the decision (with the version and the backtest) and move the champion."""
    champion = _champion_record(lake, name, metric)
    decision = decide_promotion(name, version, forecast, metric, champion)
    decision["champion_basis"] = champion.get("basis") if champion else None
    decision.update(run_date=run_date, backtest_run=backtest_ref["run"],
                    held_out=[backtest_ref.get("test_start"), backtest_ref.get("test_end")])
    decision = jsonable(decision)
    text = json.dumps(decision, indent=1)
    if recorded and version in registry.list_versions(lake, name):
        # every decision, promoted or not, stays with the version it judged
        lake.atomic_write_text(recorded, text)
    if decision["promote"]:
        registry.set_champion(lake, name, version, decision)
    lake.atomic_write_text(f"{backtest_ref['dir']}/{DECISION_FILE}", text)
    return decision


def _announce(decision: dict, lake_root: str, name: str, version: str | None, metric: str, run_date: str,
              symbols: list[str]) -> None:
    if decision["promote"]:
        events.emit(events.PROMOTED, events.model_resource(name, version), f"{name} {version}", lake_root, symbols,
                    {"model": name, "version": version, "run_date": run_date, "metric": metric,
                     "candidate_value": decision.get("candidate_value"), "rule": decision.get("rule")},
                    alert=True)


def _check_decay(lake: Lake, name: str, metric: str, backtest_ref: dict, alerts: dict, run_date: str,
                 symbols: list[str]) -> dict | None:
    """The champion's decay verdict on this backtest's walk-forward predictions of its model
    (``kline.monitoring.decay_verdict``); emits ``kline.model.decayed`` when decayed."""
    champion = registry.get_champion(lake, name)
    if not champion:
        return None
    cfg = settings_from({"alerts": alerts}).alerts
    verdict = decay_verdict(lake.read_table(backtest_ref["predictions"]).to_pandas(), name, cfg)
    verdict["champion_version"] = champion.get("version")
    if verdict["decayed"]:
        events.emit(events.DECAYED, events.model_resource(name, champion.get("version")),
                    f"{name} {champion.get('version')}", lake_root=lake.root, symbols=symbols,
                    payload={**verdict, "run_date": run_date, "backtest_run": backtest_ref["run"]}, alert=True)
    return verdict
