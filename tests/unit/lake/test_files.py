"""kline.lake.files: atomic writes survive a crash; locks keep concurrent writers' rows."""

import datetime as dt
import os
import subprocess
import sys

import pandas as pd
import pytest

from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


def _bars(symbols, start=D1, end=D3):
    return SyntheticProvider().fetch(symbols, start, end)


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
