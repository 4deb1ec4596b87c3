"""The LSTM regressor and its config; nothing else lives here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LSTMConfig:
    n_features: int  # inputs per session
    hidden: int = 32  # LSTM hidden units
    layers: int = 1  # stacked LSTM layers
    dropout: float = 0.0  # between LSTM layers (only when layers > 1) and before the head
    head: int = 0  # hidden units of an MLP head on the last state; 0 = a linear head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class LSTMRegressor(nn.Module):
    """Reads ``x`` (batch, window, n_features), batch first, and returns one value per
    sample (batch,) from the last time step's hidden state. No state crosses samples."""

    def __init__(self, cfg: LSTMConfig):
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(
            cfg.n_features,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.head > 0:
            self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.head), nn.ReLU(), nn.Linear(cfg.head, 1))
        else:
            self.head = nn.Linear(cfg.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (batch, window, hidden)
        return self.head(self.drop(out[:, -1, :])).squeeze(-1)  # (batch,)
