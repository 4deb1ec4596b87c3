import datetime as dt
import json

from kline import registry
from kline.config import Settings
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from tasks._common import stage_settings
from tasks.features import build_features_task
from tasks.train import train_task

SYMBOLS = ["000001.SH", "300750.SZ"]
FAST = {"hidden": 4, "epochs": 3, "batch_size": 64, "test_sessions": 40}


def features_ref(lake_root, run_date):
    lake = Lake(lake_root)
    if not lake.curated_years():
        lake.write_curated_bars(SyntheticProvider(seed=6).fetch(SYMBOLS, dt.date(2022, 7, 1), dt.date(2023, 12, 29)))
    return build_features_task.fn(lake_root, stage_settings(Settings(), "features"), run_date, SYMBOLS)


def test_train_task_trains_registers_and_then_is_a_no_op(lake_root):
    sub = stage_settings(Settings().replace(train=FAST), "train")
    ref = features_ref(lake_root, "2023-12-29")
    out = train_task.fn(lake_root, sub, "2023-12-29", SYMBOLS, ref["path"], ref["data_fingerprint"])
    assert out["trained"] and out["name"] == "lstm"
    assert set(out) == {"trained", "reason", "name", "version", "card", "train_end", "models"}
    json.dumps(out)  # a small, JSON-able reference
    card = json.loads(open(out["card"]).read())
    assert card["data_fingerprint"] == ref["data_fingerprint"] and card["symbols"] == SYMBOLS
    assert registry.get_champion(Lake(lake_root), "lstm") is None  # only evidence makes a champion
    assert card["train_end"] == "2023-12-29"  # the production model is trained through the run date

    again = train_task.fn(lake_root, sub, "2023-12-29", SYMBOLS, ref["path"], ref["data_fingerprint"])
    assert not again["trained"] and again["version"] == out["version"]
    versions = registry.list_versions(Lake(lake_root), "lstm")
    assert versions == [out["version"]]


def test_train_task_retrains_on_new_data(lake_root):
    sub = stage_settings(Settings().replace(train=FAST), "train")
    a = features_ref(lake_root, "2023-12-28")
    b = features_ref(lake_root, "2023-12-29")
    first = train_task.fn(lake_root, sub, "2023-12-28", SYMBOLS, a["path"], a["data_fingerprint"])
    registry.set_champion(Lake(lake_root), "lstm", first["version"], {"rule": "set by hand"})
    second = train_task.fn(lake_root, sub, "2023-12-29", SYMBOLS, b["path"], b["data_fingerprint"])
    assert second["trained"] and second["version"] != first["version"]
    assert json.loads(open(second["card"]).read())["warm_start"] == first["version"]
