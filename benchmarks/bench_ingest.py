"""Ingestion benchmark: rows/s for 300 symbols x 10 years of synthetic bars, peak memory, and
the cost of one daily increment on a lake holding 1 year vs 10 years of history.

Runs the domain code path the ingest task runs (plan_ingest + ingest_range), without
Prefect's per-task overhead. Usage: python benchmarks/bench_ingest.py [--symbols 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time

from kline.calendar import next_session
from kline.config import Settings
from kline.ingestion import ingest_range, month_chunks, plan_ingest
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider


def universe(n: int) -> list[str]:
    half = n // 2
    return [f"{600000 + i:06d}.SH" for i in range(half)] + [f"{2000 + i:06d}.SZ" for i in range(n - half)]


def backfill(lake: Lake, symbols: list[str], start: dt.date, end: dt.date) -> tuple[int, float]:
    provider = SyntheticProvider()
    t0 = time.perf_counter()
    rows = 0
    for a, b in month_chunks(start, end):
        rows += ingest_range(provider, lake, symbols, a, b, as_of=b)["rows"]
    return rows, time.perf_counter() - t0


def daily_increment(lake: Lake, symbols: list[str], last: dt.date, repeats: int = 5) -> float:
    """Median seconds of plan + ingest for the session after ``last`` (re-run ``repeats``x)."""
    day = next_session(last)
    settings = Settings(symbols=tuple(symbols))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for c in plan_ingest(lake, settings, day):
            ingest_range(SyntheticProvider(), lake, c.symbols, c.start, c.end, as_of=day)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=10)
    args = ap.parse_args()
    syms = universe(args.symbols)
    end = dt.date(2025, 12, 31)
    start = dt.date(end.year - args.years + 1, 1, 1)
    SyntheticProvider().fetch(syms[:1], end, end)  # calendar and imports warm

    with tempfile.TemporaryDirectory() as d:
        lake = Lake(d)
        rows, secs = backfill(lake, syms, start, end)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"backfill: {rows} rows ({args.symbols} symbols x {args.years} years) in {secs:.1f} s "
              f"= {rows / secs:,.0f} rows/s; peak RSS {peak_mb:,.0f} MB")
        inc_10y = daily_increment(lake, syms, end)
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(d)
        backfill(lake, syms, dt.date(end.year, 1, 1), end)
        inc_1y = daily_increment(lake, syms, end)
    print(f"daily increment ({args.symbols} symbols): 1y history {inc_1y * 1000:.0f} ms, "
          f"10y history {inc_10y * 1000:.0f} ms, ratio {inc_10y / inc_1y:.2f}")


if __name__ == "__main__":
    main()
