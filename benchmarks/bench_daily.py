"""Daily-run benchmark at 300 stocks: one daily run (ingest, validate, features, warm-started
retrain, backtest, promote, forecast, report) as of ``RUN_DATE`` on a lake that already holds
the history and a champion, under a temporary Prefect server, on the threads runner and on a
local two-worker Dask cluster.

Set-up (not timed): a data backfill of ``--years`` years of ``synthetic_universe(N)`` up to the
session before ``RUN_DATE`` and a model trained as of that session (its walk-forward one fit
of the LSTM beside persistence, for speed), made champion so that the timed run's retrain starts warm from it.
The lake is then copied once per runner, so both timed runs start from the same state.

Measured per run: wall time of the flow call; each stage's wall time in the flow (the
``with stage(...)`` blocks of ``flows.stages``) and the task runner's start-up; and, on threads,
each task function's own seconds (a timer around ``Task.fn``, inside Prefect's task engine).
Prefect's share of the wall time is at most ``wall - sum(task functions' own seconds)``: that
remainder holds Prefect's orchestration (task run creation, state changes, cache lookups,
result persistence, events) and also the flow body's own domain work between tasks (settings,
universe, calendar, the history check, the curated fingerprint), so it is an upper bound.

Usage: python benchmarks/bench_daily.py [--symbols 300] [--years 2] [--batch 150]
       [--runners threads,dask]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import resource
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry from the test server

from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from kline.providers.synthetic import synthetic_universe  # noqa: E402

RUN_DATE = "2025-06-13"  # a Friday session; the set-up ends the session before
SETUP_END = "2025-06-12"

OWN: dict[str, float] = defaultdict(float)  # task name -> its function's own seconds (this process)
STAGES: dict[str, float] = defaultdict(float)  # stage -> wall seconds in the flow


def _timed_fn(name: str, fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            OWN[name] += time.perf_counter() - t0

    return run


def instrument() -> None:
    """Time every task function and every stage block of the flows (in this process)."""
    import flows.stages as stages
    from tasks.backtest import backtest, promote
    from tasks.features import build_features_task, combine_features_task
    from tasks.forecast import forecast
    from tasks.ingest import ingest_chunk
    from tasks.report import report
    from tasks.train import train_task
    from tasks.validate import validate_chunk_task

    for t in (ingest_chunk, validate_chunk_task, build_features_task, combine_features_task, train_task, backtest,
              promote, forecast, report):
        t.fn = _timed_fn(t.name, t.fn)
    stage, runner = stages.stage, stages.task_runner

    @contextlib.contextmanager
    def timed_stage(name, symbols):
        t0 = time.perf_counter()
        with stage(name, symbols):
            yield
        STAGES[name] += time.perf_counter() - t0

    @contextlib.contextmanager
    def timed_runner(settings):
        t0 = time.perf_counter()
        with runner(settings) as r:
            STAGES["runner start"] += time.perf_counter() - t0
            yield r
            t1 = time.perf_counter()
        STAGES["runner stop"] += time.perf_counter() - t1

    stages.stage, stages.task_runner = timed_stage, timed_runner


def config(path: Path, symbols: list[str], years: int, batch: int, runner: str, extra: str = "") -> str:
    path.write_text(f"symbols = {symbols!r}\n".replace("'", '"')
                    + f"[ingest]\nhistory_years = {years}\n"
                    + f'[run]\ntask_runner = "{runner}"\ndask_workers = 2\nbatch_symbols = {batch}\n' + extra)
    return str(path)


def setup(d: Path, symbols: list[str], years: int, batch: int) -> str:
    """A lake with ``years`` of history to ``SETUP_END`` and an LSTM champion trained as of it."""
    from flows.backfill import backfill_flow
    from kline import registry
    from kline.lake import Lake

    lake = str(d / "setup-lake")
    cfg = config(d / "setup.toml", symbols, years, batch, "threads", '[backtest]\nmodels = ["lstm", "persistence"]\nretrain_every = 10000\n')
    start = f"{int(SETUP_END[:4]) - years}{SETUP_END[4:]}"
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = backfill_flow(start=start, end=SETUP_END, lake=lake, config_file=cfg)
    version = registry.list_versions(Lake(lake), "lstm")[-1]
    if not (registry.get_champion(Lake(lake), "lstm") or {}).get("version") == version:
        registry.set_champion(Lake(lake), "lstm", version, {"promote": True, "reason": "benchmark set-up"})
    print(f"set-up: {len(symbols)} symbols, {start}..{SETUP_END}, {out['ingested_rows']:,} rows, champion lstm "
          f"{version}, {time.perf_counter() - t0:.0f} s")
    return lake


def timed_run(d: Path, base: str, symbols: list[str], years: int, batch: int, runner: str) -> None:
    from flows.daily import daily_flow
    from kline import registry
    from kline.lake import Lake

    lake = str(d / f"lake-{runner}")
    shutil.copytree(base, lake)
    cfg = config(d / f"{runner}.toml", symbols, years, batch, runner)
    OWN.clear()
    STAGES.clear()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = daily_flow(run_date=RUN_DATE, lake=lake, config_file=cfg)
    wall = time.perf_counter() - t0
    card = registry.read_card(Lake(lake), "lstm", out["model_version"])
    own = sum(OWN.values())
    print(f"\n{runner}: daily run {RUN_DATE}, {len(symbols)} symbols, batch {batch}: {wall:.1f} s wall "
          f"(model {out['model_version']}, warm start from {card.get('warm_start') or 'nothing'}, "
          f"{card.get('epochs_run', '?')} epochs, {card.get('wall_s', 0):.0f} s fit)")
    print("  stage walls (flow side): " + ", ".join(f"{k} {v:.1f}" for k, v in STAGES.items()))
    if runner == "threads":
        print("  task functions' own seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in OWN.items()))
        print(f"  sum {own:.1f} s; wall - sum = {wall - own:.1f} s = {100 * (wall - own) / wall:.1f} % of the wall "
              f"(upper bound of Prefect's share)")
    print(f"  peak RSS this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB, "
          f"children {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=2, help="history held (the default ingest.history_years)")
    ap.add_argument("--batch", type=int, default=150, help="run.batch_symbols: 2 batches at 300 symbols")
    ap.add_argument("--runners", default="threads,dask")
    args = ap.parse_args()
    symbols = synthetic_universe(args.symbols)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min load average at start), {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness():
        d = Path(tmp)
        base = setup(d, symbols, args.years, args.batch)
        instrument()
        for runner in args.runners.split(","):
            timed_run(d, base, symbols, args.years, args.batch, runner)
            print(f"  load now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
