"""Scale benchmark: data backfills (ingest + validate) through the backfill flow, under a
temporary Prefect server.

- ``index``: twenty years of one index (about 5 000 rows): the synthetic SSE Composite, or a
  vendor file (``--vendor-file PATH --vendor-symbol CODE --vendor-calendar XNYS``);
- ``market``: ``--symbols`` synthetic stocks (``synthetic_universe``) x ``--years`` years:
  wall time, peak RSS of this process (and Dask workers' under ``--runner dask``), ingest
  rows/s (the ingest task runs' own seconds, from the ingestion log); ``--status`` also
  times ``kline status`` on the lake built (``--lake PATH`` keeps it there).

Both print the task runs' own seconds per task name (from the temporary server).
Usage: python benchmarks/bench_scale.py index|market [--chunk-rows N] [--batch N] [--runner threads|dask]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

from kline.lake import Lake
from kline.providers.synthetic import synthetic_universe


def _config(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _peak_mb() -> tuple[float, float]:
    """Peak RSS of this process and of its largest waited-for child, MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def task_seconds() -> str:
    """Task runs and their own seconds per task name on this benchmark's temporary server."""
    from prefect.client.orchestration import get_client

    per: dict[str, list[float]] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while runs := client.read_task_runs(limit=200, offset=offset):
            for tr in runs:
                per.setdefault(tr.name.split("-")[0], []).append(tr.total_run_time.total_seconds())
            offset += len(runs)
    return ", ".join(f"{k} {len(v)} x = {sum(v):.1f} s" for k, v in sorted(per.items()))


def run_backfill(cfg: str, lake: str, start: str, end: str, **params) -> tuple[dict, float]:
    from flows.backfill import backfill_flow

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = backfill_flow(start=start, end=end, lake=lake, config_file=cfg, models=False, **params)
    return out, time.perf_counter() - t0


def bench_index(args, d: Path) -> None:
    lines = [f"[ingest]\nbackfill_chunk_rows = {args.chunk_rows}", "[validation]\ndata_docs = true"]
    if args.vendor_file:
        lines = [f'provider = "file"\nsymbols = ["{args.vendor_symbol}"]',
                 f'[file]\nsource = "{args.vendor_file}"\ncalendar = "{args.vendor_calendar}"', *lines]
        start, end = "1999-01-01", "2018-12-31"
    else:
        lines = ['symbols = ["000001.SH"]', *lines]
        start, end = "2005-01-01", "2024-12-31"
    out, secs = run_backfill(_config(d / "kline.toml", lines), str(d / "lake"), start, end)
    log = Lake(d / "lake").read_ingest_log()
    print(f"index backfill {start}..{end}: {out['ingested_rows']} rows in {out['chunks']} chunk(s), "
          f"{secs:.1f} s wall (ingest tasks {sum(e['seconds'] for e in log):.1f} s)")
    print(f"task runs: {task_seconds()}")


def bench_market(args, d: Path) -> None:
    syms = synthetic_universe(args.symbols)
    end_year = 2025
    start, end = f"{end_year - args.years + 1}-01-01", f"{end_year}-12-31"
    lines = [f"symbols = {syms!r}".replace("'", '"'), f"max_concurrency = {args.threads}",
             f"[ingest]\nbackfill_chunk_rows = {args.chunk_rows}",
             f'[run]\ntask_runner = "{args.runner}"\ndask_workers = {args.dask_workers}\n'
             f"batch_symbols = {args.batch}", "[validation]\ndata_docs = true"]
    lake = args.lake or str(d / "lake")
    out, secs = run_backfill(_config(d / "kline.toml", lines), lake, start, end)
    own, children = _peak_mb()
    log = Lake(lake).read_ingest_log()
    ingest_s = sum(e["seconds"] for e in log)
    print(f"market backfill {args.symbols} symbols x {args.years} years ({args.runner}, batch {args.batch}, "
          f"chunk rows {args.chunk_rows}): {out['ingested_rows']:,} rows, {out['chunks']} chunk(s) x "
          f"{len(log) // max(out['chunks'], 1)} batch(es), {secs:.1f} s wall "
          f"= {out['ingested_rows'] / secs:,.0f} rows/s end to end; ingest tasks {ingest_s:.1f} s = "
          f"{out['ingested_rows'] / ingest_s:,.0f} rows/s; peak RSS {own:,.0f} MB (children {children:,.0f} MB)")
    print(f"task runs: {task_seconds()}")
    if args.status:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flows.cli", "status", "--lake", lake], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.getcwd()})
        print(f"kline status on that lake: {time.perf_counter() - t0:.2f} s (a new process, imports included)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["index", "market"])
    ap.add_argument("--chunk-rows", type=int, default=250_000)
    ap.add_argument("--vendor-file")
    ap.add_argument("--vendor-symbol", default="IXIC")
    ap.add_argument("--vendor-calendar", default="XNYS")
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="max_concurrency under the threads runner")
    ap.add_argument("--runner", choices=["threads", "dask"], default="threads")
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--status", action="store_true")
    ap.add_argument("--lake", help="market: build the lake here (kept) instead of in a temporary folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness():
        (bench_index if args.what == "index" else bench_market)(args, Path(tmp))


if __name__ == "__main__":
    main()
