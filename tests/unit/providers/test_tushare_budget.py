"""The tushare rate limiter's shared-budget side: the token bucket arithmetic and the gate
every call passes (the Prefect limit itself is exercised in tests/e2e/test_operations.py)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from tushare_server import TOKEN

from kline.config import TushareConfig
from kline.providers.base import ProviderConfigError
from kline.providers.tushare import RateLimiter, TushareProvider


@pytest.mark.parametrize("calls", [2, 9, 10, 60, 150, 200, 500, 1999])
@pytest.mark.parametrize("period", [60.0, 15.0])
def test_the_shared_bucket_never_passes_more_than_the_budget_in_a_window(calls, period):
    limit, decay, k = RateLimiter.shared_bucket(calls, period)
    burst, refill = limit / k, decay / k  # in calls and calls per second
    assert burst >= 1 and refill > 0 and limit % k == 0
    assert math.isclose(burst + refill * period, calls)  # the most any window can hold
    assert refill * period >= 0.5 * calls  # and most of it is steady throughput, not burst


def test_a_token_bucket_with_the_server_rules_keeps_within_the_budget():
    """The server's rules, replayed: whole slots decay since the last successful acquisition
    (fractions are dropped then), an acquisition needs ``active + k <= limit``."""
    calls, period = 60, 60.0
    limit, decay, k = RateLimiter.shared_bucket(calls, period)
    active, updated, granted, t = 0, 0.0, [], 0.0
    while t < 300:
        now_active = max(0, active - math.floor(decay * (t - updated)))
        if now_active + k <= limit:
            active, updated = now_active + k, t
            granted.append(t)
        t = round(t + 0.05, 2)  # greedy callers asking every 50 ms
    busiest = max(sum(1 for g in granted if s <= g < s + period) for s in granted)
    assert busiest <= calls
    assert len(granted) >= 0.85 * calls * 300 / period


def test_a_budget_below_two_calls_is_refused():
    with pytest.raises(ProviderConfigError, match="calls_per_minute >= 2"):
        RateLimiter.shared_bucket(1)


def test_every_call_passes_the_shared_gate_after_the_local_window(monkeypatch):
    seen: list[tuple[int, int]] = []
    clock = {"t": 0.0}

    def sleep(s: float) -> None:
        clock["t"] += s

    lim = RateLimiter(2, 60.0, clock=lambda: clock["t"], sleep=sleep)
    monkeypatch.setattr(RateLimiter, "shared_gate",
                        lambda limiter: seen.append((len(limiter._stamps), limiter.calls)) or 1.5)
    for _ in range(5):
        lim.acquire()
    assert len(seen) == 5 and all(n >= 1 for n, _ in seen)  # admitted locally first
    assert clock["t"] == 120.0  # the local window still applies
    assert lim.waited_s == 120.0 + 5 * 1.5  # and the time spent at the gate is counted


def test_the_provider_passes_the_gate_once_per_http_call(tushare_srv, monkeypatch):
    gate_calls: list[int] = []
    monkeypatch.setattr(RateLimiter, "shared_gate", lambda limiter: gate_calls.append(1) or 0.0)
    p = TushareProvider(TushareConfig(url=tushare_srv.url, calls_per_minute=100_000), token=TOKEN)
    p.fetch(["600519.SH", "000001.SH"], dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    assert p.calls > 0 and len(gate_calls) == p.calls
