"""A real ``prefect server start`` on loopback for the e2e tests, and the process plumbing
they share. Import the ``prefect_server`` fixture into a test module to get a server of that
module's own (module scope)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the process group started with ``start_new_session``; SIGKILL it if it lingers."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # already gone (a test killed it)
        proc.wait(10)
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def running_server(home: Path, extra_env: dict[str, str] | None = None, log_level: str = "WARNING",
                   timeout: float = 120, what: str = "the Prefect server") -> Iterator[dict]:
    """A `prefect server start` on a free loopback port with ``home`` as PREFECT_HOME, until
    the block ends: ``{"url", "env", "home", "proc"}``, ``env`` pointing a child process at it
    (``proc`` leads its own process group)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": log_level, **(extra_env or {})}
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None  # died: stop waiting, the assert below says why

    try:
        wait_until(healthy, timeout, what)
        assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
        yield {"url": url, "env": env, "home": home, "proc": proc}
    finally:
        stop_group(proc, signal.SIGTERM, 20)
        log.close()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real server of the test module's own (``running_server``)."""
    with running_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server
