"""flows.backfill._steps: the order a backfill takes its (symbol batches, chunk) steps in."""

import datetime as dt

from flows.backfill import _steps
from kline.config import Settings

C1 = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))
C2 = (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
SYMS = ["600519.SH", "000001.SZ", "000002.SZ"]


def test_one_batch_at_a_time_goes_through_every_chunk_before_the_next():
    steps = _steps(Settings(run={"batch_symbols": 1}), SYMS, [C1, C2])
    assert [(g, c) for g, c, _ in steps] == [([["600519.SH"]], C1), ([["600519.SH"]], C2),
                                             ([["000001.SZ"]], C1), ([["000001.SZ"]], C2),
                                             ([["000002.SZ"]], C1), ([["000002.SZ"]], C2)]
    assert steps[0][2] == "2024-01-01..2024-01-31 (symbols 1/3)"


def test_batches_the_runner_runs_at_once_share_a_step():
    steps = _steps(Settings(run={"batch_symbols": 1, "task_runner": "dask", "dask_workers": 2}), SYMS, [C1, C2])
    assert [(g, c) for g, c, _ in steps] == [([["600519.SH"], ["000001.SZ"]], C1), ([["600519.SH"], ["000001.SZ"]], C2),
                                             ([["000002.SZ"]], C1), ([["000002.SZ"]], C2)]
    threads = _steps(Settings(max_concurrency=4, run={"batch_symbols": 2}), SYMS, [C1])
    assert [(g, c, label) for g, c, label in threads] == [([SYMS[:2], SYMS[2:]], C1, "2024-01-01..2024-01-31")]
