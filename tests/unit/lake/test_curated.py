"""kline.lake.curated: range reads, upsert and delete, the content fingerprint."""

import datetime as dt

import pandas as pd

from kline.providers.synthetic import SyntheticProvider

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


def _bars(symbols, start=D1, end=D3):
    return SyntheticProvider().fetch(symbols, start, end)


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
