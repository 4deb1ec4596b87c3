"""The ``[run] task_runner`` setting: a backfill fanned out per chunk and symbol batch, and a
daily run with its features fanned out per symbol batch, on a local two-worker Dask cluster
(worker processes) write the same lake (curated rows, features, models, backtest, report) as on
threads."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from helpers_pipeline import fast_config
from helpers_validation import read_quarantine

from flows.backfill import backfill_flow
from flows.daily import daily_flow
from kline import registry
from kline.config import Settings
from kline.features import build_features, load_panel
from kline.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")

SYMBOLS = '["000001.SH", "600519.SH", "000001.SZ", "300750.SZ", "688981.SH"]'


def _config(tmp_path, name: str, runner: str) -> str:
    p = tmp_path / f"{name}.toml"
    # 5 symbols in batches of 2 (3 task runs per chunk), 40 sessions per chunk: 2 chunks
    p.write_text(f'symbols = {SYMBOLS}\nmax_concurrency = 2\n[ingest]\nbackfill_chunk_rows = 80\n'
                 f'[run]\ntask_runner = "{runner}"\ndask_workers = 2\nbatch_symbols = 2\n'
                 f'[calendar]\nholidays = ["2024-03-11"]\n')  # a run-level layer the workers must see
    return str(p)


def _lake_state(root: str) -> dict:
    lake = Lake(root)
    cur = lake.read_curated_bars().drop(columns=["ingested_at"])
    q = read_quarantine(lake)
    return {"curated": cur.sort_values(["symbol", "trade_date"]).reset_index(drop=True),
            "fingerprint": lake.curated_fingerprint(),
            "quarantined": sorted(zip(q["symbol"], q["trade_date"], strict=True))}


def test_dask_and_threads_runners_give_the_same_lake(tmp_path):
    out = {}
    for runner in ("threads", "dask"):
        root = str(tmp_path / runner)
        res = backfill_flow(start="2024-01-01", end="2024-04-30", lake=root,
                            config_file=_config(tmp_path, runner, runner), models=False)
        out[runner] = (res, _lake_state(root))
    (r_t, s_t), (r_d, s_d) = out["threads"], out["dask"]
    assert r_t["chunks"] == r_d["chunks"] == 2 and r_t["ingested_rows"] == r_d["ingested_rows"] > 300
    assert s_t["fingerprint"] == s_d["fingerprint"]
    assert s_t["curated"].equals(s_d["curated"]) and len(s_t["curated"]) > 300
    # the run's holiday (a calendar layer, a context variable) held in the Dask worker
    # processes too: the bars sent for it were quarantined in both lakes
    assert s_t["quarantined"] == s_d["quarantined"]
    assert {d for _, d in s_d["quarantined"]} == {dt.date(2024, 3, 11)}


def _daily_config(tmp_path, runner: str) -> str:
    p = tmp_path / f"daily-{runner}.toml"
    # 5 symbols in batches of 2: 3 features task runs, fanned out on the runner
    p.write_text(fast_config(("000001.SH", "600519.SH", "000001.SZ", "300750.SZ", "688981.SH"))
                 + f'[run]\ntask_runner = "{runner}"\ndask_workers = 2\nbatch_symbols = 2\n')
    return str(p)


def _timeless(value):
    """``value`` without the keys that record when, how fast or in which lake folder (wall
    seconds, timestamps, the card's own path)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items()
                if not (k.endswith(("wall_s", "_at", "seconds")) or k in ("path", "elapsed_s"))}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _model_outputs(root: str) -> dict:
    lake = Lake(root)
    panels = {p.parent.name: load_panel(lake, str(p)) for p in sorted(Path(root).glob("features/*/panel.parquet"))}
    cards = {(name, v): _timeless({k: c for k, c in registry.read_card(lake, name, v).items() if k != "state"})
             for name in ("lstm", "ridge", "rolling_mean", "persistence")
             for v in registry.list_versions(lake, name)}
    bt = sorted(Path(root).glob("backtests/*/summary.json"))
    folder = str(bt[-1].parent)
    report = f"{lake.paths.report_dir(dt.date(2024, 3, 15))}/metrics.json"
    return {"panels": panels, "cards": cards, "backtest_runs": [b.parent.name for b in bt],
            "summary": _timeless(json.loads(lake.read_text(f"{folder}/summary.json"))),
            "predictions": lake.read_table(f"{folder}/predictions.parquet").to_pandas(),
            "metrics": _timeless(json.loads(lake.read_text(report))) if lake.exists(report) else None}


def test_a_daily_run_gives_the_same_features_models_backtest_and_report_on_dask_and_threads(tmp_path):
    out = {}
    for runner in ("threads", "dask"):
        root = str(tmp_path / f"daily-{runner}")
        res = daily_flow(run_date="2024-03-15", lake=root, config_file=_daily_config(tmp_path, runner))
        out[runner] = (res, _model_outputs(root))
    (r_t, o_t), (r_d, o_d) = out["threads"], out["dask"]
    assert r_t["model_version"] == r_d["model_version"] and r_t["summary"] == r_d["summary"]
    # 3 batch panels and the combined one, at the same content-addressed paths
    assert list(o_t["panels"]) == list(o_d["panels"]) and len(o_t["panels"]) == 4
    for path, panel in o_t["panels"].items():
        pd.testing.assert_frame_equal(panel, o_d["panels"][path])
    # the combined panel is the one built over the whole universe at once
    whole = max(o_t["panels"].values(), key=len)
    lake = Lake(str(tmp_path / "daily-threads"))
    symbols = sorted(whole["symbol"].unique())
    assert len(symbols) == 5
    end = dt.date(2024, 3, 15)
    at_once = build_features(lake.read_curated_bars(symbols, end=end), Settings().features,
                             lake.read_adj_factor(symbols, end=end))
    pd.testing.assert_frame_equal(whole, at_once.assign(symbol=at_once["symbol"].astype(object)),
                                  check_dtype=False)
    assert o_t["cards"] == o_d["cards"] and ("lstm", r_t["model_version"]) in o_t["cards"]
    assert o_t["backtest_runs"] == o_d["backtest_runs"]
    assert o_t["summary"] == o_d["summary"]
    pd.testing.assert_frame_equal(o_t["predictions"], o_d["predictions"])
    assert o_t["metrics"] is not None and o_t["metrics"] == o_d["metrics"]
