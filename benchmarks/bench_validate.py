"""Validation stage timings: 300 synthetic symbols x 10 years in one chunk, then a daily chunk.

Usage: .venv/bin/python benchmarks/bench_validate.py [--symbols 300] [--years 10]
Targets (issue #4): the 10-year chunk under 20 s, a daily chunk under 1 s (GX imported).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time

from kline.config import Settings
from kline.ingestion import ingest_range
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.validation import validate_chunk


def universe(n: int) -> list[str]:
    """``n`` well-formed codes across boards: SH/SZ main, ChiNext, STAR and a few indices."""
    makers = [lambda i: f"{600000 + i:06d}.SH", lambda i: f"{1 + i:06d}.SZ",
              lambda i: f"{300001 + i:06d}.SZ", lambda i: f"{688001 + i:06d}.SH"]
    out = ["000001.SH", "000300.SH", "399001.SZ"]
    i = 0
    while len(out) < n:
        out.append(makers[i % 4](i // 4))
        i += 1
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=10)
    args = ap.parse_args()
    os.chdir(tempfile.mkdtemp())  # proves GX writes nothing into the working directory
    lake = Lake(tempfile.mkdtemp(prefix="bench-lake-"))
    settings = Settings()
    syms = universe(args.symbols)
    end = dt.date(2024, 12, 30)
    start = dt.date(end.year - args.years, 12, 31)
    provider = SyntheticProvider()

    t = time.perf_counter()
    ref = ingest_range(provider, lake, syms, start, end)
    print(f"setup: ingest {ref['rows']} rows into raw: {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    import great_expectations  # noqa: F401

    print(f"import great_expectations: {time.perf_counter() - t:.1f} s")
    today = dt.date(2025, 1, 2)
    t = time.perf_counter()
    big = validate_chunk(lake, ref, settings, today=today)
    wall = time.perf_counter() - t
    t = time.perf_counter()
    lake.read_raw_bars(start, end, syms, provider.name)
    read_s = time.perf_counter() - t
    print(f"{args.symbols} symbols x {args.years} years: {big['rows_checked']} rows, "
          f"quarantined {big['rows_quarantined']}, validate_chunk {wall:.1f} s "
          f"(GX run + docs {big['gx_seconds']:.2f} s; reading raw alone {read_s:.1f} s)")

    day = dt.date(2024, 12, 31)
    daily = ingest_range(provider, lake, syms, day, day)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        small = validate_chunk(lake, daily, settings, today=today)
        times.append(time.perf_counter() - t)
    print(f"daily chunk: {small['rows_checked']} rows, validate_chunk best {min(times):.2f} s, "
          f"worst {max(times):.2f} s (GX run + docs {small['gx_seconds']:.2f} s)")
    no_docs = settings.replace(validation={"data_docs": False})
    t = time.perf_counter()
    validate_chunk(lake, daily, no_docs, today=today)
    print(f"daily chunk without Data Docs: {time.perf_counter() - t:.2f} s")
    print(f"cwd after the run: {sorted(os.listdir('.')) or 'empty'}")


if __name__ == "__main__":
    main()
