"""The model zoo: forecaster name -> class (each with ``from_settings(features, train)`` and
``from_state(state, features, weights)``), for every stage that makes or restores one."""

from __future__ import annotations

import torch

from kline.baselines import PersistenceForecaster, RidgeForecaster, RollingMeanForecaster
from kline.config import FeatureConfig, Settings
from kline.forecasters import FORECASTERS, Forecaster
from kline.training import LSTMForecaster

MODELS = {c.name: c for c in (LSTMForecaster, PersistenceForecaster, RollingMeanForecaster, RidgeForecaster)}


def forecaster_class(name: str) -> type:
    """The class named ``name``; ValueError naming the choices otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown forecaster {name!r}: choose from {', '.join(FORECASTERS)}")
    return MODELS[name]


def make_forecaster(name: str, settings: Settings) -> Forecaster:
    """An unfitted forecaster by name, configured from ``settings.features`` and ``settings.train``."""
    return forecaster_class(name).from_settings(settings.features, settings.train)


def from_state(name: str, state: dict, features: FeatureConfig | None,
               weights: dict[str, dict[str, torch.Tensor]] | None = None) -> Forecaster:
    """The fitted forecaster ``state`` (its ``get_state()``) describes, on ``features``."""
    return forecaster_class(name).from_state(state, features, weights)
