"""What the reliability tests share: a tushare server that injects faults, ``kline`` in a
child process, and fingerprints of a lake (every byte, and its content)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from helpers_server import BIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "providers"))
import tushare_server  # noqa: E402

TRIALS = int(os.environ.get("KLINE_RELIABILITY_TRIALS", "0") or 0)  # 0: each test's small default
TRANSIENT_FAULTS = ("timeout", "http500", "rate", "empty", "garbage")


def trials(default: int) -> int:
    """How many trials a fault test runs: ``KLINE_RELIABILITY_TRIALS`` when set, else ``default``."""
    return TRIALS or default


class FaultyTushare(tushare_server.TushareServer):
    """The loopback tushare server, with faults drawn per request from a seeded generator.

    ``fault_rate`` of the requests (after ``warmup`` clean ones) fail with one of ``kinds``:
    ``timeout`` (answers after ``timeout_s``, past the client's timeout), ``http500``,
    ``rate`` (tushare's per-minute message with HTTP 200), ``empty`` (HTTP 200 with no fields
    and no rows: the frame the client builds from an error answer), ``garbage`` (a proxy's
    HTML page). ``echo`` maps an api name to an error kind whose message echoes the whole
    request, token included (``"fatal"`` or ``"rate"``), as a careless vendor might.
    """

    def __init__(self, fault_rate: float = 0.0, kinds=TRANSIENT_FAULTS, seed: int = 0, timeout_s: float = 1.5,
                 echo: dict[str, str] | None = None, **options):
        super().__init__(**options)
        self.fault_rate, self.kinds, self.timeout_s = fault_rate, tuple(kinds), timeout_s
        self.rng = random.Random(seed)
        self.echo = dict(echo or {})
        self.injected: Counter[str] = Counter()
        self.served = 0
        self._fault_lock = threading.Lock()

    def answer(self, api: str, body: dict) -> tuple[int, bytes]:
        with self._fault_lock:
            self.served += 1
            kind = self.rng.choice(self.kinds) if self.rng.random() < self.fault_rate else None
            if kind:
                self.injected[kind] += 1
        if api in self.echo:
            with self._lock:
                self.requests.append({"api_name": api, "params": dict(body.get("params") or {}), "rows": None,
                                      "fields": body.get("fields", ""), "token": body.get("token")})
            request = json.dumps(body, ensure_ascii=False)
            if self.echo[api] == "rate":
                return 200, self._msg(40203, f"抱歉，您每分钟最多访问该接口1次 (请求: {request})")
            return 200, self._msg(-1, f"参数错误, 请求内容: {request}")
        if kind == "timeout":
            time.sleep(self.timeout_s)
        elif kind == "http500":
            return 500, b"<html>500 Internal Server Error</html>"
        elif kind == "rate":
            return 200, self._msg(40203, tushare_server.MSG_RATE.format(n=500))
        elif kind == "empty":
            return 200, json.dumps({"code": 0, "msg": "", "data": {"fields": [], "items": []}}).encode()
        elif kind == "garbage":
            return 200, b"<html>502 Bad Gateway (proxy)</html>"
        return super().answer(api, body)


def kline(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``kline argv`` in a child process (its own session, so a test can kill its group)."""
    return subprocess.run([str(BIN / "kline"), *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, start_new_session=True)


def kline_env(base: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    """A child's environment: ``base`` (e.g. the Prefect server's) without KLINE_* and
    TUSHARE_*, its own HOME (so nothing lands in the user's), and ``extra``."""
    env = {k: v for k, v in base.items() if not k.startswith(("KLINE_", "TUSHARE_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), MPLBACKEND="Agg", PYTHONHASHSEED="0", **extra)
    return env


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path ({} when it does not exist)."""
    root = Path(root)
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def parquet_files(root: Path) -> list[Path]:
    """Every Parquet file a reader of the lake can see (temporary names excluded)."""
    return [p for p in sorted(Path(root).rglob("*.parquet")) if p.is_file()]


def table_digest(paths: list[Path], drop: tuple[str, ...] = ("ingested_at",)) -> tuple[str, int]:
    """(sha256, rows) of the rows of ``paths`` read together, sorted, ``drop`` columns left out:
    the content of a layer, whatever files and row order hold it."""
    import pandas as pd

    frames = [pq.read_table(p).to_pandas() for p in paths]
    if not frames:
        return hashlib.sha256(b"").hexdigest(), 0
    df = pd.concat(frames, ignore_index=True)
    df = df.drop(columns=[c for c in drop if c in df.columns])
    df = df[sorted(df.columns)]
    df = df.sort_values(list(df.columns), kind="stable").reset_index(drop=True)
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest(), len(df)
