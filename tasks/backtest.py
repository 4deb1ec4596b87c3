"""Backtest stage: walk-forward evaluation of every model, then promotion on evidence.

``backtest`` is cached on (run date, symbols, stage settings, data fingerprint) and writes
``backtests/<run_date>-<key>/``: ``predictions.parquet``, ``equity.parquet`` and
``summary.json``. ``promote`` reads that summary, re-judges the registry's champion on
the sessions it never saw, decides on the candidate, and records the decision; it is cached on the same small inputs, so re-running a date keeps the
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
from kline.backtest import REFERENCE, decide_promotion, judge_candidate, out_of_sample, run_backtest
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


def _point_in_time_panel(lake: Lake, features_path: str, symbols: list[str], day: dt.date) -> pd.DataFrame:
    """The features panel of ``symbols`` as of ``day``: no row after it, no outcome after it."""
    panel = load_panel(lake, features_path)
    panel = panel[panel["symbol"].isin(symbols) & (pd.to_datetime(panel["trade_date"]).dt.date <= day)].copy()
    panel.loc[pd.to_datetime(panel["target_date"]).dt.date > day, "target"] = float("nan")
    return panel.reset_index(drop=True)


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
        panel = _point_in_time_panel(lake, features_path, symbols, day)
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


# ``alerts`` keys the cache (the decay verdict depends on it); a re-run with other alert
# settings reads the promotion decision already recorded for this backtest, never re-decides
@task(name="promote", task_run_name="promote-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def promote(lake_root: str, settings: dict, run_date: str, backtest_ref: dict, candidate: dict,
            alerts: dict | None = None, features_path: str | None = None) -> dict:
    """Promotion on evidence (``kline.backtest.judge_candidate``): re-judge the champion on
    the newest sessions it never saw (retired when it no longer beats persistence), then
    make ``candidate`` (``{"name", "version"}`` from the train stage) champion only if, on
    the rows it, persistence and the champion all predicted, its walk-forward metric beats
    both with a Diebold-Mariano p below ``promotion.max_p``. The champion predicts on the
    panel at ``features_path``; without it the champion cannot be re-judged and is kept.

    Records the decision beside the backtest and in the candidate's registry folder
    (``promotion-<run_date>.json``), writes the walk-forward evidence onto the candidate's
    card, moves or clears the champion pointer; returns the decision. Emits
    ``kline.model.promoted`` / ``kline.model.retired`` and, given ``alerts`` (the
    ``[alerts]`` section), ``kline.model.decayed`` when the champion's rolling walk-forward
    MASE is above its threshold (the verdict is in the returned ``decay``; None when the run
    started without a champion).
    """
    s = settings_from(settings)
    lake = Lake(lake_root)
    summary = json.loads(lake.read_text(backtest_ref["summary"]))
    name, version = candidate["name"], candidate.get("version")
    metric = s.backtest.promote_metric
    symbols = summary.get("symbols") or []
    recorded = f"{lake.paths.model_dir(name, version)}/promotion-{run_date}.json" if version else None
    with registry.champion_lock(lake, name):  # read-judge-write: one promoter at a time, across processes
        previous = json.loads(lake.read_text(recorded)) if recorded and lake.exists(recorded) else None
        serving = registry.get_champion(lake, name)  # the champion this run started with
        if previous and previous.get("backtest_run") == backtest_ref["run"]:
            decision = previous  # decided already (the champion pointer moved then, if at all)
        else:
            decision = _decide(lake, s, name, version, summary, run_date, backtest_ref, recorded, features_path)
            _announce(decision, lake_root, name, version, metric, run_date, symbols)
    if alerts is not None:
        decision = {**decision, "decay": _check_decay(lake, serving, name, backtest_ref, alerts, run_date, symbols)}
    return decision


def _champion_rows(lake: Lake, name: str, day: dt.date, summary: dict, features_path: str | None
                   ) -> tuple[dict | None, pd.DataFrame | None, str | None]:
    """(champion pointer, its out-of-sample predictions on the held-out dates, why it cannot
    be judged here). A champion trained after ``day`` (a replay) is left out, as is one
    that cannot predict on this run's features (another feature set or universe)."""
    champ = registry.get_champion(lake, name)
    if not champ:
        return None, None, None
    trained = registry.read_card(lake, name, champ["version"]).get("run_date")
    if trained and dt.date.fromisoformat(trained) > day:
        return champ, None, f"the champion was trained as of {trained}, after this run date"
    if not features_path:
        return champ, None, "no features to re-judge the champion on"
    panel = _point_in_time_panel(lake, features_path, summary.get("symbols") or [], day)
    dates = [dt.date.fromisoformat(d) for d in summary["test_dates"]]
    try:
        rows = out_of_sample(registry.load_version(lake, name, champ["version"]), panel, dates)
    except registry.CheckpointError as exc:
        return champ, pd.DataFrame(columns=["model", "symbol", "trade_date", "pred_return", "realised"]), str(exc)
    except (KeyError, ValueError) as exc:
        return champ, pd.DataFrame(columns=["model", "symbol", "trade_date", "pred_return", "realised"]), \
            f"the champion cannot predict on this run's features: {exc}"
    return champ, rows, None


def _decide(lake: Lake, s, name: str, version: str | None, summary: dict, run_date: str, backtest_ref: dict,
            recorded: str | None, features_path: str | None) -> dict:
    """Judge, record the decision and the evidence, and move or clear the champion pointer."""
    day = dt.date.fromisoformat(run_date)
    metric = s.backtest.promote_metric
    predictions = lake.read_table(backtest_ref["predictions"]).to_pandas()
    champ, rows, why = _champion_rows(lake, name, day, summary, features_path)
    if champ and rows is None:  # a replay, or nothing to judge on: the pointer stays as it is
        decision = decide_promotion(name, version, {name: {}}, metric, None, s.promotion)
        decision.update(promote=False, reason=f"not judged: {why}", champion_version=champ["version"], verdict=None)
    elif champ and why:  # cannot predict on these features at all: retired, the candidate judged alone
        decision = judge_candidate(predictions, name, version, metric, s.promotion)
        decision["champion_version"] = champ["version"]
        decision["verdict"] = {"retire": True, "reason": why, "metric": metric, "sessions": 0}
    else:
        decision = judge_candidate(predictions, name, version, metric, s.promotion, rows,
                                   champ["version"] if champ else None)
        if champ and decision["verdict"]["retire"]:
            decision["champion_version"] = champ["version"]
    decision.update(run_date=run_date, backtest_run=backtest_ref["run"],
                    walk_forward=[backtest_ref.get("test_start"), backtest_ref.get("test_end")])
    decision = jsonable(decision)
    text = json.dumps(decision, indent=1)
    registered = version in registry.list_versions(lake, name) if version else False
    if recorded and registered:
        # every decision, promoted or not, stays with the version it judged
        lake.atomic_write_text(recorded, text)
        fc = summary["forecast"]
        registry.attach_evidence(lake, name, version, {
            "backtest_run": backtest_ref["run"], "run_date": run_date, "held_out": decision["walk_forward"],
            "sessions": summary.get("scored_sessions"), "metrics": fc.get(name, {}),
            "persistence": fc.get(REFERENCE, {}), "promote": decision["promote"], "reason": decision["reason"]})
    if (decision.get("verdict") or {}).get("retire"):
        registry.retire_champion(lake, name, decision["verdict"])
    if decision["promote"]:
        registry.set_champion(lake, name, version, decision)
    lake.atomic_write_text(f"{backtest_ref['dir']}/{DECISION_FILE}", text)
    return decision


def _announce(decision: dict, lake_root: str, name: str, version: str | None, metric: str, run_date: str,
              symbols: list[str]) -> None:
    verdict = decision.get("verdict") or {}
    if verdict.get("retire"):
        retired = decision.get("champion_version")
        events.emit(events.RETIRED, events.model_resource(name, retired), f"{name} {retired}", lake_root, symbols,
                    {"model": name, "version": retired, "run_date": run_date, "metric": metric,
                     "reason": verdict.get("reason"), "sessions": verdict.get("sessions")}, alert=True)
    if decision["promote"]:
        events.emit(events.PROMOTED, events.model_resource(name, version), f"{name} {version}", lake_root, symbols,
                    {"model": name, "version": version, "run_date": run_date, "metric": metric,
                     "candidate_value": decision.get("candidate_value"), "rule": decision.get("reason")},
                    alert=True)


def _check_decay(lake: Lake, champion: dict | None, name: str, backtest_ref: dict, alerts: dict, run_date: str,
                 symbols: list[str]) -> dict | None:
    """The decay verdict of ``champion`` (the one the run started with; None: nothing to
    check) on this backtest's walk-forward predictions of its model
    (``kline.monitoring.decay_verdict``); emits ``kline.model.decayed`` when decayed."""
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
