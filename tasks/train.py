"""Train stage: retrain the LSTM and its baselines when the policy says so, register them."""

from __future__ import annotations

import datetime as dt

from prefect import task

from kline.features import load_panel
from kline.lake import Lake
from kline.train_stage import train_models
from tasks import events
from tasks._common import STAGE_CACHE, settings_from


@task(name="train", task_run_name="train-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def train_task(
    lake_root: str,
    settings: dict,
    run_date: str,
    symbols: list[str],
    features_path: str,
    data_fingerprint: str,
) -> dict:
    """Apply the retraining policy to the panel at ``features_path`` (from the features
    task, whose ``data_fingerprint`` it passes on) and register what it trains.

    ``settings`` is the train stage sub-dict (``features`` + ``train``). Returns
    ``{trained, reason, name, version, card, train_end, models}``; no-op when nothing is new.
    """
    lake = Lake(lake_root)
    s = settings_from(settings)
    panel = load_panel(lake, features_path)
    out = train_models(lake, s.features, s.train, dt.date.fromisoformat(run_date), symbols, panel, data_fingerprint)
    if out.get("trained"):
        events.emit(events.TRAINED, events.model_resource(out["name"], out.get("version")),
                    f"{out['name']} {out.get('version')}", lake_root, symbols,
                    {"model": out["name"], "version": out.get("version"), "reason": out.get("reason"),
                     "run_date": run_date, "train_end": str(out.get("train_end"))})
    return out
