"""The ``[run] task_runner`` setting: a backfill fanned out per chunk and symbol batch on a
local two-worker Dask cluster (worker processes) writes the same lake as one on threads."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers_validation import read_quarantine

from flows.backfill import backfill_flow
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
