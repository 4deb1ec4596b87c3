"""Training: the minibatch loop, and the LSTM forecaster.

``fit_lstm`` trains one ``LSTMRegressor`` on windows (``kline.features.Windows``): Adam,
minibatches (or full batch), a validation split taken from the *end* of the training span
by target date, early stopping on validation loss (best weights restored), gradient-norm
clipping and a cosine learning-rate schedule. Same windows + config + seed on CPU give
bit-identical weights.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from kline.config import FeatureConfig, TrainConfig
from kline.features import Scaler, Windows, make_windows, prepare, to_log_return
from kline.forecasters import date_mask, prediction_frame
from kline.model import LSTMConfig, LSTMRegressor
from kline.presets import feature_config, resolve_preset

GLOBAL_KEY = "global"  # the model key of a global (all-symbols) fit


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def split_valid(w: Windows, fraction: float) -> tuple[Windows, Windows]:
    """(train, valid): valid holds the windows whose target date is among the last
    ``fraction`` of distinct target dates, so every symbol is validated on the same span."""
    dates = np.unique(w.target_date)
    n_valid = int(round(len(dates) * fraction)) if fraction > 0 else 0
    if n_valid == 0 or n_valid >= len(dates):
        return w, w.select(np.zeros(len(w), dtype=bool))
    cut = dates[len(dates) - n_valid]
    return w.select(w.target_date < cut), w.select(w.target_date >= cut)


@dataclass
class FitResult:
    """Trained weights (on CPU) and what happened: per-epoch history of
    ``{epoch, train_loss, valid_loss, lr}`` (MSE on the scaled target)."""

    state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int = 0
    stopped_early: bool = False
    n_train: int = 0
    n_valid: int = 0
    wall_s: float = 0.0
    device: str = "cpu"


def lstm_config(cfg: TrainConfig, n_features: int) -> LSTMConfig:
    return LSTMConfig(n_features=n_features, hidden=cfg.hidden, layers=cfg.layers, dropout=cfg.dropout, head=cfg.head)


@torch.no_grad()
def _mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    total = 0.0
    for i in range(0, len(x), batch):
        total += float(((model(x[i : i + batch]) - y[i : i + batch]) ** 2).sum())
    return total / max(len(x), 1)


def fit_lstm(
    windows: Windows, cfg: TrainConfig, init_state: dict[str, torch.Tensor] | None = None
) -> FitResult:
    """Train on ``windows`` (x (batch, window, n_features), y (batch,)), starting from
    ``init_state`` weights when given (warm start), else from a ``cfg.seed`` init."""
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(windows, cfg, init_state)
    finally:
        torch.set_num_threads(threads)


def _fit(windows: Windows, cfg: TrainConfig, init_state: dict[str, torch.Tensor] | None) -> FitResult:
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    tr, va = split_valid(windows, cfg.valid_fraction)
    if len(tr) == 0:
        raise ValueError("no training windows")
    model = LSTMRegressor(lstm_config(cfg, windows.x.shape[2]))
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    x, y = torch.from_numpy(tr.x).to(device), torch.from_numpy(tr.y).to(device)
    xv, yv = torch.from_numpy(va.x).to(device), torch.from_numpy(va.y).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1)) if cfg.lr_schedule == "cosine" else None
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(tr)
    bs = n if cfg.batch_size <= 0 else min(cfg.batch_size, n)
    loss_fn = nn.MSELoss()
    res = FitResult(state={}, n_train=n, n_valid=len(va), device=str(device))
    best, best_state, bad = float("inf"), None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        perm = torch.randperm(n, generator=gen).to(device) if bs < n else None
        for i in range(0, n, bs):
            if perm is None:
                xb, yb = x, y
            else:
                idx = perm[i : i + bs]
                xb, yb = x[idx], y[idx]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            total += loss.detach() * len(xb)
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        model.eval()
        valid_loss = _mse(model, xv, yv) if len(va) else None
        res.history.append({"epoch": epoch, "train_loss": float(total) / n, "valid_loss": valid_loss, "lr": lr})
        res.epochs_run = epoch
        if valid_loss is None:
            continue
        if valid_loss < best:
            best, bad, res.best_epoch = valid_loss, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if cfg.patience > 0 and bad >= cfg.patience:
                res.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        res.best_epoch = res.epochs_run
    res.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    res.wall_s = time.perf_counter() - t0
    return res


def weights_hash(weights: dict[str, dict[str, torch.Tensor]]) -> str:
    """Content hash of every tensor of every model key (names and values)."""
    h = hashlib.sha256()
    for key in sorted(weights):
        for name in sorted(weights[key]):
            h.update(f"{key}/{name}".encode())
            h.update(weights[key][name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class LSTMForecaster:
    """The LSTM under the ``kline.forecasters`` contract: one global model over all symbols
    (per-symbol scaling) or one model per symbol, per ``train.scope``."""

    name = "lstm"

    def __init__(self, features: FeatureConfig, train: TrainConfig):
        self.features, self.train = resolve_preset(features, train)
        self.weights: dict[str, dict[str, torch.Tensor]] = {}
        self.scaler: Scaler | None = None
        self.target_scaler: Scaler | None = None
        self.train_end: dt.date | None = None
        self.history: dict[str, list[dict]] = {}
        self.fit_info: dict = {}
        self._version: str | None = None
        self._models: dict[str, LSTMRegressor] = {}

    @classmethod
    def from_settings(cls, features: FeatureConfig, train: TrainConfig) -> LSTMForecaster:
        return cls(features, train)

    @property
    def version(self) -> str:
        """The registry version once registered, else a hash of the weights."""
        if self._version is not None:
            return self._version
        if not self.weights:
            raise RuntimeError("lstm: not fitted")
        return weights_hash(self.weights)

    @version.setter
    def version(self, value: str) -> None:
        self._version = value

    def fit(
        self,
        panel: pd.DataFrame,
        train_end: dt.date,
        init_weights: dict[str, dict[str, torch.Tensor]] | None = None,
    ) -> dict:
        """Fit scalers and weights on windows with ``target_date <= train_end``; warm start
        from ``init_weights`` (model key -> state dict) where a key matches."""
        t0 = time.perf_counter()
        prep = prepare(panel, self.features, train_end)
        tr = prep.train(train_end)
        if len(tr) == 0:
            raise ValueError(f"lstm: no training window with target_date <= {train_end}")
        init_weights = init_weights or {}
        if self.train.scope == "global":
            parts = {GLOBAL_KEY: tr}
        else:
            parts = {str(s): tr.select(tr.symbol == s) for s in np.unique(tr.symbol.astype(str))}
        self.weights, self.history, self._models, self._version = {}, {}, {}, None
        results = {}
        for key, part in parts.items():
            r = fit_lstm(part, self.train, init_weights.get(key))
            self.weights[key], self.history[key], results[key] = r.state, r.history, r
        self.scaler, self.target_scaler, self.train_end = prep.scaler, prep.target_scaler, train_end
        valid = split_valid(tr, self.train.valid_fraction)[1].target_date
        self.fit_info = {
            "rows": len(tr),
            "n_train": sum(r.n_train for r in results.values()),
            "n_valid": sum(r.n_valid for r in results.values()),
            "epochs_run": {k: r.epochs_run for k, r in results.items()},
            "best_epoch": {k: r.best_epoch for k, r in results.items()},
            "stopped_early": {k: r.stopped_early for k, r in results.items()},
            "warm_start": sorted(k for k in parts if k in init_weights),
            "device": next(iter(results.values())).device,
            "train_span": [str(tr.target_date.min()), str(tr.target_date.max())],
            "valid_span": [str(valid.min()), str(valid.max())] if len(valid) else None,
            "wall_s": time.perf_counter() - t0,
        }
        return {**self.fit_info, "history": self.history}

    def _model(self, key: str) -> LSTMRegressor:
        if key not in self._models:
            first = next(iter(self.weights.values()))
            n_features = first["lstm.weight_ih_l0"].shape[1]
            m = LSTMRegressor(lstm_config(self.train, n_features))
            m.load_state_dict(self.weights[key])
            self._models[key] = m.eval()
        return self._models[key]

    def predict(self, panel: pd.DataFrame, dates: Sequence[dt.date] | None = None) -> pd.DataFrame:
        if not self.weights:
            raise RuntimeError("lstm: not fitted")
        w = make_windows(panel, list(self.features.features), self.features.window, self.scaler,
                         self.target_scaler, self.features.target)
        w = w.select(date_mask(w.trade_date, dates))
        scaled = np.full(len(w), np.nan)
        keys = np.full(len(w), GLOBAL_KEY, dtype=object) if self.train.scope == "global" else w.symbol.astype(str)
        with torch.no_grad():
            for key in np.unique(keys):
                if key not in self.weights:
                    continue  # a symbol this per-symbol fit never saw: no prediction
                m = keys == key
                x = torch.from_numpy(np.ascontiguousarray(w.x[m]))
                out = [self._model(key)(x[i : i + 8192]) for i in range(0, len(x), 8192)]
                scaled[m] = torch.cat(out).double().numpy() if out else []
        raw = self.target_scaler.inverse(w.symbol, scaled.reshape(-1, 1))[:, 0]
        pred = to_log_return(raw, w.close, self.features.target)
        return prediction_frame(w.symbol, w.trade_date, w.target_date, pred, self.name, self.version, self.train_end)

    def get_state(self) -> dict:
        """JSON-able description (configs, scalers, boundary); weights are separate."""
        if not self.weights:
            raise RuntimeError("lstm: not fitted")
        return {
            "features": dataclasses.asdict(self.features),
            "train": dataclasses.asdict(self.train),
            "model": lstm_config(self.train, next(iter(self.weights.values()))["lstm.weight_ih_l0"].shape[1]).to_dict(),
            "scaler": self.scaler.to_dict(),
            "target_scaler": self.target_scaler.to_dict(),
            "train_end": self.train_end.isoformat(),
            "keys": sorted(self.weights),
        }

    @classmethod
    def from_state(cls, state: dict, features: FeatureConfig | None,
                   weights: dict[str, dict[str, torch.Tensor]] | None = None) -> LSTMForecaster:
        """The fit ``get_state()`` and ``weights`` describe (its own features are in ``state``)."""
        if weights is None:
            raise ValueError("lstm: restoring a fit needs its weights")
        f = cls.__new__(cls)
        f.features = feature_config(state["features"])
        f.train = TrainConfig(**state["train"])
        f.weights, f.history, f.fit_info, f._models = weights, {}, {}, {}
        f.scaler = Scaler.from_dict(state["scaler"])
        f.target_scaler = Scaler.from_dict(state["target_scaler"])
        f.train_end = dt.date.fromisoformat(state["train_end"])
        f._version = None
        return f
