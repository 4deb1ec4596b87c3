import dataclasses

import pytest

from kline.config import ConfigError, FeatureConfig, TrainConfig
from kline.presets import SEED_FEATURES, feature_config, resolve_preset


def test_seed_preset_fixes_the_article_settings():
    feats, train = resolve_preset(FeatureConfig(), TrainConfig(preset="seed", seed=3))
    assert (feats.window, feats.features, feats.target, feats.scaler) == (10, ("close",), "seed", "minmax")
    assert (train.hidden, train.layers, train.lr, train.epochs, train.batch_size) == (8, 2, 1e-2, 200, 0)
    assert train.test_fraction == 0.3 and train.seed == 3 and train.scope == "per_symbol"
    with pytest.raises(ConfigError, match="preset: unknown value 'nope'"):
        TrainConfig(preset="nope")


def test_default_preset_keeps_the_given_configs_and_the_scope_is_a_choice():
    feats, train = FeatureConfig(window=7), TrainConfig(hidden=5)
    assert resolve_preset(feats, train) == (feats, train)
    with pytest.raises(ConfigError, match="scope: unknown value 'sector'"):
        TrainConfig(scope="sector")


def test_feature_config_reads_back_its_json_form():
    for cfg in (FeatureConfig(), SEED_FEATURES, FeatureConfig(features=("log_return", "hl_range"), window=5)):
        as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
        assert feature_config(as_json) == cfg
