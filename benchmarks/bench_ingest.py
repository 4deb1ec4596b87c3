"""Ingestion benchmark: rows/s for 300 symbols x 10 years of synthetic bars, peak memory, and
the cost of one daily increment on a lake holding 1 year vs 10 years of history.

Runs the domain code path the ingest task runs (plan_ingest + ingest_range), without
Prefect's per-task overhead, for both raw layouts: month files in the backfill flow's
row-sized chunks (``--layout month``, the default) or day files in month chunks (``day``).
Usage: python benchmarks/bench_ingest.py [--symbols 300] [--layout month|day]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time

from kline.calendar import next_session, sessions_in_range
from kline.config import Settings
from kline.ingestion import ingest_range, month_chunks, plan_ingest, row_chunks
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.schema import to_canonical


def universe(n: int) -> list[str]:
    half = n // 2
    return [f"{600000 + i:06d}.SH" for i in range(half)] + [f"{2000 + i:06d}.SZ" for i in range(n - half)]


def chunks(symbols: list[str], start: dt.date, end: dt.date, layout: str) -> list[tuple[dt.date, dt.date]]:
    """Month files: the backfill flow's chunks of 250 000 rows; day files: calendar months."""
    if layout == "day":
        return month_chunks(start, end)
    return row_chunks(start, end, sessions_in_range(start, end), len(symbols), 250_000)


def backfill(lake: Lake, symbols: list[str], start: dt.date, end: dt.date, layout: str) -> tuple[int, float]:
    provider = SyntheticProvider()
    t0 = time.perf_counter()
    rows = 0
    for a, b in chunks(symbols, start, end, layout):
        rows += ingest_range(provider, lake, symbols, a, b, as_of=b, layout=layout)["rows"]
    return rows, time.perf_counter() - t0


def split(symbols: list[str], start: dt.date, end: dt.date, layout: str) -> tuple[float, float, int]:
    """Seconds in the provider alone (fresh paths + fetch + canonical), seconds in the lake
    alone (the same frames written again to a fresh lake), and the raw bar files written."""
    provider = SyntheticProvider(seed=99)  # a seed not yet cached in this process
    frames, t0 = [], time.perf_counter()
    for a, b in chunks(symbols, start, end, layout):
        frames.append((a, b, to_canonical(provider.fetch(symbols, a, b), provider.name)))
    t_provider = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(d)
        t0, files = time.perf_counter(), 0
        for a, b, f in frames:
            files += len(lake.write_raw_bars(f, "synthetic", symbols, a, b, layout=layout).partitions)
        t_lake = time.perf_counter() - t0
    return t_provider, t_lake, files


def daily_increment(lake: Lake, symbols: list[str], last: dt.date, repeats: int = 15) -> float:
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
    ap.add_argument("--layout", choices=["month", "day"], default="month")
    args = ap.parse_args()
    syms = universe(args.symbols)
    end = dt.date(2025, 12, 31)
    start = dt.date(end.year - args.years + 1, 1, 1)
    SyntheticProvider().fetch(syms[:1], end, end)  # calendar and imports warm

    with tempfile.TemporaryDirectory() as d:
        lake = Lake(d)
        rows, secs = backfill(lake, syms, start, end, args.layout)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"backfill ({args.layout} files): {rows} rows ({args.symbols} symbols x {args.years} years) in {secs:.1f} s "
              f"= {rows / secs:,.0f} rows/s; peak RSS {peak_mb:,.0f} MB")
        inc_10y = daily_increment(lake, syms, end)
    with tempfile.TemporaryDirectory() as d:
        lake = Lake(d)
        backfill(lake, syms, dt.date(end.year, 1, 1), end, args.layout)
        inc_1y = daily_increment(lake, syms, end)
    t_provider, t_lake, files = split(syms, start, end, args.layout)
    print(f"of which: provider {t_provider:.1f} s, lake writes {t_lake:.1f} s = {rows / t_lake:,.0f} rows/s "
          f"for {files} {args.layout} files "
          f"({1000 * t_lake / files:.2f} ms per file)")
    print(f"daily increment ({args.symbols} symbols): 1y history {inc_1y * 1000:.0f} ms, "
          f"10y history {inc_10y * 1000:.0f} ms, ratio {inc_10y / inc_1y:.2f}")


if __name__ == "__main__":
    main()
