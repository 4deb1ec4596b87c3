"""One real ``prefect server`` on loopback for the reliability tests (session scope: each
test's child ``kline`` processes talk to it instead of starting a temporary server each)."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest
from helpers_server import BIN, free_port, stop_group, wait_until


@pytest.fixture(scope="session")
def reliability_server(tmp_path_factory):
    """``{"url", "env", "home"}`` of a `prefect server start` with its own PREFECT_HOME
    (its SQLite database lies in ``home``)."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "INFO"}
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 120, "the Prefect server")
        yield {"url": url, "env": env, "home": home}
    finally:
        stop_group(proc, signal.SIGTERM, 20)
        log.close()
