"""The Prefect API going away mid-run: a real ``prefect server`` (its own PREFECT_HOME and
SQLite database) is SIGKILLed, process group and all, while ``kline run`` talks to it. The
run must end soon with exit 5 and one line saying the API was lost (no traceback); after the
server is started again on the same database, the same command completes, its finished
stages come back from the cache (``Cached`` task states on the server) and the lake files
they wrote are not rewritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from helpers_pipeline import fast_config
from helpers_server import running_server
from reliability.helpers import BIN, kline_env

pytestmark = pytest.mark.e2e

SYMBOLS = ("000001.SH", "600519.SH")
LOST_WITHIN_S = 120  # Prefect's client retries a request 3 times (2 + 4 + 8 s), kline's default, then gives up


def _mtimes(lake: Path, layers=("raw", "curated", "features")) -> dict[str, int]:
    return {str(p.relative_to(lake)): p.stat().st_mtime_ns for layer in layers
            for p in sorted((lake / layer).rglob("*.parquet")) if p.is_file()}


def _task_states(url: str) -> dict[str, str]:
    """Task-run name -> state name of the newest flow run on the server at ``url``."""
    (run,) = httpx.post(f"{url}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC", "limit": 1},
                        timeout=30).json()
    tasks = httpx.post(f"{url}/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}, "limit": 200},
                       timeout=30).json()
    return {t["name"]: t["state"]["name"] for t in tasks}


def test_server_killed_mid_run_then_a_rerun_resumes_from_the_cache(tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))
    lake = tmp_path / "lake"
    home = tmp_path / "prefect-home"
    home.mkdir()
    argv = [str(BIN / "kline"), "run", "--date", "2023-12-29", "--lake", str(lake), "--config", str(cfg)]
    with running_server(home) as server:
        env = kline_env(server["env"], tmp_path / "home")
        proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        # kill once the data stages are done and the model stages under way
        deadline = time.monotonic() + 600
        while not list((lake / "features").rglob("*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never reached the features stage"
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the server could be killed"
        os.killpg(server["proc"].pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=600)
        ended_after = time.monotonic() - killed
    done_before = _mtimes(lake)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 5, err[-3000:]
    assert lines and lines[-1].startswith(f"kline: lost the Prefect API at {server['url']}"), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert ended_after < LOST_WITHIN_S, ended_after

    with running_server(home) as again:  # the same PREFECT_HOME: the same database and result storage
        env = kline_env(again["env"], tmp_path / "home")
        t0 = time.monotonic()
        rerun = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        rerun_s = time.monotonic() - t0
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        states = _task_states(again["url"])
    cached = Counter(name.split("-")[0] for name, state in states.items() if state == "Cached")
    assert cached["ingest"] >= 1 and cached["validate"] >= 1, states
    after = _mtimes(lake)
    assert {k: after[k] for k in done_before} == done_before  # the data stages' files were not rewritten
    assert (lake / "reports" / "2023-12-29" / "report.html").is_file()
    figures = {"exit": proc.returncode, "ended_after_kill_s": round(ended_after, 1), "stderr_lines": len(lines),
               "rerun_s": round(rerun_s, 1), "cached": dict(cached), "states": dict(Counter(states.values())),
               "files_kept": len(done_before)}
    print(json.dumps(figures))
