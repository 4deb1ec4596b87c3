"""kline.lake.paths: every path from the root, and ill-formed names refused."""

import datetime as dt

import pytest

from kline.lake import LakePaths

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


def test_literal_paths(tmp_path):
    p = LakePaths(str(tmp_path))
    r = str(tmp_path)
    assert p.raw_bars(D1, "synthetic") == f"{r}/raw/bars/trade_date=2024-01-02/synthetic.parquet"
    assert p.curated_bars(2024) == f"{r}/curated/bars/year=2024/part.parquet"
    assert p.quarantine_bars(D1, "run-1") == f"{r}/quarantine/bars/trade_date=2024-01-02/run-1.parquet"
    assert p.model_dir("lstm", "v1") == f"{r}/models/lstm/v1"
    assert p.report_dir(D1) == f"{r}/reports/2024-01-02"
    assert p.ingest_log("2024-01") == f"{r}/_state/ingest_log/as_of=2024-01.jsonl"
    assert p.prefect_results() == f"{r}/_state/prefect-results"
    assert p.raw_month("bars", "2024-01", "synthetic") == f"{r}/raw/bars/month=2024-01/synthetic.parquet"
    assert p.raw_month("adj_factor", "2024-01", "file") == f"{r}/raw/adj_factor/month=2024-01/file.parquet"
    assert p.raw_day("stk_limit", D1, "tushare") == f"{r}/raw/stk_limit/trade_date=2024-01-02/tushare.parquet"
    with pytest.raises(ValueError):
        p.raw_bars(D1, "../evil")
    with pytest.raises(ValueError):
        p.raw_month("bars", "2024-1", "synthetic")
    with pytest.raises(ValueError):
        p.raw_month("curated", "2024-01", "synthetic")
