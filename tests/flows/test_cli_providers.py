"""`kline backfill` on real-data providers through the CLI: tushare against the loopback
server that speaks its wire protocol, and vendor files with their own calendar."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.schema import BAR_COLUMNS
from kline.validation import quarantine_counts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "providers"))
import tushare_server  # noqa: E402

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_backfill_from_tushare_fills_the_lake_like_the_synthetic_market(lake_root, monkeypatch, isolated_cwd):
    url, stop = tushare_server.serve(port=0)
    try:
        monkeypatch.setenv("KLINE_TUSHARE_URL", url)
        monkeypatch.setenv("TUSHARE_TOKEN", tushare_server.TOKEN)
        monkeypatch.setenv("KLINE_INGEST_RETRY_DELAY_S", "0")
        argv = ["backfill", "--provider", "tushare", "--symbols", "000001.SH,600519.SH,000001.SZ",
                "--start", "2024-01-01", "--end", "2024-02-29", "--lake", lake_root, "--data-only"]
        assert main(argv) == 0
        lake = Lake(lake_root)
        raw = lake.read_raw_bars()
        assert list(raw.columns) == BAR_COLUMNS and set(raw["source"]) == {"tushare"}
        want = SyntheticProvider().fetch(["000001.SH", "600519.SH", "000001.SZ"], dt.date(2024, 1, 1), dt.date(2024, 2, 29))
        want = want.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
        assert len(raw) == len(want)
        for col in ["open", "close", "pre_close", "volume", "amount"]:  # shares and CNY, not lots and thousands
            np.testing.assert_allclose(raw[col], want[col].to_numpy(), rtol=1e-9)
        assert len(lake.read_curated_bars()) == len(raw)
        assert not lake.read_adj_factor(["600519.SH"]).empty and lake.read_adj_factor(["000001.SH"]).empty
        assert main(argv) == 0  # a re-import is idempotent
        assert len(lake.read_raw_bars()) == len(raw)
        assert tushare_server.TOKEN not in "".join(
            Path(p).read_bytes().decode("latin-1") for p in Path(lake_root).rglob("*") if p.is_file())
    finally:
        stop()


def test_backfill_from_a_vendor_file_with_its_own_calendar(lake_root, tmp_path, isolated_cwd, capsys):
    src = tmp_path / "vendor"
    src.mkdir()
    days = pd.bdate_range("2023-12-01", "2024-01-31")
    close = 4700 + np.arange(len(days)) * 3.0
    pd.DataFrame({"Date": days.strftime("%m/%d/%Y"), "Open": close - 5, "High": close + 10, "Low": close - 12,
                  "Close": close, "Adj Close": close, "Volume": 3.5e9}).to_csv(src / "SPX.csv", index=False)
    argv = ["backfill", "--provider", "file", "--source", str(src), "--calendar", "XNYS",
            "--start", "2024-01-01", "--end", "2024-01-31", "--lake", lake_root, "--data-only"]
    assert main(argv) == 0
    curated = Lake(lake_root).read_curated_bars(["SPX"])
    # XNYS sessions only: New Year's Day and MLK day are not, so those vendor rows are quarantined
    assert dt.date(2024, 1, 15) not in set(curated["trade_date"])
    assert len(curated) == 21
    assert quarantine_counts(Lake(lake_root)) == {"SPX": 2}
    assert main(["status", "--lake", lake_root, "--calendar", "XNYS", "--json"]) == 0

    # the vendor fixes the file: a re-run reads it again (not the cache) and releases the rows
    fixed = pd.read_csv(src / "SPX.csv")
    fixed = fixed[~fixed["Date"].isin(["01/01/2024", "01/15/2024"])]
    fixed.to_csv(src / "SPX.csv", index=False)
    assert main(argv) == 0
    assert quarantine_counts(Lake(lake_root)) == {}
    assert len(Lake(lake_root).read_curated_bars(["SPX"])) == 21
