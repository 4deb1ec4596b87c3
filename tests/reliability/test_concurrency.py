"""One lake, three writers at once: ``kline run`` and two ``kline backfill``s over
overlapping dates. Every command ends 0; afterwards each (symbol, trade_date) is stored once
in raw and curated bars, and the stored prices are the vendor's (nothing lost, nothing
doubled, no row from one writer clobbered by another's partial view)."""

from __future__ import annotations

import datetime as dt
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers_pipeline import fast_config
from reliability.helpers import BIN, kline_env, parquet_files

from kline.providers.synthetic import SyntheticProvider

pytestmark = pytest.mark.e2e

SYMBOLS = ("000001.SH", "600519.SH")


def _bars(paths) -> pd.DataFrame:
    return pd.concat([pq.read_table(p, columns=["symbol", "trade_date", "close"]).to_pandas() for p in paths],
                     ignore_index=True)


def test_run_and_two_overlapping_backfills_at_once(reliability_server, tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))  # one year of history for `run`
    lake = tmp_path / "lake"
    env = kline_env(reliability_server["env"], tmp_path / "home")
    common = ["--lake", str(lake), "--config", str(cfg)]
    commands = {
        "run": ["run", "--date", "2023-12-29", *common],
        "backfill-a": ["backfill", "--start", "2023-06-01", "--end", "2023-11-30", "--data-only", *common],
        "backfill-b": ["backfill", "--start", "2023-10-09", "--end", "2023-12-29", "--data-only", *common],
    }
    procs = {name: subprocess.Popen([str(BIN / "kline"), *argv], env=env, cwd=tmp_path, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
             for name, argv in commands.items()}
    outs = {name: p.communicate(timeout=600) for name, p in procs.items()}
    codes = {name: p.returncode for name, p in procs.items()}
    assert codes == {name: 0 for name in commands}, {n: outs[n][1][-2000:] for n in codes if codes[n]}

    raw = _bars(parquet_files(lake / "raw" / "bars"))
    curated = _bars(parquet_files(lake / "curated" / "bars"))
    for name, df in (("raw", raw), ("curated", curated)):
        assert not df.duplicated(["symbol", "trade_date"]).any(), name
    want = SyntheticProvider().fetch(list(SYMBOLS), dt.date(2022, 12, 29), dt.date(2023, 12, 29))
    got = raw.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    want = want[want["trade_date"] >= got["trade_date"].min()].sort_values(["symbol", "trade_date"])
    # `run` catches up from whatever the backfills logged first, so the span starts at
    # 2022-12-29 or 2023-06-01 depending on who came first; either way it has no hole, and
    # enough history for the model stages (kline.train_stage.sessions_needed)
    assert dt.date(2022, 12, 28) <= got["trade_date"].min() <= dt.date(2023, 6, 1)
    assert len(got) == len(want) >= 160
    assert (got["close"].to_numpy() == want["close"].to_numpy()).all()
    assert set(map(tuple, curated[["symbol", "trade_date"]].to_numpy())) <= set(map(tuple, got[["symbol", "trade_date"]].to_numpy()))
    assert len(curated) >= len(got) - 5  # a few rows may be quarantined, the same for every writer
    assert (lake / "reports").is_dir()
