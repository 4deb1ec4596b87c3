"""Instrument facts from tushare (stock_basic, namechange, stk_limit) through the real client
against the loopback server, and validation judging bars by the exchange's limit prices."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers_validation import read_quarantine
from tushare_server import TOKEN

from kline.config import Settings, TushareConfig
from kline.ingestion import ingest_range
from kline.providers.base import InstrumentFactsProvider
from kline.providers.synthetic import SyntheticProvider, synthetic_facts
from kline.providers.tushare import TushareProvider
from kline.validation import summary_markdown, validate_chunk

JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))


def provider_for(server, **cfg) -> TushareProvider:
    return TushareProvider(TushareConfig(url=server.url, calls_per_minute=100_000, **cfg), token=TOKEN)


def st_symbol() -> tuple[str, dict]:
    """A market-like code whose synthetic history has an ST period."""
    codes = [f"6000{i:02d}.SH" for i in range(10, 30)]
    st = synthetic_facts(SyntheticProvider().seed, codes).st_periods.iloc[0]
    return st["symbol"], st.to_dict()


def test_facts_come_from_stock_basic_namechange_and_stk_limit(tushare_srv):
    sym, st = st_symbol()
    tushare_srv.delisted = {"000010.SZ": dt.date(2024, 6, 28)}
    p = provider_for(tushare_srv)
    assert isinstance(p, InstrumentFactsProvider)
    f = p.fetch_instrument_facts([sym, "000010.SZ", "688981.SH", "000001.SH"], *JAN)
    # every list_status is asked for: a delisted stock is found too
    assert {r["params"].get("list_status") for r in tushare_srv.calls("stock_basic")} == {"L", "D", "P"}
    listings = f.listings.set_index("symbol")
    assert listings.loc["688981.SH", "list_date"] == dt.date(2020, 7, 16)
    assert listings.loc["000010.SZ", "delist_date"] == dt.date(2024, 6, 28)
    assert "000001.SH" not in listings.index  # an index has no listing facts here
    # namechange repeats its ST rows; each period is stored once
    assert len(f.st_periods) == 1
    got = f.st_periods.iloc[0]
    assert (got["symbol"], got["start_date"], got["end_date"], got["name"], got["source"]) == (
        sym, st["start_date"], st["end_date"], st["name"], "tushare")
    # limit prices per session of the range, from the dated rules of that day
    bars = SyntheticProvider().fetch(["688981.SH"], *JAN)
    lim = f.stk_limit[f.stk_limit["symbol"] == "688981.SH"]
    assert len(lim) == len(bars)
    assert lim["up_limit"].tolist() == [round(x * 1.2, 2) for x in bars["pre_close"]]


def test_many_stocks_take_one_market_wide_namechange_query(tushare_srv):
    codes = [f"6000{i:02d}.SH" for i in range(10, 30)]
    tushare_srv.row_caps["namechange"] = 7  # the whole market's name history takes pages
    p = provider_for(tushare_srv)
    p.row_caps["namechange"] = 7
    f = p.fetch_instrument_facts(codes, *JAN)
    calls = tushare_srv.calls("namechange")
    assert len(calls) > 1 and all("ts_code" not in c["params"] for c in calls)
    want = synthetic_facts(SyntheticProvider().seed, codes).st_periods
    assert f.st_periods[["symbol", "start_date", "end_date", "name"]].equals(
        want[["symbol", "start_date", "end_date", "name"]])


def test_permission_missing_skips_the_fact_with_a_warning(tushare_srv, caplog):
    tushare_srv.denied = {"stk_limit", "namechange"}
    p = provider_for(tushare_srv)
    f = p.fetch_instrument_facts(["600519.SH"], *JAN)
    assert f.stk_limit.empty and f.st_periods.empty and len(f.listings) == 1
    assert p.last_fetch_report["instrument_facts"]["skipped"] == ["namechange", "stk_limit"]
    assert provider_for(tushare_srv, instrument_facts=False).fetch_instrument_facts(["600519.SH"], *JAN).listings.empty


@pytest.mark.usefixtures("isolated_cwd")
def test_stk_limit_overrides_the_board_rule_in_validation(tushare_srv, lake):
    bars = SyntheticProvider().fetch(["600519.SH"], *JAN)
    tight, loose = bars.iloc[5], bars.iloc[9]
    # the exchange's prices say day 5 closed above its limit-up; day 9 closes +15 %, which the
    # board rule would reject, but the exchange published a wider band that day
    tushare_srv.limit_prices = {
        ("600519.SH", tight["trade_date"]): (round(tight["close"] - 5, 2), round(tight["pre_close"] * 0.9, 2)),
        ("600519.SH", loose["trade_date"]): (round(loose["pre_close"] * 1.2, 2), round(loose["pre_close"] * 0.8, 2)),
    }
    p = provider_for(tushare_srv)
    ref = ingest_range(p, lake, ["600519.SH"], *JAN)
    assert ref["facts_rows"]["stk_limit"] == len(bars) and ref["facts_rows"]["listings"] == 1
    raw = lake.read_raw_bars(*JAN)
    i = raw.index[raw["trade_date"] == loose["trade_date"]][0]
    raw.loc[i, ["close", "high"]] = round(loose["pre_close"] * 1.15, 2)
    lake.write_raw_bars(raw, "tushare", start=JAN[0], end=JAN[1])
    settings = Settings().replace(symbols=["600519.SH"])
    out = validate_chunk(lake, {**ref, "source": "tushare"}, settings, today=dt.date(2024, 6, 3))
    q = read_quarantine(lake)
    assert q["trade_date"].tolist() == [tight["trade_date"]]
    assert "tushare stk_limit" in q["reason"].iloc[0] and "exchange limit prices" in q["reason"].iloc[0]
    assert loose["trade_date"] in set(lake.read_curated_bars()["trade_date"])
    assert out["limit_facts"] == {"listings": ["tushare"], "st_periods": [], "stk_limit": ["tushare"]}
    assert "Price limits: dated board rules with listings from tushare; stk limit from tushare." in (
        summary_markdown(out))


def test_listings_and_name_histories_are_asked_once_a_day_per_process(tushare_srv):
    p = provider_for(tushare_srv)
    for month in (1, 2, 3):  # three ingest chunks of one backfill
        p.fetch_instrument_facts(["600519.SH", "300750.SZ"], dt.date(2024, month, 1), dt.date(2024, month, 28))
    apis = [r["api_name"] for r in tushare_srv.requests]
    assert apis.count("stock_basic") == 3  # one per list_status, once
    assert apis.count("namechange") == 2  # one per code, once
    assert apis.count("stk_limit") > 3  # the daily limit prices are per chunk
