"""One real ``prefect server`` on loopback for the reliability tests (session scope: each
test's child ``kline`` processes talk to it instead of starting a temporary server each)."""

from __future__ import annotations

import pytest
from helpers_server import running_server


@pytest.fixture(scope="session")
def reliability_server(tmp_path_factory):
    """``{"url", "env", "home"}`` of a `prefect server start` with its own PREFECT_HOME
    (its SQLite database lies in ``home``), logging at INFO for the secrets scan."""
    with running_server(tmp_path_factory.mktemp("prefect-home"), log_level="INFO") as server:
        yield server
