"""The train stage: apply the retraining policy, fit the production LSTM and its baselines
on everything known as of the run date, and register them.

Two roles, one configuration: the walk-forward (``kline.backtest``) measures the skill of
this configuration on held-out sessions; the model registered here is the same
configuration trained through the run date (no held-out tail), and the promote stage
writes that walk-forward evidence onto its card (``registry.attach_evidence``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kline import registry
from kline.config import FeatureConfig, Settings, TrainConfig
from kline.features import feature_fingerprint, rolling_horizon, train_mask
from kline.forecasters import BASELINES, Forecaster, held_out_count, held_out_dates
from kline.lake import Lake
from kline.metrics import forecast_metrics
from kline.presets import resolve_preset
from kline.zoo import make_forecaster

MIN_TRAIN_WINDOWS = 10  # fewer windows than this per symbol is no fit worth registering or judging


def sessions_needed(features: FeatureConfig, train: TrainConfig) -> int:
    """Sessions of history a symbol needs before the model stages can use it: the longest
    feature lookback, one input window and ``MIN_TRAIN_WINDOWS`` targets, twice over (the
    walk-forward holds out at most half of the sessions)."""
    features, train = resolve_preset(features, train)
    lookback = max((int(n) for n in (rolling_horizon(f) for f in features.features) if n), default=1)
    return 2 * (lookback + features.window + MIN_TRAIN_WINDOWS)


def holdout_train_end(panel: pd.DataFrame, train: TrainConfig) -> tuple[dt.date, int]:
    """(train_end, test sessions): the first of the held-out dates
    (``kline.forecasters.held_out_dates``), or the last known target date when none is held
    out. Rows with ``target_date <= train_end`` train; the rest are the held-out test."""
    n_test = held_out_count(panel, train)
    if n_test > 0:
        return held_out_dates(panel, n_test)[0], n_test
    known = panel.loc[np.isfinite(panel["target"].to_numpy()), "target_date"]
    if known.empty:
        raise ValueError("no session with a known target")
    return known.max(), 0


def production_train_end(panel: pd.DataFrame) -> dt.date:
    """The production fit's leakage boundary: the last session whose outcome is known (the
    run date in a point-in-time panel, whose own next-session target is still unknown)."""
    known = panel.loc[np.isfinite(panel["target"].to_numpy("float64")), "target_date"]
    if known.empty:
        raise ValueError("no session with a known target")
    return pd.Timestamp(known.max()).date()


def holdout_metrics(forecaster: Forecaster, panel: pd.DataFrame, train_end: dt.date) -> dict:
    """``kline.metrics.forecast_metrics`` of the forecaster's predictions on the held-out
    rows (``target_date > train_end``, realised target known)."""
    test = panel[~train_mask(panel, train_end) & np.isfinite(panel["target"].to_numpy())]
    if test.empty:
        return {"n": 0}
    p = forecaster.predict(panel, sorted(set(test["trade_date"])))
    m = p.merge(test[["symbol", "trade_date", "target"]], on=["symbol", "trade_date"], how="inner")
    return forecast_metrics(m["target"].to_numpy(), m["pred_return"].to_numpy(), list(m["trade_date"]))


def train_models(
    lake: Lake,
    features: FeatureConfig,
    train: TrainConfig,
    run_date: dt.date,
    symbols: Sequence[str],
    panel: pd.DataFrame,
    data_fingerprint: str,
) -> dict:
    """The train stage: decide (``registry.decide_training``), then fit the production
    LSTM (warm started from the champion when allowed) and the baselines on every row whose
    outcome is known as of ``run_date``, and register them. Nothing new -> nothing trained.
    No version becomes champion here: only the promote stage's evidence makes one.

    Returns ``{trained, reason, name, version, card, train_end, models: {name: version}}``.
    """
    symbols = sorted(symbols)
    decision = registry.decide_training(lake, features, train, run_date, data_fingerprint, symbols)
    if not decision.train:
        card = registry.read_card(lake, "lstm", decision.reuse)
        return _outcome(decision, card, decision.reuse, {"lstm": decision.reuse, **card.get("baselines", {})})
    feats, tcfg = resolve_preset(features, train)
    settings = Settings(features=feats, train=tcfg)
    panel = panel[panel["symbol"].isin(symbols)].reset_index(drop=True)
    # point in time: nothing dated after the run date, no outcome known after it
    td = pd.to_datetime(panel["trade_date"]).dt.date
    panel = panel[td <= run_date].reset_index(drop=True)
    panel.loc[pd.to_datetime(panel["target_date"]).dt.date > run_date, "target"] = np.nan
    train_end = production_train_end(panel)
    init = registry.load_version(lake, "lstm", decision.warm_start).weights if decision.warm_start else None
    lstm = make_forecaster("lstm", settings)
    info = lstm.fit(panel, train_end, init)
    common = _common_card(feats, run_date, train_end, symbols, data_fingerprint)
    baselines = _register_baselines(lake, panel, settings, train_end, data_fingerprint,
                                    {**common, "train_span": info["train_span"]})
    cfg_fp = registry.model_config_fingerprint(feats, tcfg)
    version = registry.make_version(train_end, cfg_fp, data_fingerprint, decision.warm_start or "")
    card = registry.save_version(lake, lstm, version, {
        **common, **_lstm_card(info, feats, tcfg), "config_fingerprint": cfg_fp, "warm_start": decision.warm_start,
        "decision": decision.reason, "baselines": baselines,
        "metrics": {"valid_loss_scaled": {
            k: min((h["valid_loss"] for h in hist if h["valid_loss"] is not None), default=None)
            for k, hist in info["history"].items()}},  # per model key, the best validation loss
    })
    return _outcome(decision, card, version, {"lstm": version, **baselines})


def _outcome(decision: registry.TrainDecision, card: dict, version: str, models: dict[str, str]) -> dict:
    return {"trained": decision.train, "reason": decision.reason, "name": "lstm", "version": version,
            "card": f"{card['path']}/{registry.CARD}", "train_end": card["train_end"], "models": models}


def _common_card(feats: FeatureConfig, run_date: dt.date, train_end: dt.date, symbols: list[str],
                 data_fingerprint: str) -> dict:
    """The card fields every model of one training shares: boundary and data. No held-out
    tail: the evidence is the walk-forward's, attached by the promote stage."""
    return {
        "run_date": run_date.isoformat(),
        "train_end": train_end.isoformat(),
        "role": "production: trained on every outcome known as of run_date",
        "symbols": symbols,
        "data_fingerprint": data_fingerprint,
        "feature_fingerprint": feature_fingerprint(feats),
        "features": dataclasses.asdict(feats),
        "code_version": registry.code_version(),
    }


def _register_baselines(lake: Lake, panel: pd.DataFrame, settings: Settings, train_end: dt.date,
                        data_fingerprint: str, card: dict) -> dict[str, str]:
    """Fit and register every baseline on the LSTM's boundary; name -> version."""
    versions = {}
    for name in BASELINES:
        b = make_forecaster(name, settings)
        b.fit(panel, train_end)
        v = registry.make_version(train_end, name, b.version, data_fingerprint)
        registry.save_version(lake, b, v, card)
        versions[name] = v
    return versions


def _lstm_card(info: dict, feats: FeatureConfig, tcfg: TrainConfig) -> dict:
    """The LSTM card's own fields: training config and shape, spans, and how the fit went."""
    return {
        "train": dataclasses.asdict(tcfg),
        "model_shape": registry.model_shape(tcfg),
        "feature_list": list(feats.features),
        **{k: info[k] for k in ("train_span", "valid_span", "history", "best_epoch", "wall_s", "device")},
        "epochs_run": max(info["epochs_run"].values()),
    }
