import datetime as dt
import os

import pytest

from flows.backfill import backfill_flow, progress_listeners
from flows.daily import daily_flow
from kline.calendar import sessions_in_range
from kline.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def config_file(tmp_path):
    p = tmp_path / "kline.toml"
    p.write_text('symbols = ["000001.SH", "600519.SH"]\n[ingest]\nhistory_years = 1\n')
    return str(p)


def test_daily_fills_history_then_reruns_from_cache(lake_root, config_file):
    state = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=config_file, return_state=True)
    assert state.is_completed()
    out = state.result()
    assert out["trading_day"] and out["chunks"] == ["2023-03-16..2024-03-15"]  # the catch-up is one chunk
    raw = Lake(lake_root).read_raw_bars()
    idx = raw[raw["symbol"] == "000001.SH"]
    assert sorted(idx["trade_date"]) == sessions_in_range(dt.date(2023, 3, 16), dt.date(2024, 3, 15))

    from prefect import get_client  # noqa: F401  (the harness's server)

    again = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=config_file, return_state=True)
    assert again.result()["chunks"] == out["chunks"]
    assert len(Lake(lake_root).read_ingest_log()) == len(out["chunks"])  # every chunk a cache hit

    nxt = daily_flow(run_date="2024-03-18", lake=lake_root, config_file=config_file, return_state=True)
    assert nxt.result()["chunks"] == ["2024-03-16..2024-03-18"]


def test_non_session_date_completes_without_work(lake_root, config_file):
    out = daily_flow(run_date="2024-10-01", lake=lake_root, config_file=config_file)
    assert out == {"run_date": "2024-10-01", "trading_day": False, "provisional": False}
    assert Lake(lake_root).read_ingest_log() == []


def test_backfill_in_row_sized_chunks_with_progress(lake_root, tmp_path):
    cfg = tmp_path / "rows.toml"  # 2 symbols x 20 sessions per chunk
    cfg.write_text('symbols = ["000001.SH", "600519.SH"]\n[ingest]\nhistory_years = 1\nbackfill_chunk_rows = 40\n')
    seen = []
    progress_listeners.append(lambda d, t, label: seen.append((d, t, label)))
    try:
        out = backfill_flow(start="2024-01-01", end="2024-02-10", lake=lake_root, config_file=str(cfg),
                            models=False)
    finally:
        progress_listeners.clear()
    assert out["chunks"] == 2 and out["ingested_rows"] == 2 * 28
    assert seen == [(1, 2, "2024-01-01..2024-01-29"), (2, 2, "2024-01-30..2024-02-10")]
    raw = Lake(lake_root).read_raw_bars()
    assert raw["trade_date"].min() == dt.date(2024, 1, 2) and raw["trade_date"].max() == dt.date(2024, 2, 8)
    # a repeated backfill finds every chunk in the cache
    backfill_flow(start="2024-01-01", end="2024-02-10", lake=lake_root, config_file=str(cfg), models=False)
    assert len(Lake(lake_root).read_ingest_log()) == 2
    assert Lake(lake_root).curated_years() == [2024]  # validated on the way


def test_an_interrupted_backfill_redoes_only_the_chunk_it_was_in(lake_root, tmp_path):
    cfg = tmp_path / "rows.toml"  # 1 symbol x 10 sessions per chunk: 3 chunks
    cfg.write_text('symbols = ["600519.SH"]\n[ingest]\nbackfill_chunk_rows = 10\n')

    def stop_after_first(done, total, label):
        if done == 1:
            raise RuntimeError("interrupted")

    progress_listeners.append(stop_after_first)
    try:
        state = backfill_flow(start="2024-03-01", end="2024-04-10", lake=lake_root, config_file=str(cfg),
                              models=False, return_state=True)
    finally:
        progress_listeners.clear()
    assert state.is_failed()
    log = Lake(lake_root).read_ingest_log()
    assert [(e["start"], e["end"]) for e in log] == [("2024-03-01", "2024-03-14")]
    out = backfill_flow(start="2024-03-01", end="2024-04-10", lake=lake_root, config_file=str(cfg), models=False)
    assert out["chunks"] == 3
    log = Lake(lake_root).read_ingest_log()  # the first chunk came from the cache
    assert [(e["start"], e["end"]) for e in log] == [("2024-03-01", "2024-03-14"), ("2024-03-15", "2024-03-28"),
                                                     ("2024-03-29", "2024-04-10")]


@pytest.mark.parametrize("params", [{"run_date": "2999-01-04"}, {"run_date": "2024-03-15", "symbols": ["../x"]}])
def test_a_deployment_run_with_bad_input_fails_before_writing(lake_root, config_file, params):
    state = daily_flow(lake=lake_root, config_file=config_file, return_state=True, **params)
    assert state.is_failed()
    assert not os.path.exists(lake_root)


def test_a_backfill_into_the_future_fails_before_writing(lake_root, config_file):
    state = backfill_flow(start="2024-01-01", end="2999-01-31", lake=lake_root, config_file=config_file,
                          return_state=True)
    assert state.is_failed() and "in the future" in state.message
    assert not os.path.exists(lake_root)
