"""One tushare budget for every process on a Prefect server: a global concurrency limit used
as a rate limit, passed by every call of the tushare provider's rate limiter.

``kline setup`` creates the limit ``kline-tushare`` from ``tushare.calls_per_minute``
(``RateLimiter.shared_bucket``). Where it does not exist (no server, or a server nobody ran
``kline setup`` on), only the in-process limiter applies; where it exists it is acquired
with ``strict=True``, so a limit deleted mid-run fails the call instead of going unlimited.
"""

from __future__ import annotations

import logging
import threading
import time

from kline.providers.tushare import RateLimiter

log = logging.getLogger(__name__)

TUSHARE_LIMIT = "kline-tushare"
RECHECK_S = 60.0  # how long "no shared limit on this server" is believed

_known: dict[str, tuple[bool, float]] = {}  # api url -> (exists, checked at)
_lock = threading.Lock()


def _api_url() -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url or "")


def shared_limit_exists() -> bool:
    """Whether the server this process talks to has the ``kline-tushare`` limit (cached)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    url = _api_url()
    with _lock:
        hit = _known.get(url)
        if hit and (hit[0] or time.monotonic() - hit[1] < RECHECK_S):
            return hit[0]
    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(TUSHARE_LIMIT)
        exists = True
    except ObjectNotFound:
        exists = False
        log.warning("no %r limit on the Prefect server: the tushare budget is this process's only "
                    "(run `kline setup` to share it)", TUSHARE_LIMIT)
    with _lock:
        _known[url] = (exists, time.monotonic())
    return exists


def prefect_gate(limiter: RateLimiter) -> float:
    """Take one call's slots of the shared budget, waiting as long as it takes; the seconds
    waited. No configured server (a temporary one per command) or no limit on it: 0, at once."""
    if not _api_url() or not shared_limit_exists():
        return 0.0
    from prefect.concurrency.sync import rate_limit

    t0 = time.monotonic()
    rate_limit(TUSHARE_LIMIT, occupy=limiter.SLOTS_PER_CALL, strict=True)
    return time.monotonic() - t0


def install() -> None:
    """Make every tushare rate limiter in this process also pass the shared budget."""
    RateLimiter.shared_gate = prefect_gate
