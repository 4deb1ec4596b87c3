"""Too little history is not a failure: a week of bars on an empty lake completes the data
stages, says how many sessions the model stages need, and exits 0."""

from __future__ import annotations

import pytest
from helpers_pipeline import fast_config
from reliability.helpers import kline, kline_env, parquet_files

pytestmark = pytest.mark.e2e


def test_a_week_on_an_empty_lake_completes_the_data_stages_and_exits_0(reliability_server, tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config())
    lake = tmp_path / "lake"
    p = kline(["backfill", "--start", "2024-01-22", "--end", "2024-01-26", "--lake", str(lake), "--config", str(cfg)],
              kline_env(reliability_server["env"], tmp_path / "home"), tmp_path)
    assert parquet_files(lake / "curated" / "bars")  # the data stages ran either way
    assert p.returncode == 0, p.stderr[-2000:]
    said = [line for line in (p.stdout + p.stderr).splitlines() if "too little history" in line]
    assert said and "need 100 sessions" in said[0] and "model stages skipped" in said[0], p.stderr[-2000:]
    assert not (lake / "models").exists() and not (lake / "reports").exists()
