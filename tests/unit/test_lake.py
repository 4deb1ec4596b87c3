import datetime as dt
import os
import subprocess
import sys

import pandas as pd
import pytest

from kline.lake import Lake, LakePaths
from kline.providers.synthetic import SyntheticProvider
from kline.schema import BAR_COLUMNS

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
    with pytest.raises(ValueError):
        p.raw_bars(D1, "../evil")


def _bars(symbols, start=D1, end=D3):
    return SyntheticProvider().fetch(symbols, start, end)


def test_write_twice_leaves_each_row_once_newest_wins(lake):
    first = _bars(["600519.SH", "000001.SH"])
    lake.write_raw_bars(first, "synthetic")
    again = first[first["symbol"] == "600519.SH"].copy()
    again["close"] = again["close"] + 1.0
    lake.write_raw_bars(again, "synthetic")
    lake.write_raw_bars(again, "synthetic")
    out = lake.read_raw_bars(D1, D3)
    assert len(out) == len(first)
    assert not out.duplicated(["symbol", "trade_date"]).any()
    moutai = out[out["symbol"] == "600519.SH"].reset_index(drop=True)
    pd.testing.assert_series_equal(moutai["close"], again["close"].reset_index(drop=True))
    index = out[out["symbol"] == "000001.SH"].reset_index(drop=True)
    pd.testing.assert_series_equal(index["close"], first[first["symbol"] == "000001.SH"]["close"].reset_index(drop=True))
    assert list(out.columns) == BAR_COLUMNS


def test_crash_between_write_and_rename_keeps_previous_data(lake, monkeypatch):
    bars = _bars(["600519.SH"])
    lake.write_raw_bars(bars, "synthetic")
    before = lake.read_raw_bars(D1, D3)
    changed = bars.copy()
    changed["close"] = -1.0

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        lake.write_raw_bars(changed, "synthetic")
    monkeypatch.undo()
    after = lake.read_raw_bars(D1, D3)
    pd.testing.assert_frame_equal(before, after)
    leftovers = [n for n in lake.listdir(lake.paths.raw_bars(D1, "x").rsplit("/", 1)[0]) if ".tmp-" in n]
    assert leftovers == []


WRITER = """
import datetime as dt, sys
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
root, symbols = sys.argv[1], sys.argv[2].split(",")
lake = Lake(root)
bars = SyntheticProvider().fetch(symbols, dt.date(2024, 1, 2), dt.date(2024, 1, 4))
for sym in symbols:  # one symbol per write: a lost update would lose that symbol for good
    lake.write_raw_bars(bars[bars["symbol"] == sym], "synthetic")
"""


def test_two_processes_writing_the_same_days_lose_nothing(lake_root):
    a = [f"{600000 + i:06d}.SH" for i in range(60)]
    b = [f"{1 + i:06d}.SZ" for i in range(60)] + a[:10]  # the same days, overlapping symbols
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, lake_root, ",".join(s)]) for s in (a, b)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    out = Lake(lake_root).read_raw_bars(D1, D3)
    expected = SyntheticProvider().fetch(sorted(set(a) | set(b)), D1, D3)
    pd.testing.assert_frame_equal(
        out.drop(columns="ingested_at"), expected.drop(columns="ingested_at").reset_index(drop=True)
    )


def test_read_one_symbol_over_a_range(lake):
    bars = SyntheticProvider().fetch(["600519.SH", "000001.SZ"], dt.date(2023, 12, 1), dt.date(2024, 2, 29))
    lake.write_raw_bars(bars, "synthetic")
    lake.write_curated_bars(bars)
    out = lake.read_curated_bars(["000001.SZ"], D1, dt.date(2024, 1, 31))
    assert set(out["symbol"]) == {"000001.SZ"}
    assert out["trade_date"].min() >= D1 and out["trade_date"].max() <= dt.date(2024, 1, 31)
    raw = lake.read_raw_bars(D1, dt.date(2024, 1, 31), symbols=["000001.SZ"])
    pd.testing.assert_frame_equal(
        out.drop(columns="ingested_at"), raw.drop(columns="ingested_at"), check_dtype=False
    )
    assert lake.curated_years() == [2023, 2024]


def test_curated_upsert_and_delete(lake):
    bars = _bars(["600519.SH", "000001.SZ"])
    lake.write_curated_bars(bars)
    lake.write_curated_bars(bars)
    assert len(lake.read_curated_bars()) == len(bars)
    removed = lake.delete_curated_rows(bars[bars["symbol"] == "000001.SZ"][["symbol", "trade_date"]])
    assert removed == 3
    assert set(lake.read_curated_bars()["symbol"]) == {"600519.SH"}


def test_curated_fingerprint_follows_content(lake):
    bars = _bars(["600519.SH", "000001.SZ"])
    empty = lake.curated_fingerprint()
    lake.write_curated_bars(bars)
    fp = lake.curated_fingerprint()
    assert fp != empty
    again = bars.copy()
    again["ingested_at"] = again["ingested_at"] + pd.Timedelta(hours=1)  # not content
    lake.write_curated_bars(again)
    assert lake.curated_fingerprint() == fp
    changed = bars.copy()
    changed.loc[0, "close"] += 0.01
    lake.write_curated_bars(changed)
    assert lake.curated_fingerprint() != fp
    assert lake.curated_fingerprint(end=dt.date(2023, 12, 31)) == empty
    as_of_d1 = lake.curated_fingerprint(end=D1)
    later = _bars(["600519.SH"], start=D2, end=D3)
    later["close"] = later["close"] + 1.0  # rows after D1 change...
    lake.write_curated_bars(later)
    assert lake.curated_fingerprint(end=D1) == as_of_d1  # ...but not what a run as of D1 reads
    assert lake.curated_fingerprint() != lake.curated_fingerprint(end=D1)


def test_ingest_log_roundtrip(lake):
    lake.ingest_log.append({"source": "synthetic", "start": "2024-01-02", "end": "2024-01-04"})
    lake.ingest_log.append({"source": "synthetic", "start": "2024-01-05", "end": "2024-02-05", "as_of": "2024-02-05"})
    lake.ingest_log.append({"source": "synthetic", "start": "2024-01-05", "end": "2024-01-05"})
    assert [e["end"] for e in lake.read_ingest_log()] == ["2024-01-04", "2024-01-05", "2024-02-05"]
    assert lake.ingest_log.months() == ["2024-01", "2024-02"]
    assert [e["end"] for e in lake.read_ingest_log(["2024-02"])] == ["2024-02-05"]


def test_a_fetch_is_authoritative_for_its_symbols_and_range(lake):
    bars = _bars(["600519.SH", "000001.SZ"])
    weekend = bars[bars["symbol"] == "600519.SH"].iloc[:1].copy()
    weekend["trade_date"] = dt.date(2024, 1, 6)  # a bad date from a broken source
    lake.write_raw_bars(pd.concat([bars, weekend]), "synthetic")
    assert dt.date(2024, 1, 6) in lake.raw_dates()
    dup = pd.concat([bars, bars.iloc[:1]])  # duplicates within one fetch are kept for validation
    lake.write_raw_bars(dup, "synthetic", symbols=["600519.SH", "000001.SZ"], start=D1, end=dt.date(2024, 1, 7))
    out = lake.read_raw_bars(D1, dt.date(2024, 1, 7))
    assert len(out) == len(bars) + 1
    assert lake.read_raw_bars(dt.date(2024, 1, 6), dt.date(2024, 1, 6)).empty  # the fixed fetch removed the bad day
    only_index = _bars(["000001.SH"])
    lake.write_raw_bars(only_index, "synthetic", symbols=["000001.SH"], start=D1, end=D3)
    assert set(lake.read_raw_bars(D1, D3)["symbol"]) == {"600519.SH", "000001.SZ", "000001.SH"}


def test_instrument_facts_are_point_in_time(lake):
    import datetime as dt

    lake.reference.write("listings", pd.DataFrame([{"symbol": "600001.SH", "list_date": dt.date(2001, 1, 8),
                                                    "delist_date": dt.date(2024, 6, 28)}]), "test", ["600001.SH"])
    lake.reference.write("st_periods", pd.DataFrame([{"symbol": "600001.SH", "start_date": dt.date(2024, 5, 6),
                                                      "end_date": dt.date(2024, 6, 28), "name": "*ST"}]),
                         "test", ["600001.SH"])
    march = lake.read_instrument_facts(["600001.SH"], end=dt.date(2024, 3, 29))
    assert march.listing("600001.SH")[1] is None and march.st_periods.empty  # neither known yet
    june = lake.read_instrument_facts(["600001.SH"], end=dt.date(2024, 6, 3))
    assert june.listing("600001.SH")[1] is None
    assert len(june.st_periods) == 1 and pd.isna(june.st_periods["end_date"].iloc[0])
    july = lake.read_instrument_facts(["600001.SH"], end=dt.date(2024, 7, 1))
    assert july.listing("600001.SH")[1] == dt.date(2024, 6, 28)
