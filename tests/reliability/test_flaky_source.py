"""A flaky vendor costs time, never data; a refusal fails at once.

``kline backfill --provider tushare --data-only`` runs against the loopback tushare server,
once clean and once with a share of the requests failing (timeouts past the client's
timeout, HTTP 500, tushare's rate-limit message with HTTP 200, an empty answer, a proxy's
HTML page), drawn from a seeded generator. The faulty run must finish 0 with a lake whose
content equals the clean run's: raw bars, adjustment factors, limit prices, listings,
curated and quarantined rows. A permanent refusal (a token the vendor rejects, an API the
account may not call) must fail on the first answer, without retries, naming the cause.
"""

from __future__ import annotations

import pytest
from reliability.helpers import FaultyTushare, kline, kline_env, parquet_files, table_digest, trials

pytestmark = pytest.mark.e2e

SYMBOLS = "000001.SH,600519.SH,000001.SZ,300750.SZ"
RANGE = ("2024-01-01", "2024-03-29")
FAULT_RATE = 0.3


def layers(lake) -> dict[str, tuple[str, int]]:
    """Content digest and rows of each data layer of ``lake`` (ingestion times left out)."""
    out = {}
    for top in ("raw", "curated", "quarantine"):
        base = lake / top
        for table in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
            out[f"{top}/{table.name}"] = table_digest(parquet_files(table))
    return out


def _backfill(tmp_path, server_env, name: str, url: str, token: str = "test-token-0123456789abcdef",
              **extra: str):
    from tushare_server import TOKEN

    lake = tmp_path / name
    env = kline_env(server_env, tmp_path / "home", TUSHARE_TOKEN=token or TOKEN, KLINE_TUSHARE_URL=url,
                    KLINE_TUSHARE_TIMEOUT_S="1", KLINE_INGEST_RETRY_DELAY_S="0", **extra)
    p = kline(["backfill", "--provider", "tushare", "--symbols", SYMBOLS, "--start", RANGE[0], "--end", RANGE[1],
               "--lake", str(lake), "--data-only"], env, tmp_path)
    return p, lake


def test_thirty_percent_transient_faults_cost_no_data(reliability_server, tmp_path, request):
    clean = FaultyTushare().start()
    try:
        p, lake = _backfill(tmp_path, reliability_server["env"], "clean", clean.url)
        assert p.returncode == 0, p.stderr[-3000:]
    finally:
        clean.stop()
    want = layers(lake)
    assert want["raw/bars"][1] > 0 and want["curated/bars"][1] == want["raw/bars"][1]
    figures = []
    for seed in range(trials(1)):
        faulty = FaultyTushare(fault_rate=FAULT_RATE, seed=seed).start()
        try:
            p, lake = _backfill(tmp_path, reliability_server["env"], f"faulty-{seed}", faulty.url)
        finally:
            faulty.stop()
        figures.append({"seed": seed, "requests": faulty.served, "faults": dict(faulty.injected),
                        "rows": {k: v[1] for k, v in want.items()}, "exit": p.returncode})
        assert p.returncode == 0, (figures[-1], p.stderr[-3000:])
        assert sum(faulty.injected.values()) >= 0.15 * faulty.served  # the faults did happen
        assert layers(lake) == want, figures[-1]
    request.node.user_properties.append(("figures", figures))
    print(figures)


@pytest.mark.parametrize("fault, cause", [
    ("bad-token", "rejected the token in TUSHARE_TOKEN"),
    ("no-permission", "has no permission for daily"),
])
def test_a_permanent_refusal_fails_fast_without_retries(fault, cause, reliability_server, tmp_path):
    server = FaultyTushare(denied=["daily"] if fault == "no-permission" else ()).start()
    try:
        token = "a-token-the-vendor-does-not-know" if fault == "bad-token" else ""
        p, lake = _backfill(tmp_path, reliability_server["env"], fault, server.url, token=token,
                            KLINE_INGEST_RETRIES="5")
    finally:
        server.stop()
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    assert cause in out
    asked = [(r["api_name"], sorted(r["params"].items())) for r in server.requests]
    assert len(asked) == len({repr(a) for a in asked}), asked  # no request was ever repeated
    assert any(a == "daily" for a, _ in asked) or fault == "bad-token"
    assert not parquet_files(lake / "curated")
