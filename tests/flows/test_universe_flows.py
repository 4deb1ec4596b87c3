"""Universes in the flows: a market universe resolved point in time per backfill chunk, and
a bad universe refused before anything is written."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from flows.backfill import backfill_flow
from flows.cli import main
from kline.lake import Lake

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "providers"))
import tushare_server  # noqa: E402

pytestmark = pytest.mark.usefixtures("prefect_harness")
OLD, NEW, STAYS = "600010.SH", "600011.SH", "600519.SH"


def test_a_csi300_backfill_covers_each_chunk_members_then_and_only_then(lake_root, tmp_path, monkeypatch):
    server = tushare_server.start(index_members={"399300.SZ": {dt.date(2023, 1, 31): [OLD, STAYS],
                                                               dt.date(2023, 7, 31): [NEW, STAYS]}})
    try:
        monkeypatch.setenv("KLINE_TUSHARE_URL", server.url)
        monkeypatch.setenv("TUSHARE_TOKEN", tushare_server.TOKEN)
        cfg = tmp_path / "kline.toml"  # 3 names over the span: 13 sessions per chunk
        cfg.write_text('provider = "tushare"\nuniverse = "csi300"\n[ingest]\nbackfill_chunk_rows = 40\n'
                       'retry_delay_s = 0\n[tushare]\ninstrument_facts = false\n')
        out = backfill_flow(start="2023-06-01", end="2023-08-31", lake=lake_root, config_file=str(cfg),
                            models=False)
    finally:
        server.stop()
    raw = Lake(lake_root).read_raw_bars()
    last = raw.groupby("symbol")["trade_date"].agg(["min", "max"])
    assert set(last.index) == {OLD, NEW, STAYS}
    # OLD left on 2023-07-31: kept through the chunk holding that day, not after
    assert last.loc[OLD, "min"] == dt.date(2023, 6, 1) and dt.date(2023, 7, 31) <= last.loc[OLD, "max"] < dt.date(2023, 8, 31)
    # NEW joined on 2023-07-31: not fetched for the chunks before it
    assert dt.date(2023, 6, 30) < last.loc[NEW, "min"] <= dt.date(2023, 7, 31) and last.loc[NEW, "max"] == dt.date(2023, 8, 31)
    assert (last.loc[STAYS, "min"], last.loc[STAYS, "max"]) == (dt.date(2023, 6, 1), dt.date(2023, 8, 31))
    assert out["chunks"] == 5
    assert {tuple(e["symbols"]) for e in Lake(lake_root).read_ingest_log()} == {
        (OLD, STAYS), (OLD, NEW, STAYS), (NEW, STAYS)}


def test_a_bad_universe_exits_2_with_one_line_and_writes_nothing(lake_root, monkeypatch, isolated_cwd, capsys):
    monkeypatch.setenv("KLINE_UNIVERSE", "csi500")
    assert main(["run", "--date", "2024-03-15", "--lake", lake_root]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "universe: unknown value 'csi500'" in err
    monkeypatch.setenv("KLINE_UNIVERSE", "file:missing.txt")
    assert main(["backfill", "--start", "2024-03-01", "--end", "2024-03-15", "--lake", lake_root]) == 2
    assert "universe: file not found: missing.txt" in capsys.readouterr().err
    assert not os.path.exists(lake_root)


def test_the_universe_flag_is_in_the_help_of_run_and_backfill(capsys):
    for cmd in ("run", "backfill"):
        assert main([cmd, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "--universe" in out and "csi300" in out and "file:codes.txt" in out


def test_a_bad_universe_flag_exits_2_and_writes_nothing(lake_root, isolated_cwd, capsys):
    cases = [(["run", "--date", "2024-03-15", "--universe", "csi500"], "universe: unknown value 'csi500'"),
             (["backfill", "--start", "2024-03-01", "--end", "2024-03-15", "--universe", "file:missing.txt"],
              "universe: file not found: missing.txt"),
             (["run", "--date", "2024-03-15", "--universe", "600519.SH,NOT-A-CODE"], "universe:"),
             (["run", "--date", "2024-03-15", "--universe", " , "], "--universe: no universe given"),
             (["run", "--date", "2024-03-15", "--universe", "csi300", "--symbols", "600519.SH"],
              "give --symbols or --universe, not both")]
    for argv, message in cases:
        assert main([*argv, "--lake", lake_root]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, (argv, err)
    assert not os.path.exists(lake_root)
    assert "KLINE_UNIVERSE" not in os.environ  # the flag lasts one command


def test_the_universe_flag_replaces_the_configured_universe(lake_root, isolated_cwd, capsys):
    (isolated_cwd / "kline.toml").write_text('universe = "csi300"\n')  # the flag wins over the file
    (isolated_cwd / "codes.txt").write_text("# two names\n600519.SH\n000001.SZ\n")
    assert main(["backfill", "--start", "2024-03-11", "--end", "2024-03-15", "--data-only", "--lake", lake_root,
                 "--universe", "file:codes.txt"]) == 0
    assert set(Lake(lake_root).read_raw_bars()["symbol"]) == {"600519.SH", "000001.SZ"}
    assert main(["backfill", "--start", "2024-03-11", "--end", "2024-03-15", "--data-only", "--lake", lake_root,
                 "--universe", "601318.SH"]) == 0  # one code is a list of one
    assert set(Lake(lake_root).read_raw_bars()["symbol"]) == {"600519.SH", "000001.SZ", "601318.SH"}
    assert "KLINE_UNIVERSE" not in os.environ
