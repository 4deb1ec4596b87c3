"""The tushare token never leaves the process that holds it.

``TUSHARE_TOKEN`` is a sentinel; ``kline backfill`` runs against the loopback tushare server
through a real Prefect server, once end to end (report and Data Docs included) and three
times failing: the vendor rejects the token, the vendor answers with an error that echoes the
whole request (token included), and a rate-limit message that echoes it until the retries
run out. Then every place the token could have reached is searched: the commands' output,
every byte of the lake (Parquet decoded too), PREFECT_HOME (the server's SQLite database and
its result storage), the child's HOME, and, through the API, flow-run parameters, task-run
inputs, state messages, logs and artifacts.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from helpers_pipeline import fast_config
from reliability.helpers import FaultyTushare, kline, kline_env

pytestmark = pytest.mark.e2e

SENTINEL = "SENTINEL0tok0c0ffee0d15ea5e0b16b00b5"
SYMBOLS = "000001.SH,600519.SH,000001.SZ"


def _api_dump(url: str) -> str:
    """Every flow run, task run, log and artifact the server holds, as JSON text."""
    out = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for path in ("/flow_runs/filter", "/task_runs/filter", "/logs/filter", "/artifacts/filter",
                     "/variables/filter", "/block_documents/filter"):
            offset = 0
            while True:
                body = {"limit": 200, "offset": offset}
                if path == "/block_documents/filter":
                    body["include_secrets"] = True
                r = c.post(path, json=body)
                r.raise_for_status()
                page = r.json()
                out.append(json.dumps(page, ensure_ascii=False))
                if len(page) < 200:
                    break
                offset += 200
    return "\n".join(out)


def _places_holding(root: Path, needle: str) -> list[str]:
    """Files under ``root`` whose bytes (or, for Parquet, decoded rows and metadata) hold ``needle``."""
    hits = []
    raw = needle.encode()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if raw in data or needle.encode("utf-16-le") in data:
            hits.append(str(p))
        elif p.suffix == ".parquet":
            t = pq.read_table(p)
            text = str(t.schema.metadata) + json.dumps(t.to_pylist(), default=str, ensure_ascii=False)
            if needle in text:
                hits.append(f"{p} (decoded)")
    return hits


def test_the_token_reaches_no_output_lake_database_log_or_artifact(reliability_server, tmp_path):
    server = FaultyTushare(tokens=[SENTINEL]).start()
    wrong = FaultyTushare(tokens=["another-account-token"]).start()
    echo_fatal = FaultyTushare(tokens=[SENTINEL], echo={"daily": "fatal", "index_daily": "fatal"}).start()
    echo_rate = FaultyTushare(tokens=[SENTINEL], echo={"daily": "rate", "index_daily": "rate"}).start()
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS.split(","), provider="tushare"))
    lake = tmp_path / "lake"
    home = tmp_path / "home"
    outputs: dict[str, str] = {}
    try:
        def run(name: str, url: str, start: str, end: str, *extra: str, retries: str = "1") -> int:
            env = kline_env(reliability_server["env"], home, TUSHARE_TOKEN=SENTINEL, KLINE_TUSHARE_URL=url,
                            KLINE_INGEST_RETRIES=retries, KLINE_INGEST_RETRY_DELAY_S="0")
            p = kline(["backfill", "--config", str(cfg), "--lake", str(lake), "--start", start, "--end", end,
                       *extra], env, tmp_path, timeout=900)
            outputs[name] = p.stdout + p.stderr
            return p.returncode

        # end to end: bars, validation and Data Docs, model, backtest, report
        assert run("ok", server.url, "2023-07-01", "2023-12-29") == 0, outputs["ok"][-3000:]
        assert (lake / "reports").is_dir() and (lake / "validation").is_dir()
        assert server.requests and {r["token"] for r in server.requests} == {SENTINEL}  # it was sent, to the vendor only

        assert run("bad-token", wrong.url, "2024-01-01", "2024-01-31", "--data-only") == 1
        assert "rejected the token in TUSHARE_TOKEN" in outputs["bad-token"]
        assert run("echo-fatal", echo_fatal.url, "2024-02-01", "2024-02-29", "--data-only") == 1
        assert "请求内容" in outputs["echo-fatal"]  # the vendor's echo of the request reached the output
        assert run("echo-rate", echo_rate.url, "2024-03-01", "2024-03-29", "--data-only") == 1
        assert "rate limit" in outputs["echo-rate"]
        assert sum(r["api_name"] in ("daily", "index_daily") for r in echo_rate.requests) >= 2  # retried, then gave up
    finally:
        for s in (server, wrong, echo_fatal, echo_rate):
            s.stop()

    dump = _api_dump(reliability_server["url"])
    assert "backfill-2023-07-01-2023-12-29" in dump and "rejected the token" in dump  # the dump holds the runs
    leaks = {
        "output": sorted(name for name, out in outputs.items() if SENTINEL in out),
        "lake": _places_holding(lake, SENTINEL),
        "home": _places_holding(home, SENTINEL),  # ~/tk.csv (ts.set_token) included
        "prefect_home": _places_holding(Path(reliability_server["home"]), SENTINEL),  # the SQLite db, results
        "api": [SENTINEL in dump],
    }
    assert not (home / "tk.csv").exists()
    assert not any(any(v) for v in leaks.values()), leaks
