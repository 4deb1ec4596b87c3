"""The tushare provider, driven through the real ``tushare`` client against a loopback server."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tushare_server
from tushare_server import TOKEN

from kline.calendar import sessions_in_range
from kline.config import TushareConfig, load_settings
from kline.ingestion import ingest_range
from kline.lake import Lake
from kline.providers import PROVIDERS, make_provider
from kline.providers.base import (
    AdjFactorProvider,
    FatalProviderError,
    Provider,
    ProviderConfigError,
    TransientProviderError,
    is_transient,
)
from kline.providers.synthetic import SyntheticProvider
from kline.providers.tushare import RateLimiter, TushareProvider, resolve_token

SYMBOLS = ["000001.SH", "000300.SH", "600519.SH", "000001.SZ", "300750.SZ", "688981.SH"]
JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))


def provider_for(server, token: str = TOKEN, **cfg) -> TushareProvider:
    config = TushareConfig(url=server.url, calls_per_minute=cfg.pop("calls_per_minute", 100_000), **cfg)
    return TushareProvider(config, token=token)


def compare_to_synthetic(got: pd.DataFrame, symbols, start, end) -> None:
    want = SyntheticProvider().fetch(symbols, start, end).sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert list(got.dtypes) == list(want.dtypes)
    assert got[["symbol", "trade_date"]].equals(want[["symbol", "trade_date"]])
    for c in ("open", "high", "low", "close", "pre_close"):
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy())
    # volume arrived in lots and amount in thousands: back in shares and CNY
    np.testing.assert_allclose(got["volume"], want["volume"], rtol=1e-12)
    np.testing.assert_allclose(got["amount"], want["amount"], rtol=1e-12)
    assert (got["source"] == "tushare").all()


def test_fetch_returns_canonical_bars_in_shares_and_cny(tushare_srv):
    p = provider_for(tushare_srv)
    assert isinstance(p, Provider) and isinstance(p, AdjFactorProvider)
    bars = p.fetch(SYMBOLS, *JAN)
    compare_to_synthetic(bars, SYMBOLS, *JAN)
    assert set(bars["symbol"]) == set(SYMBOLS)


def test_index_and_stock_with_the_same_code_come_from_different_apis(tushare_srv):
    p = provider_for(tushare_srv)
    bars = p.fetch(["000001.SH", "000001.SZ"], *JAN)
    index_codes = {r["params"]["ts_code"] for r in tushare_srv.calls("index_daily")}
    daily_codes = {r["params"]["ts_code"] for r in tushare_srv.calls("daily")}
    assert index_codes == {"000001.SH"} and daily_codes == {"000001.SZ"}
    sse = bars[bars["symbol"] == "000001.SH"]["close"].median()
    pingan = bars[bars["symbol"] == "000001.SZ"]["close"].median()
    assert sse > 1000 and pingan < 100  # index points vs a bank share price


def test_long_range_is_paged_under_the_row_cap(tushare_srv):
    start, end = dt.date(2000, 1, 1), dt.date(2024, 12, 31)
    p = provider_for(tushare_srv)
    bars = p.fetch(["600519.SH", "000001.SZ"], start, end)
    daily = tushare_srv.calls("daily")
    assert len(daily) >= 4  # ~6000 sessions per stock: two windows each
    assert all(r["rows"] <= 6000 for r in daily)
    compare_to_synthetic(bars, ["600519.SH", "000001.SZ"], start, end)


def test_a_full_page_is_continued_with_offset(tushare_srv):
    tushare_srv.row_caps["daily"] = 20
    p = provider_for(tushare_srv, by_date_min_symbols=30, max_codes_per_call=5)
    p.row_caps["daily"] = 20
    market = [s for s in tushare_server.MARKET]
    start, end = dt.date(2024, 1, 2), dt.date(2024, 1, 4)
    bars = p.fetch(market, start, end)
    offsets = [r["params"].get("offset") for r in tushare_srv.calls("daily")]
    assert 20 in offsets and 40 in offsets
    compare_to_synthetic(bars, market, start, end)


def test_many_stocks_over_few_days_are_asked_per_trade_date(tushare_srv):
    market = list(tushare_server.MARKET)
    start, end = dt.date(2024, 3, 4), dt.date(2024, 3, 8)
    p = provider_for(tushare_srv, by_date_min_symbols=30, max_codes_per_call=5)
    bars = p.fetch(market, start, end)
    daily = tushare_srv.calls("daily")
    assert p.last_fetch_report["mode"]["daily"] == "by_date"
    assert [r["params"]["trade_date"] for r in daily] == [d.strftime("%Y%m%d") for d in sessions_in_range(start, end)]
    compare_to_synthetic(bars, market, start, end)


def test_below_the_threshold_stocks_are_asked_per_symbol(tushare_srv):
    stocks = list(tushare_server.MARKET)[:10]
    p = provider_for(tushare_srv, by_date_min_symbols=30, max_codes_per_call=5)
    p.fetch(stocks, dt.date(2024, 3, 4), dt.date(2024, 3, 5))
    assert p.last_fetch_report["mode"]["daily"] == "by_symbol"
    assert all("ts_code" in r["params"] for r in tushare_srv.calls("daily"))


def test_adj_factor_for_stocks_only(tushare_srv):
    p = provider_for(tushare_srv)
    adj = p.fetch_adj_factor(SYMBOLS, dt.date(2024, 6, 24), dt.date(2024, 7, 5))
    assert set(adj["symbol"]) == {"600519.SH", "000001.SZ", "300750.SZ", "688981.SH"}
    assert list(adj.columns) == ["symbol", "trade_date", "adj_factor"]
    moutai = adj[adj["symbol"] == "600519.SH"].set_index("trade_date")["adj_factor"]
    assert moutai[dt.date(2024, 6, 28)] == pytest.approx(2.2) and moutai[dt.date(2024, 7, 1)] == pytest.approx(2.22)
    assert not any(r["params"].get("ts_code", "").endswith(".SH") and r["params"]["ts_code"].startswith("000")
                   for r in tushare_srv.calls("adj_factor"))


def test_bad_token_is_fatal_and_the_token_never_leaks(tushare_srv):
    secret = "sekret-token-must-not-leak-42"
    p = provider_for(tushare_srv, token=secret)
    assert secret not in repr(p) and secret not in str(p)
    with pytest.raises(FatalProviderError) as info:
        p.fetch(["600519.SH"], *JAN)
    msg = str(info.value)
    assert "TUSHARE_TOKEN" in msg and "token" in msg and secret not in msg
    assert not is_transient(info.value)
    assert tushare_srv.requests[0]["token"] == secret  # it was sent, only on the wire


def test_missing_permission_is_fatal_and_says_what_to_do(tushare_srv):
    tushare_srv.denied = {"daily"}
    with pytest.raises(FatalProviderError, match="no permission for daily.*points"):
        provider_for(tushare_srv).fetch(["600519.SH"], *JAN)


def test_adj_factor_without_permission_is_skipped_with_a_warning(tushare_srv, caplog):
    tushare_srv.denied = {"adj_factor"}
    p = provider_for(tushare_srv)
    with caplog.at_level(logging.WARNING):
        adj = p.fetch_adj_factor(["600519.SH"], *JAN)
    assert adj.empty and "permission" in caplog.text


def test_trade_cal_without_permission_falls_back_to_xshg(tushare_srv):
    tushare_srv.denied = {"trade_cal"}
    bars = provider_for(tushare_srv).fetch(["000001.SH"], *JAN)
    compare_to_synthetic(bars, ["000001.SH"], *JAN)


@pytest.mark.parametrize("fault", ["rate", "http500", "garbage"])
def test_rate_limit_and_server_errors_are_transient(tushare_srv, fault):
    tushare_srv.faults.extend(["none", fault])  # trade_cal passes, the bars call fails
    with pytest.raises(TransientProviderError) as info:
        provider_for(tushare_srv).fetch(["600519.SH"], *JAN)
    assert is_transient(info.value)
    if fault == "rate":
        assert "rate limit" in str(info.value)


def test_server_rate_limit_message_is_transient(tushare_srv):
    tushare_srv.rate_limit_per_minute = 2
    p = provider_for(tushare_srv)
    with pytest.raises(TransientProviderError, match="每分钟最多访问"):
        p.fetch(["000001.SH", "000300.SH", "600519.SH"], *JAN)  # trade_cal + 3 calls


def test_unreachable_server_is_transient(tushare_srv):
    p = provider_for(tushare_srv, timeout_s=2.0)
    tushare_srv.stop()
    with pytest.raises(TransientProviderError, match="network error"):
        p.fetch(["600519.SH"], *JAN)


def test_client_side_rate_limiter_spaces_calls():
    clock = {"t": 0.0}
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock["t"] += s

    lim = RateLimiter(3, 60.0, clock=lambda: clock["t"], sleep=sleep)
    for _ in range(7):
        lim.acquire()
    assert sleeps == [60.0, 60.0] and lim.waited_s == 120.0


def test_provider_waits_for_its_rate_limit(tushare_srv):
    clock = {"t": 0.0}
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock["t"] += s

    cfg = TushareConfig(url=tushare_srv.url, calls_per_minute=2)
    p = TushareProvider(cfg, token=TOKEN, sleep=sleep, clock=lambda: clock["t"])
    p.fetch(["000001.SH", "000300.SH", "600519.SH"], *JAN)  # 4 calls at 2 per minute
    assert len(tushare_srv.requests) == 4 and sleeps == [60.0]


def test_fresh_open_session_without_rows_is_transient(tushare_srv):
    day = dt.date(2024, 1, 31)
    tushare_srv.unpublished = {day}
    p = provider_for(tushare_srv)
    p._today = lambda: day  # the run happens on that day, before tushare publishes it
    with pytest.raises(TransientProviderError, match="2024-01-31.*not published yet"):
        p.fetch(["000001.SH", "600519.SH"], *JAN)


def test_old_empty_sessions_are_reported_not_raised(tushare_srv, caplog):
    tushare_srv.listed = {"688981.SH": dt.date(2024, 1, 15)}
    p = provider_for(tushare_srv)
    with caplog.at_level(logging.WARNING):
        bars = p.fetch(["688981.SH"], *JAN)
    assert bars["trade_date"].min() == dt.date(2024, 1, 15)
    assert p.last_fetch_report["empty_sessions"] == [d.isoformat() for d in sessions_in_range(JAN[0], dt.date(2024, 1, 12))]
    assert "no rows for any requested symbol" in caplog.text


def test_trade_cal_disagreement_is_reported(tushare_srv):
    odd = dt.date(2024, 1, 10)
    tushare_srv.trade_cal_closed = {odd}
    p = provider_for(tushare_srv)
    bars = p.fetch(["000001.SH"], *JAN)
    assert p.last_fetch_report["calendar_mismatch"] == {"only_trade_cal": [], "only_xshg": ["2024-01-10"]}
    assert len(bars) == len(sessions_in_range(*JAN))  # the server still has that bar


def test_missing_token_names_the_variable():
    with pytest.raises(ProviderConfigError, match="TUSHARE_TOKEN"):
        resolve_token(TushareConfig(), environ={})
    cfg = TushareConfig(secret_block="tushare-token")
    assert resolve_token(cfg, lambda name: f"from-{name}", environ={}) == "from-tushare-token"
    with pytest.raises(ProviderConfigError, match="TUSHARE_TOKEN.*tushare-token"):
        resolve_token(cfg, None, environ={})


def test_make_provider_reads_url_and_token_from_the_environment(tushare_srv, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray kline.toml
    monkeypatch.delenv("TUSHARE_TOKEN", raising=False)
    env = {"KLINE_PROVIDER": "tushare", "KLINE_TUSHARE_URL": tushare_srv.url}
    settings = load_settings(environ=env)
    with pytest.raises(ProviderConfigError, match="TUSHARE_TOKEN"):
        make_provider(settings)
    monkeypatch.setenv("TUSHARE_TOKEN", TOKEN)
    p = make_provider(settings)
    assert p.name == "tushare" and TOKEN not in repr(p)
    p.fetch(["000300.SH"], *JAN)
    assert tushare_srv.calls("index_daily")
    loader = PROVIDERS["tushare"](settings.replace(tushare={"token_env": "KLINE_TEST_NO_SUCH_VAR", "secret_block": "blk"}),
                                  token_loader=lambda _: TOKEN)
    assert loader.fetch(["000300.SH"], *JAN).shape[0] > 0


def test_ingest_fills_the_raw_layer_retrying_transient_errors_and_is_idempotent(tushare_srv, tmp_path):
    tushare_srv.http500_every = 8  # an HTTP 500 now and then (hits the second import)
    secret = TOKEN
    lake = Lake(tmp_path / "lake")
    # bars only: one call in 8 fails, so a chunk must take fewer calls than that to succeed
    # (instrument facts add a dozen; tests/unit/providers/test_tushare_facts.py covers them)
    p = provider_for(tushare_srv, token=secret, instrument_facts=False)
    start, end = dt.date(2024, 2, 1), dt.date(2024, 3, 15)

    def ingest():
        for _attempt in range(6):  # what the ingest task's retries do, without the pause
            try:
                return ingest_range(p, lake, SYMBOLS, start, end)
            except TransientProviderError:
                continue
        raise AssertionError("never succeeded")

    first = ingest()
    raw = lake.read_raw_bars(start, end, source="tushare")
    compare_to_synthetic(raw, SYMBOLS, start, end)
    adj = lake.read_adj_factor()
    assert set(adj["symbol"]) == {"600519.SH", "000001.SZ", "300750.SZ", "688981.SH"}
    second = ingest()
    assert second["content_hash"] == first["content_hash"]
    again = lake.read_raw_bars(start, end, source="tushare")
    assert again.drop(columns="ingested_at").equals(raw.drop(columns="ingested_at"))
    assert any(r for r in tushare_srv.requests if r["rows"] is None)  # some calls did fail
    for f in Path(lake.root).rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_the_domain_provider_modules_do_not_import_prefect():
    code = ("import sys, kline.providers.tushare, kline.providers.files; "
            "assert 'prefect' not in sys.modules, 'prefect imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


def test_serve_helper_gives_a_url_and_a_stop():
    url, stop = tushare_server.serve()
    try:
        p = TushareProvider(TushareConfig(url=url, calls_per_minute=1000), token=TOKEN)
        assert len(p.fetch(["000001.SH"], *JAN)) == len(sessions_in_range(*JAN))
    finally:
        stop()
