"""Runs across the end of the published XSHG calendar, on a moved clock: the last session of
2026, provisional sessions of 2027, a replay across the boundary, a holiday file arriving
after provisional runs, and the vendor's trade_cal as the authority."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import time_machine
from helpers_pipeline import fast_config

from flows.backfill import backfill_flow
from flows.daily import daily_flow
from kline import calendar as cal
from kline.lake import Lake

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "providers"))
import tushare_server  # noqa: E402

pytestmark = pytest.mark.usefixtures("prefect_harness")

INDEX = "000001.SH"


def at(text: str):
    """The whole process on Shanghai wall time ``text`` (the clock keeps ticking)."""
    return time_machine.travel(dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai")))


def config(tmp_path, symbols=(INDEX, "600519.SH"), provider="synthetic", extra: str = "") -> str:
    p = tmp_path / "kline.toml"
    p.write_text(fast_config(symbols, provider) + extra)
    return str(p)


def cli_status(lake_root: str, cfg: str) -> dict[str, dict]:
    """``kline status --json`` per symbol, as a user would read it."""
    from flows.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", "--lake", lake_root, "--config", cfg, "--json"]) == 0
    return {r["symbol"]: r for r in json.loads(out.getvalue())["symbols"]}


def forecast_rows(lake: Lake, day: str) -> pd.DataFrame:
    return pd.read_csv(lake.paths.forecast(dt.date.fromisoformat(day)))


def test_the_last_session_of_the_year_and_the_provisional_first_sessions_of_the_next(tmp_path, lake_root):
    cfg = config(tmp_path)
    lake = Lake(lake_root)
    with at("2027-01-05T18:30"):
        dec31 = daily_flow(run_date="2026-12-31", lake=lake_root, config_file=cfg)
        assert dec31["trading_day"] and not dec31["provisional"] and dec31["forecast_provisional"]
        fc = forecast_rows(lake, "2026-12-31")
        assert set(fc["target_date"]) == {"2027-01-04"} and fc["provisional"].all()
        metrics = json.loads(Path(lake.paths.report_dir(dt.date(2026, 12, 31)), "metrics.json").read_text())
        assert metrics["provisional"] is True
        assert "PROVISIONAL CALENDAR" in Path(dec31["report"]).read_text(encoding="utf-8")

        assert daily_flow(run_date="2027-01-01", lake=lake_root, config_file=cfg) == {
            "run_date": "2027-01-01", "trading_day": False, "provisional": True}
        for day, nxt in (("2027-01-04", "2027-01-05"), ("2027-01-05", "2027-01-06")):
            out = daily_flow(run_date=day, lake=lake_root, config_file=cfg)
            assert out["trading_day"] and out["provisional"] and out["calendar"]["known_through"] == "2026-12-31"
            fc = forecast_rows(lake, day)
            assert set(fc["target_date"]) == {nxt} and fc["provisional"].all()
            assert json.loads(Path(lake.paths.report_dir(dt.date.fromisoformat(day)), "metrics.json")
                              .read_text())["provisional"] is True
        # the default date at 18:30 on a provisional session is that session
        out = daily_flow(lake=lake_root, config_file=cfg)
        assert out["run_date"] == "2027-01-05"
    curated = lake.read_curated_bars([INDEX])
    assert {dt.date(2027, 1, 4), dt.date(2027, 1, 5)} <= set(curated["trade_date"])
    assert not curated.duplicated(["symbol", "trade_date"]).any()


def test_a_replay_across_the_year_boundary_is_point_in_time(tmp_path, lake_root):
    cfg = config(tmp_path, symbols=(INDEX,))
    lake = Lake(lake_root)
    with at("2027-01-18T18:30"):
        out = backfill_flow(start="2026-12-28", end="2027-01-08", replay=True, lake=lake_root, config_file=cfg)
    days = out["replayed"]
    assert days == ["2026-12-28", "2026-12-29", "2026-12-30", "2026-12-31", "2027-01-04", "2027-01-05",
                    "2027-01-06", "2027-01-07", "2027-01-08"]
    for day in days:
        d = dt.date.fromisoformat(day)
        fc = forecast_rows(lake, day)
        assert set(fc["trade_date"]) == {day}  # the forecast is made from the run date's bar
        assert set(fc["target_date"]) == {cal.next_session(d).isoformat()}
        assert bool(fc["provisional"].all()) == (cal.next_session(d) > dt.date(2026, 12, 31))
        metrics = json.loads(Path(lake.paths.report_dir(d), "metrics.json").read_text())
        assert metrics["held_out"]["end"] < day  # realised returns only from before the run date
        assert metrics["provisional"] == (cal.next_session(d) > dt.date(2026, 12, 31))


def test_a_holiday_file_arriving_after_provisional_runs_is_reconciled(tmp_path, lake_root, monkeypatch):
    cfg = config(tmp_path)
    lake = Lake(lake_root)
    with at("2027-01-12T18:30"):
        assert daily_flow(run_date="2027-01-08", lake=lake_root, config_file=cfg)["provisional"]
        before = lake.read_curated_bars()
        assert dt.date(2027, 1, 6) in set(before["trade_date"])  # the synthetic market traded it
        # the exchange publishes 2027: 6 January turns out closed (the file lists whole years)
        holidays = tmp_path / "holidays.toml"
        holidays.write_text('[XSHG]\n# source: test notice\n2027 = ["2027-01-01", "2027-01-06"]\n')
        monkeypatch.setenv("KLINE_CALENDAR_HOLIDAY_FILE", str(holidays))
        out = daily_flow(run_date="2027-01-11", lake=lake_root, config_file=cfg)
        assert out["trading_day"] and not out["provisional"] and not out["forecast_provisional"]
        assert out["calendar"]["known_through"] == "2027-12-31"
        assert out["calendar"]["source"] == "holiday file holidays.toml"
        status = cli_status(lake_root, cfg)
    after = lake.read_curated_bars()
    # nothing curated is lost or doubled; no hole is reported on the day now known closed
    keys = ["symbol", "trade_date"]
    assert before[keys].merge(after[keys]).shape[0] == len(before)
    assert not after.duplicated(keys).any()
    assert status[INDEX]["missing"] == 0 and status[INDEX]["last"] == "2027-01-11"


def test_provisional_closures_and_trade_cal_through_the_tushare_server(tmp_path, lake_root, monkeypatch):
    """The vendor: trade_cal is the authority over its published years (a weekday it closes
    is closed, and the run says so); past them, a provisional session with no bar for any
    symbol is a closure for that run, and no hole afterwards."""
    srv = tushare_server.start(port=0, unpublished={dt.date(2027, 1, 6)},
                               trade_cal_closed={dt.date(2026, 12, 28)})
    try:
        monkeypatch.setenv("KLINE_TUSHARE_URL", srv.url)
        monkeypatch.setenv("TUSHARE_TOKEN", tushare_server.TOKEN)
        cfg = config(tmp_path, provider="tushare")
        lake = Lake(lake_root)
        with at("2027-01-08T18:30"):
            dec30 = daily_flow(run_date="2026-12-30", lake=lake_root, config_file=cfg)
            assert any("closed on 2026-12-28" in line for line in dec30["calendar"]["disagreements"])
            assert dec30["calendar"]["source"] == "tushare trade_cal"
            assert Path(lake.paths.trade_cal("tushare", 2026)).is_file()
            assert not Path(lake.paths.trade_cal("tushare", 2027)).exists()  # not published: asked again
            assert dt.date(2026, 12, 28) not in set(lake.read_curated_bars()["trade_date"])
            closed = daily_flow(run_date="2027-01-06", lake=lake_root, config_file=cfg)
            assert not closed["trading_day"] and closed["provisional"]
            # what came before the closed day is validated all the same
            assert dt.date(2027, 1, 5) in set(lake.read_curated_bars([INDEX])["trade_date"])
            out = daily_flow(run_date="2027-01-07", lake=lake_root, config_file=cfg)
            assert out["trading_day"] and out["provisional"]
            assert out["calendar"]["provisional_closures"] == ["2027-01-06"]
            status = cli_status(lake_root, cfg)
        assert status[INDEX]["missing"] == 0 and status[INDEX]["last"] == "2027-01-07"
        trade_cal_calls = [r for r in srv.requests if r["api_name"] == "trade_cal"]
        years = sorted(r["params"]["start_date"][:4] for r in trade_cal_calls)
        assert years.count("2026") == 1  # a published year is fetched once, then read from the lake
    finally:
        srv.stop()


def test_kline_run_at_13_00_on_a_session_day_models_the_previous_session(tmp_path, lake_root, capsys):
    from flows.cli import main

    cfg = config(tmp_path, symbols=(INDEX,))
    with at("2026-12-01T13:00"):
        assert main(["run", "--lake", lake_root, "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert f"Output: {Lake(lake_root).paths.report_dir(dt.date(2026, 11, 30))}/report.html" in out
    assert max(Lake(lake_root).read_curated_bars()["trade_date"]) == dt.date(2026, 11, 30)
