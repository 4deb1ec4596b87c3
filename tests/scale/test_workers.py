"""Several workers against a Prefect server on PostgreSQL: two ``prefect worker`` processes on
one process pool, and a local two-worker Dask cluster as every run's task runner, share a
replay of 20 sessions (SCALE_REPLAY_SESSIONS=N for fewer), submitted in date order
as runs of a daily deployment (each session one run, idempotency key per session)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers_pipeline import fast_config
from helpers_server import BIN, stop_group

from kline.calendar import sessions_in_range
from kline.lake import Lake

REPO = Path(__file__).resolve().parents[2]
POOL = "kline-scale"
# 20 XSHG sessions take about 9 minutes here (a process per run, one run at a time on 2 cores);
# SCALE_REPLAY_SESSIONS=6 replays the last 6 for a quicker check
SESSIONS = int(os.environ.get("SCALE_REPLAY_SESSIONS", "20"))
FIRST, LAST = dt.date(2024, 2, 19), dt.date(2024, 3, 15)



def replay_config(dask_address: str) -> str:
    """fast_config with one session per run in mind: no Data Docs, the LSTM retrained every 10
    sessions, a walk-forward of the LSTM and persistence only; ingest, validation and features
    per symbol (2 batches) on the Dask scheduler at ``dask_address``."""
    text = fast_config().replace("[train]\n", '[train]\nretrain = "every_n"\nretrain_every = 10\n')
    text = text.replace("[backtest]\n", '[backtest]\nmodels = ["lstm", "persistence"]\n')
    return (text + "[validation]\ndata_docs = false\n"
            + f'[run]\ntask_runner = "dask"\ndask_address = "{dask_address}"\nbatch_symbols = 1\n')


def cli(env: dict, *args: str) -> str:
    out = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def start_workers(env: dict, home: Path, n: int) -> list[tuple[subprocess.Popen, Path]]:
    """``n`` process workers on ``POOL``, each logging which flow runs it submitted."""
    out = []
    for i in range(n):
        log = home / f"worker-{i}.log"
        wenv = {**env, "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
        proc = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", f"w{i}",
                                 "--limit", "1"], env=wenv, cwd=REPO, stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        out.append((proc, log))
    return out


def ran_by(log: Path) -> set[str]:
    """Flow runs a worker started: those it submitted less those the server refused it (both
    workers may reach for one run; the server lets one claim it)."""
    text = log.read_text()
    aborted = set(re.findall(r"Aborted submission of flow run '([0-9a-f-]{36})'", text))
    return set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", text)) - aborted


def replay_through_deployment(deployment: str, days: list[dt.date], timeout: float = 300) -> list:
    """Each session in order as one run of ``deployment``, waiting for it before the next (a
    daily run picks up where the previous one stopped); the idempotency key makes a repeated
    submission return the existing run."""
    from prefect.deployments import run_deployment

    runs = []
    for d in days:
        fr = run_deployment(deployment, parameters={"run_date": d.isoformat()}, idempotency_key=f"replay-{d}",
                            timeout=timeout)
        assert fr.state.is_completed(), f"{d}: {fr.state.name} {fr.state.message}"
        runs.append(fr)
    return runs


@pytest.mark.timeout(1500)
def test_two_process_workers_share_a_replay_on_a_postgres_server(pg_prefect_server, tmp_path):
    from distributed import Client, LocalCluster
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.daily import daily_flow
    from kline.registry import champion_history, get_champion, list_versions

    env, home = pg_prefect_server["env"], pg_prefect_server["home"]
    lake_root = str(tmp_path / "lake")
    days = sessions_in_range(FIRST, LAST, "XSHG")[-SESSIONS:]
    assert len(days) == SESSIONS

    cli(env, "work-pool", "create", POOL, "--type", "process")
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    cfg = tmp_path / "kline.toml"
    cfg.write_text(replay_config(cluster.scheduler_address))
    workers = start_workers(env, home, 2)
    try:
        with temporary_settings(updates={PREFECT_API_URL: pg_prefect_server["url"]}):
            # the entrypoint of prefect.yaml: the flow object of the importable flows.daily module,
            # which the Dask workers can unpickle (a flow loaded from flows/daily.py as a script cannot)
            daily_flow.from_source(source=str(REPO), entrypoint="flows/deployments.py:daily").deploy(
                name="replay", work_pool_name=POOL, parameters={"lake": lake_root, "config_file": str(cfg)},
                print_next_steps=False)
            t0 = time.perf_counter()
            runs = replay_through_deployment("kline-daily/replay", days)
            wall = time.perf_counter() - t0
            again = replay_through_deployment("kline-daily/replay", days)  # submitted twice: the same runs
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("kline-daily/replay")
                from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

                all_runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        with Client(cluster) as dask:
            executed = dask.run(lambda dask_worker: dask_worker.state.executed_count)
    finally:
        for proc, _ in workers:
            stop_group(proc, signal.SIGTERM, 30)
        cluster.close()
    print(f"\n{SESSIONS}-session replay through 2 process workers on a PostgreSQL server: {wall:.1f} s")

    # no session computed twice: one run per session, each submitted by exactly one worker
    assert [r.id for r in again] == [r.id for r in runs]
    assert sorted(r.parameters["run_date"] for r in all_runs) == [d.isoformat() for d in days]
    by_worker = [ran_by(log) for _, log in workers]
    ids = {str(r.id) for r in runs}
    assert set.union(*by_worker) == ids and not set.intersection(*by_worker)
    assert all(by_worker), f"one worker took every run: {[len(w) for w in by_worker]}"
    # every run's fan-out went to the shared Dask cluster: per session at least ingest,
    # validation and features for each of the 2 symbol batches, spread over both Dask workers
    assert len(executed) == 2 and all(executed.values()), executed
    assert sum(executed.values()) >= 3 * 2 * SESSIONS, executed

    # no partition written twice: per symbol batch (one Dask task each), the ingest log's
    # ranges do not overlap and its partition count is the lake's
    lake = Lake(lake_root)
    entries = lake.read_ingest_log()
    batches = sorted({tuple(e["symbols"]) for e in entries})
    assert batches == [("000001.SH",), ("600519.SH",)]
    for batch in batches:
        log = sorted((e for e in entries if tuple(e["symbols"]) == batch), key=lambda e: e["start"])
        assert all(a["end"] < b["start"] for a, b in zip(log, log[1:], strict=False)), json.dumps(log)[:2000]
        assert sum(e["partitions"] for e in log) == len(lake.raw_dates())
        assert [e["as_of"] for e in log] == [d.isoformat() for d in days]

    # one champion history: one metrics row set per session, a champion that is registered
    history = lake.read_table(lake.paths.metrics_history()).to_pandas()
    assert sorted(pd.to_datetime(history["run_date"]).dt.date.unique()) == days
    assert not history.duplicated(["run_date", "model"]).any()
    # promotion is on evidence: a tiny LSTM rarely earns it, so the pointer may be empty, but
    # never names a version that is not registered
    champion = get_champion(lake, "lstm")
    assert champion is None or champion["version"] in list_versions(lake, "lstm")
    moves = champion_history(lake, "lstm")  # one chain: each move starts where the one before left the pointer
    assert [m["seq"] for m in moves] == list(range(1, len(moves) + 1)), moves
    assert all(b["previous"] == a["version"] for a, b in zip(moves, moves[1:], strict=False)), moves
    assert (moves[-1]["version"] if moves else None) == (champion["version"] if champion else None), moves
