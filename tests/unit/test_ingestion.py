import datetime as dt

from kline.calendar import sessions_in_range
from kline.config import Settings
from kline.ingestion import (
    covered_through,
    history_start,
    ingest_range,
    month_chunks,
    plan_ingest,
    row_chunks,
    symbol_batches,
)
from kline.providers.synthetic import SyntheticProvider


def test_month_chunks():
    assert month_chunks(dt.date(2024, 1, 15), dt.date(2024, 3, 3)) == [
        (dt.date(2024, 1, 15), dt.date(2024, 1, 31)),
        (dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
        (dt.date(2024, 3, 1), dt.date(2024, 3, 3)),
    ]
    assert month_chunks(dt.date(2024, 12, 30), dt.date(2025, 1, 2))[-1] == (dt.date(2025, 1, 1), dt.date(2025, 1, 2))
    assert month_chunks(dt.date(2024, 2, 1), dt.date(2024, 1, 1)) == []


def test_row_chunks_hold_about_the_target_rows_and_cover_the_range():
    a, b = dt.date(2005, 1, 1), dt.date(2024, 12, 31)
    days = sessions_in_range(a, b)
    # one index over twenty years is one chunk; 300 stocks, about 2 000 rows per chunk
    assert row_chunks(a, b, days, 1, 250_000) == [(a, b)]
    chunks = row_chunks(a, b, days, 300, 2_000)
    assert chunks[0][0] == a and chunks[-1][1] == b
    for (_, e0), (s1, _) in zip(chunks, chunks[1:], strict=False):
        assert s1 == e0 + dt.timedelta(days=1)  # contiguous, no gap, no overlap
    sizes = [len([d for d in days if c0 <= d <= c1]) for c0, c1 in chunks]
    assert set(sizes[:-1]) == {6} and 1 <= sizes[-1] <= 6  # 2 000 // 300 sessions each
    assert len(chunks) == -(-len(days) // 6)
    # a range ending on a weekend: the last session's span runs to the end, no empty chunk
    sat = dt.date(2024, 1, 13)
    jan = sessions_in_range(dt.date(2024, 1, 1), sat)
    assert row_chunks(dt.date(2024, 1, 1), sat, jan, 1, 5) == [(dt.date(2024, 1, 1), dt.date(2024, 1, 8)),
                                                               (dt.date(2024, 1, 9), sat)]
    assert row_chunks(dt.date(2024, 1, 6), dt.date(2024, 1, 7), [], 3, 10) == [(dt.date(2024, 1, 6), dt.date(2024, 1, 7))]
    assert row_chunks(b, a, days, 1, 10) == []
    # more symbols than the target: one session per chunk, never zero
    one = row_chunks(a, dt.date(2005, 1, 10), days, 5000, 100)
    assert one == [(a, dt.date(2005, 1, 4)), (dt.date(2005, 1, 5), dt.date(2005, 1, 5)),
                   (dt.date(2005, 1, 6), dt.date(2005, 1, 6)), (dt.date(2005, 1, 7), dt.date(2005, 1, 7)), (dt.date(2005, 1, 8), dt.date(2005, 1, 10))]


def test_symbol_batches():
    assert symbol_batches(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert symbol_batches(["a", "b"], 0) == [["a", "b"]]
    assert symbol_batches([], 3) == []


def test_history_start():
    assert history_start(dt.date(2026, 11, 27), 2) == dt.date(2024, 11, 28)
    assert history_start(dt.date(2024, 2, 29), 1) == dt.date(2023, 3, 1)


def test_plan_on_empty_lake_fetches_the_configured_history(lake):
    s = Settings(symbols=("600519.SH", "000001.SH"))
    (chunk,) = plan_ingest(lake, s, dt.date(2024, 3, 15))
    assert (chunk.symbols, chunk.start, chunk.end) == (("600519.SH", "000001.SH"), dt.date(2022, 3, 16), dt.date(2024, 3, 15))
    chunks = plan_ingest(lake, s, dt.date(2024, 3, 15), by_month=True)
    assert chunks[0].start == dt.date(2022, 3, 16) and chunks[-1].end == dt.date(2024, 3, 15)
    assert len(chunks) == 25


def test_plan_catches_up_missed_days_and_replans_a_rerun_identically(lake):
    s = Settings(symbols=("600519.SH", "000001.SH"))
    p = SyntheticProvider()
    ingest_range(p, lake, ["600519.SH", "000001.SH"], dt.date(2024, 3, 1), dt.date(2024, 3, 11), as_of=dt.date(2024, 3, 11))
    ingest_range(p, lake, ["600519.SH"], dt.date(2024, 3, 12), dt.date(2024, 3, 12), as_of=dt.date(2024, 3, 12))
    first = plan_ingest(lake, s, dt.date(2024, 3, 15))
    assert [(c.symbols, c.start, c.end) for c in first] == [
        (("000001.SH",), dt.date(2024, 3, 12), dt.date(2024, 3, 15)),
        (("600519.SH",), dt.date(2024, 3, 13), dt.date(2024, 3, 15)),
    ]
    for c in first:
        ingest_range(p, lake, c.symbols, c.start, c.end, as_of=dt.date(2024, 3, 15))
    assert plan_ingest(lake, s, dt.date(2024, 3, 15)) == first  # a re-run plans the same chunks
    nxt = plan_ingest(lake, s, dt.date(2024, 3, 18))
    assert [(c.start, c.end) for c in nxt] == [(dt.date(2024, 3, 16), dt.date(2024, 3, 18))]


def test_covered_through_ignores_later_runs():
    log = [{"source": "synthetic", "symbols": ["A"], "start": "2024-01-01", "end": "2024-01-31", "as_of": "2024-01-31"}]
    assert covered_through(log, ["A"], "synthetic", dt.date(2024, 1, 15)) == {"A": None}
    assert covered_through(log, ["A"], "synthetic", dt.date(2024, 2, 5)) == {"A": dt.date(2024, 1, 31)}
    assert covered_through(log, ["A"], "tushare", dt.date(2024, 2, 5)) == {"A": None}


def test_ingest_range_writes_raw_and_logs(lake):
    ref = ingest_range(SyntheticProvider(), lake, ["600519.SH", "000001.SH"], dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    raw = lake.read_raw_bars(dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert ref["rows"] == len(raw) > 0
    assert ref["partitions"][0] == "trade_date=2024-01-02"
    (entry,) = lake.read_ingest_log()
    assert entry["rows"] == ref["rows"] and entry["content_hash"] == ref["content_hash"]
    again = ingest_range(SyntheticProvider(), lake, ["600519.SH", "000001.SH"], dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert again["content_hash"] == ref["content_hash"]  # ingested_at is not content
    assert len(lake.read_raw_bars(dt.date(2024, 1, 1), dt.date(2024, 1, 31))) == len(raw)


def test_a_day_one_symbol_did_not_get_yet_is_asked_for_again():
    e = {"source": "synthetic", "symbols": ["A", "B", "C"], "start": "2024-03-11", "end": "2024-03-15",
         "as_of": "2024-03-15", "last_rows": {"A": "2024-03-15", "B": "2024-03-14", "C": "2024-02-20"}}
    cover = covered_through([e], ["A", "B", "C"], "synthetic", dt.date(2024, 3, 18))
    # B's Friday bar was not published at fetch time: asked again; C is long suspended: covered
    assert cover == {"A": dt.date(2024, 3, 15), "B": dt.date(2024, 3, 14), "C": dt.date(2024, 3, 15)}
    daily = {**e, "start": "2024-03-15", "last_rows": {"A": "2024-03-15"}}
    assert covered_through([daily], ["B"], "synthetic", dt.date(2024, 3, 18)) == {"B": None}


class _NoFacts(SyntheticProvider):
    """The synthetic market with its facts switched off (as tushare with instrument_facts
    disabled or not permitted, or a vendor folder without side files)."""

    def fetch_instrument_facts(self, symbols, start, end):
        from kline.rules import InstrumentFacts

        return InstrumentFacts()


class _FactsFail(SyntheticProvider):
    def fetch_instrument_facts(self, symbols, start, end):
        from kline.providers.base import TransientProviderError

        raise TransientProviderError("namechange: rate limited")


def test_facts_not_fetched_leave_the_stored_ones_alone(lake):
    sym = ["300750.SZ"]
    ingest_range(SyntheticProvider(), lake, sym, dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    stored = lake.reference.read("listings", sym)
    assert len(stored) == 1
    ingest_range(_NoFacts(), lake, sym, dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert lake.reference.read("listings", sym).equals(stored)


def test_a_failing_facts_call_writes_no_bars(lake):
    import pytest

    from kline.providers.base import TransientProviderError

    with pytest.raises(TransientProviderError):
        ingest_range(_FactsFail(), lake, ["300750.SZ"], dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    assert lake.raw_dates() == [] and lake.read_ingest_log() == []
