"""Fixtures for provider tests: a loopback tushare server per test, providers pointed at it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tushare_server  # noqa: E402


@pytest.fixture
def tushare_srv():
    """A fresh loopback tushare server (free port), stopped after the test."""
    server = tushare_server.start()
    yield server
    server.stop()
