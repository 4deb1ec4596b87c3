"""The model registry: versions under ``models/<name>/<version>/``, a champion pointer per
name, and the retraining policy.

A version directory holds ``card.json`` (the self-describing model card) and either
``weights.pt`` (LSTM: model key -> state dict) or ``state.json`` (baselines). Versions are
``<train_end YYYYMMDD>-<hash>`` where the hash covers config, data fingerprint, boundary
and warm-start parent, so retraining the same inputs rewrites the same version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import platform
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kline import zoo
from kline.calendar import sessions_in_range
from kline.config import FeatureConfig, TrainConfig
from kline.features import feature_fingerprint
from kline.forecasters import Forecaster, date_mask, prediction_frame
from kline.jsonable import jsonable
from kline.lake import Lake
from kline.presets import feature_config, resolve_preset

CARD = "card.json"
WEIGHTS = "weights.pt"
STATE = "state.json"
HISTORY = "champion-history.json"  # beside champion.json; ends .json so list_versions skips it
log = logging.getLogger(__name__)
# TrainConfig fields that decide *when* to train, not *what* is trained.
_POLICY_FIELDS = ("retrain", "retrain_every", "device", "threads")


def code_version() -> str:
    """The git commit of this checkout (``-dirty`` when modified), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "kline"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_config_fingerprint(features: FeatureConfig, train: TrainConfig) -> str:
    """Hash of everything that shapes a trained model (not the retraining policy)."""
    t = {k: v for k, v in dataclasses.asdict(train).items() if k not in _POLICY_FIELDS}
    blob = json.dumps({"features": feature_fingerprint(features), "train": t}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_version(train_end: dt.date, *parts: str) -> str:
    return f"{train_end:%Y%m%d}-{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:8]}"


def _json(obj) -> str:
    return json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False)


def save_version(lake: Lake, forecaster: Forecaster, version: str, card: dict) -> dict:
    """Write a fitted forecaster (``lstm`` or a baseline) and its card; returns the card
    as written (with ``name``, ``version``, ``path``, ``torch_version``, ``created_at``)."""
    name = forecaster.name
    d = lake.paths.model_dir(name, version)
    card = {
        **card,
        "name": name,
        "version": version,
        "path": d,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "state": forecaster.get_state(),
    }
    weights = getattr(forecaster, "weights", None)  # the LSTM's; a baseline's fit is all in its state
    if weights is not None:
        buf = io.BytesIO()
        torch.save(weights, buf)
        lake.atomic_write_bytes(f"{d}/{WEIGHTS}", buf.getvalue())
        card["weights_file"] = WEIGHTS
        forecaster.version = version  # baselines keep their content hash (the contract)
    else:
        lake.atomic_write_text(f"{d}/{STATE}", _json(forecaster.get_state()))
    # the card goes last: a version with a card is complete
    lake.atomic_write_text(f"{d}/{CARD}", _json(card))
    return card


def read_card(lake: Lake, name: str, version: str) -> dict:
    return json.loads(lake.read_text(f"{lake.paths.model_dir(name, version)}/{CARD}"))


class CheckpointError(ValueError):
    """A registered version whose files do not load (truncated, corrupt, missing): the
    message is one line naming the path."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def load_version(lake: Lake, name: str, version: str) -> Forecaster:
    """The forecaster stored as ``name/version``, ready to predict exactly as when saved.
    Raises ``CheckpointError`` (one line naming the file) when its card, weights or state
    cannot be read back."""
    d = lake.paths.model_dir(name, version)
    path = f"{d}/{CARD}"
    try:
        card = read_card(lake, name, version)
        features = feature_config(card["features"]) if "features" in card else None
        if not card.get("weights_file"):
            path = f"{d}/{STATE}"
            return zoo.from_state(name, json.loads(lake.read_text(path)), features)
        path = f"{d}/{card['weights_file']}"
        weights = torch.load(io.BytesIO(lake.read_bytes(path)), map_location="cpu", weights_only=True)
        f = zoo.from_state(name, card["state"], features, weights)
    except Exception as exc:  # noqa: BLE001 - whatever a torn file raises, the caller needs the path
        raise CheckpointError(f"model checkpoint {path} does not load ({_one_line(exc)})") from exc
    f.version = version  # as save_version named it
    return f


def checkpoint_error(lake: Lake, name: str, version: str) -> str | None:
    """None when ``name/version`` loads, else the one-line reason it does not."""
    try:
        load_version(lake, name, version)
    except CheckpointError as exc:
        return str(exc)
    return None


def list_versions(lake: Lake, name: str) -> list[str]:
    """Complete versions (those with a card) of ``name``, oldest first by creation time."""
    base = f"{lake.paths.models_dir()}/{name}"
    out = []
    for v in lake.listdir(base):
        if v.endswith(".json") or ".tmp-" in v:
            continue
        if lake.exists(f"{lake.paths.model_dir(name, v)}/{CARD}"):
            out.append((read_card(lake, name, v).get("created_at", ""), v))
    return [v for _, v in sorted(out)]


_held = threading.local()


@contextmanager
def champion_lock(lake: Lake, name: str) -> Iterator[None]:
    """Hold ``name``'s champion lock (a lake lock: across processes locally, across
    machines on S3) for a read-judge-write of the pointer. Re-entrant within a thread, so
    ``set_champion``/``retire_champion`` inside a held lock do not wait on themselves."""
    key = (lake.root, name)
    depth = getattr(_held, "depth", None)
    if depth is None:
        depth = _held.depth = {}
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    with lake.lock(f"champion-{name}"):
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0


def _history_path(lake: Lake, name: str) -> str:
    return f"{lake.paths.champion(name).rsplit('/', 1)[0]}/{HISTORY}"


def champion_history(lake: Lake, name: str) -> list[dict]:
    """Every move of ``name``'s champion pointer, oldest first: ``{seq, action (promote |
    retire), version, previous, set_at, why}``; each entry's ``previous`` is the version the
    entry before it left (None: no champion)."""
    path = _history_path(lake, name)
    return json.loads(lake.read_text(path)) if lake.exists(path) else []


def _move(lake: Lake, name: str, pointer: dict, action: str, why: dict) -> dict:
    """Write ``pointer`` and append the move to the history; the caller holds the lock.
    The history goes first: a crash between the two leaves a history one move ahead, never a
    pointer the history does not explain."""
    champ = get_champion(lake, name)
    history = champion_history(lake, name)
    history.append({"seq": len(history) + 1, "action": action, "version": pointer["version"],
                    "previous": champ["version"] if champ else None, "set_at": pointer["set_at"], "why": why})
    lake.atomic_write_text(_history_path(lake, name), _json(history))
    lake.atomic_write_text(lake.paths.champion(name), _json(pointer))
    return pointer


def set_champion(lake: Lake, name: str, version: str, decision: dict) -> dict:
    """Point ``name``'s champion at an existing ``version``, recording why (``decision``),
    under the champion lock. Raises ``ValueError`` for an unknown version and
    ``CheckpointError`` for one whose checkpoint does not load (it never becomes champion)."""
    with champion_lock(lake, name):
        if version not in list_versions(lake, name):
            raise ValueError(f"no registered version {name}/{version}")
        why = checkpoint_error(lake, name, version)
        if why:
            raise CheckpointError(f"not promoting {name}/{version}: {why}")
        pointer = {"name": name, "version": version, "decision": decision,
                   "set_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")}
        return _move(lake, name, pointer, "promote", jsonable(decision))


def get_champion(lake: Lake, name: str) -> dict | None:
    """The champion pointer ``{name, version, decision, set_at}``, or None (never set, or
    retired)."""
    path = lake.paths.champion(name)
    if not lake.exists(path):
        return None
    pointer = json.loads(lake.read_text(path))
    return pointer if pointer.get("version") else None


def retire_champion(lake: Lake, name: str, verdict: dict) -> dict:
    """Retire ``name``'s champion under the champion lock: the pointer keeps no version, only
    the retired one and why (``verdict``); until a candidate is promoted the forecast is
    persistence."""
    with champion_lock(lake, name):
        champ = get_champion(lake, name)
        pointer = {"name": name, "version": None, "retired": champ["version"] if champ else None,
                   "verdict": verdict, "set_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")}
        return _move(lake, name, pointer, "retire", jsonable(verdict))


def attach_evidence(lake: Lake, name: str, version: str, evidence: dict) -> dict:
    """Rewrite ``name/version``'s card with the walk-forward ``evidence`` that judged it
    (held-out span, metrics of it and persistence, the decision); returns the card."""
    card = read_card(lake, name, version)
    card["evidence"] = jsonable(evidence)
    lake.atomic_write_text(f"{lake.paths.model_dir(name, version)}/{CARD}", _json(card))
    return card


def list_models(lake: Lake) -> list[dict]:
    """One summary row per registered version (all names): spans, the walk-forward
    evidence's headline metrics, epochs, wall time and whether it is the champion; for
    ``kline models``."""
    rows = []
    for name in lake.listdir(lake.paths.models_dir()):
        champ = get_champion(lake, name)
        for v in list_versions(lake, name):
            c = read_card(lake, name, v)
            ev = c.get("evidence") or {}
            m = ev.get("metrics") or {}
            rows.append({
                "name": name,
                "version": v,
                "champion": bool(champ and champ["version"] == v),
                "created_at": c.get("created_at"),
                "train_start": (c.get("train_span") or [None, None])[0],
                "train_end": c.get("train_end"),
                "test_start": (ev.get("held_out") or [None, None])[0],
                "test_end": (ev.get("held_out") or [None, None])[1],
                "symbols": len(c.get("symbols", [])),
                "rmse": m.get("rmse"),
                "mase": m.get("mase"),
                "directional_accuracy": m.get("directional_accuracy"),
                "epochs": c.get("epochs_run"),
                "wall_s": c.get("wall_s"),
            })
    return rows


@dataclass(frozen=True)
class TrainDecision:
    """Whether to train now; ``reuse`` names the version to keep when not, ``warm_start``
    the version whose weights initialise a new fit."""

    train: bool
    reason: str
    reuse: str | None = None
    warm_start: str | None = None


def decide_training(
    lake: Lake,
    features: FeatureConfig,
    train: TrainConfig,
    run_date: dt.date,
    data_fingerprint: str,
    symbols: list[str],
) -> TrainDecision:
    """Apply ``train.retrain`` to the latest LSTM version trained with the same model
    config and symbols: ``always`` trains; ``on_change`` trains when the data fingerprint
    differs; ``every_n`` when ``retrain_every`` sessions have passed since it was trained.
    Warm start from the champion when its feature config and model shape match.

    Point in time: only versions trained as of ``run_date`` or earlier count, so a replay of
    an old date never reuses, or warm-starts from, a model that saw later data."""
    feats, tcfg = resolve_preset(features, train)
    cfg_fp = model_config_fingerprint(feats, tcfg)
    def as_of(card: dict) -> bool:
        return dt.date.fromisoformat(card["run_date"]) <= run_date

    cards = {v: read_card(lake, "lstm", v) for v in list_versions(lake, "lstm")}
    same = [v for v, c in cards.items()
            if c["config_fingerprint"] == cfg_fp and sorted(c["symbols"]) == sorted(symbols) and as_of(c)]
    same.sort(key=lambda v: cards[v]["run_date"])  # stable: creation order within a date
    warm = None
    champ = get_champion(lake, "lstm")
    if champ and tcfg.warm_start and champ["version"] in cards:
        cc = cards[champ["version"]]
        if (cc["feature_fingerprint"] == feature_fingerprint(feats) and cc["model_shape"] == model_shape(tcfg)
                and as_of(cc)):
            warm = champ["version"]
            why = checkpoint_error(lake, "lstm", warm)
            if why:
                log.warning("not warm-starting from the champion: %s", why)
                warm = None
    if same and (why := checkpoint_error(lake, "lstm", same[-1])):
        # a torn checkpoint is never reused: training the same inputs rewrites the same version whole
        return TrainDecision(True, f"retraining: {why}", warm_start=warm)
    if not same:
        return TrainDecision(True, "no model with this config yet", warm_start=warm)
    last = read_card(lake, "lstm", same[-1])
    if tcfg.retrain == "always":
        return TrainDecision(True, "policy: always", warm_start=warm)
    if tcfg.retrain == "on_change":
        if last["data_fingerprint"] == data_fingerprint:
            return TrainDecision(False, "data unchanged since the last training", reuse=same[-1])
        return TrainDecision(True, "data fingerprint changed", warm_start=warm)
    trained_on = dt.date.fromisoformat(last["run_date"])
    passed = len(sessions_in_range(trained_on, run_date)) - 1 if run_date > trained_on else 0
    if passed < tcfg.retrain_every:
        return TrainDecision(False, f"{passed} of {tcfg.retrain_every} sessions since the last training",
                             reuse=same[-1])
    return TrainDecision(True, f"{passed} sessions since the last training", warm_start=warm)


def model_shape(train: TrainConfig) -> dict:
    """What a warm start needs to match: the weights' shapes."""
    return {"scope": train.scope, "hidden": train.hidden, "layers": train.layers, "head": train.head}


FORECAST_COLUMNS = ["symbol", "trade_date", "target_date", "pred_return", "close", "pred_close", "model",
                    "version", "train_end", "basis"]
PERSISTENCE_BASIS = "persistence: no champion has shown skill (tomorrow = today)"


def forecast_next_session(lake: Lake, panel: pd.DataFrame, run_date: dt.date, name: str = "lstm"
                          ) -> tuple[pd.DataFrame, dict]:
    """The next-session forecast the daily run publishes: the champion's prediction for
    decision date ``run_date`` per symbol, with ``pred_close = close * exp(pred_return)``.

    With no champion, or only one trained as of a later date (a replay of an old session),
    the forecast is persistence: ``pred_return`` 0, ``pred_close`` the last close, labelled
    ``basis`` = ``PERSISTENCE_BASIS``; a champion whose checkpoint does not load falls back
    the same way, its ``basis`` naming the file and why (and a warning is logged). Returns the frame (``FORECAST_COLUMNS``) and
    ``{model, version, basis}``."""
    champ = get_champion(lake, name)
    broken = champion_model = None
    if champ:
        try:
            champion_model = load_version(lake, name, champ["version"])  # its card loads too, or this raises
        except CheckpointError as exc:
            broken = f"persistence: the champion does not load, {exc}"
            log.warning("forecasting persistence: the champion %s/%s does not load: %s", name, champ["version"], exc)
            champ = None
    if champ and dt.date.fromisoformat(read_card(lake, name, champ["version"])["run_date"]) > run_date:
        champ = None  # trained after the run date (a replay): point in time, persistence
    close = panel.loc[date_mask(panel["trade_date"].to_numpy(), [run_date]), ["symbol", "trade_date", "close"]]
    close = close.assign(trade_date=pd.to_datetime(close["trade_date"]).dt.date)
    if champ:
        model, version, basis = name, champ["version"], "champion"
        pred = champion_model.predict(panel, [run_date])
    else:
        model, version, basis = "persistence", None, broken or PERSISTENCE_BASIS
        rows = panel.loc[date_mask(panel["trade_date"].to_numpy(), [run_date])]
        pred = prediction_frame(rows["symbol"].to_numpy(), rows["trade_date"].to_numpy(),
                                rows["target_date"].to_numpy(), np.zeros(len(rows)), model, "", None)
        pred["version"] = None
    out = pred.merge(close, on=["symbol", "trade_date"], how="left")
    out["pred_close"] = out["close"] * np.exp(out["pred_return"])
    out["basis"] = basis
    return out[FORECAST_COLUMNS].sort_values("symbol").reset_index(drop=True), \
        {"model": model, "version": version, "basis": basis}
