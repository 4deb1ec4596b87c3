"""Training presets and model scopes: the (features, train) settings a preset trains with."""

from __future__ import annotations

import dataclasses

from kline.config import FeatureConfig, TrainConfig

# The article's setup: one series at a time, min-max close in, min-max next close out.
SEED_FEATURES = FeatureConfig(features=("close",), target="seed", scaler="minmax", window=10)


def resolve_preset(features: FeatureConfig, train: TrainConfig) -> tuple[FeatureConfig, TrainConfig]:
    """The (features, train) configs a preset trains with. ``default`` uses the given
    configs; ``seed`` fixes every setting the article fixed (window 10, hidden 8, 2 layers,
    Adam 1e-2, 200 full-batch epochs, 70/30, min-max close) and keeps seed and device."""
    if train.preset == "default":
        return features, train
    return SEED_FEATURES, dataclasses.replace(
        train, scope="per_symbol", hidden=8, layers=2, dropout=0.0, head=0, epochs=200,
        batch_size=0, lr=1e-2, lr_schedule="none", weight_decay=0.0, valid_fraction=0.0,
        patience=0, clip_grad=0.0, test_fraction=0.3,
    )


def feature_config(values: dict) -> FeatureConfig:
    """The ``FeatureConfig`` whose ``dataclasses.asdict`` (as stored in JSON) is ``values``."""
    return FeatureConfig(**{**values, "features": tuple(values["features"])})
