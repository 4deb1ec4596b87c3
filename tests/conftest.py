"""Fixtures shared by every test layer."""

from __future__ import annotations

import datetime as dt
import os

import pytest

# Keep every test off the user's config and lake, whatever the environment says
# (KLINE_RELIABILITY_TRIALS sizes tests/reliability and is no setting).
for _var in [v for v in os.environ if v.startswith("KLINE_") and v != "KLINE_RELIABILITY_TRIALS"]:
    del os.environ[_var]
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _calendar_layers_reset():
    """Each test starts and ends on the library calendar: runs set process-wide layers."""
    yield
    from kline import calendar

    if calendar._layers.get():
        calendar.configure({})


@pytest.fixture
def lake_root(tmp_path) -> str:
    """A fresh, empty lake root."""
    return str(tmp_path / "lake")


@pytest.fixture
def lake(lake_root):
    from kline.lake import Lake

    return Lake(lake_root)


@pytest.fixture
def isolated_cwd(tmp_path, monkeypatch):
    """Run in an empty directory, so no ./kline.toml or ./data_lake is picked up."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


# A fixed, ordinary stretch of XSHG sessions used across tests.
JAN_2024 = (dt.date(2024, 1, 2), dt.date(2024, 1, 31))


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (flow tests and tasks that publish
    artifacts). Never nested; started only when a test asks for it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
