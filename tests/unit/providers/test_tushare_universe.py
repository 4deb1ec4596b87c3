"""Point-in-time universes from the real tushare client against the loopback server:
CSI 300 from ``index_weight`` snapshots, the whole market from ``stock_basic``."""

from __future__ import annotations

import datetime as dt

from tushare_server import TOKEN

from kline.config import Settings, TushareConfig
from kline.providers.base import UniverseProvider
from kline.providers.synthetic import synthetic_universe
from kline.providers.tushare import TushareProvider
from kline.universe import resolve_universe

JAN, JUL = dt.date(2023, 1, 31), dt.date(2023, 7, 31)
OLD, NEW, STAYS = "600010.SH", "600011.SH", "600519.SH"


def provider_for(server) -> TushareProvider:
    return TushareProvider(TushareConfig(url=server.url, calls_per_minute=100_000), token=TOKEN)


def test_csi300_is_the_membership_in_force_on_each_day(tushare_srv):
    tushare_srv.index_members = {"399300.SZ": {JAN: [OLD, STAYS], JUL: [NEW, STAYS]}}
    p = provider_for(tushare_srv)
    assert isinstance(p, UniverseProvider)
    s = Settings(provider="tushare", universe="csi300")
    assert resolve_universe(s, p, dt.date(2023, 3, 15)) == [OLD, STAYS]  # the January snapshot
    assert resolve_universe(s, p, dt.date(2023, 8, 1)) == [NEW, STAYS]
    # a span across the change keeps the name that left: no survivorship bias
    assert resolve_universe(s, p, dt.date(2023, 6, 1), dt.date(2023, 8, 31)) == [OLD, NEW, STAYS]
    call = tushare_srv.calls("index_weight")[-1]
    assert call["params"]["index_code"] == "399300.SZ" and call["params"]["end_date"] == "20230831"


def test_csi300_by_default_follows_listings(tushare_srv):
    p = provider_for(tushare_srv)
    s = Settings(provider="tushare", universe="csi300")
    early, late = resolve_universe(s, p, dt.date(2012, 6, 1)), resolve_universe(s, p, dt.date(2025, 6, 3))
    assert set(early) < set(late) <= set(synthetic_universe(300)) and len(late) > 250


def test_all_is_every_stock_listed_and_not_yet_delisted(tushare_srv):
    tushare_srv.market = ("600010.SH", "600011.SH", "300750.SZ", "688981.SH")
    tushare_srv.delisted = {"600010.SH": dt.date(2020, 5, 6)}
    tushare_srv.listed = {"688981.SH": dt.date(2020, 7, 16)}
    p = provider_for(tushare_srv)
    s = Settings(provider="tushare", universe="all")
    assert resolve_universe(s, p, dt.date(2020, 1, 2)) == ["300750.SZ", "600010.SH", "600011.SH"]
    assert resolve_universe(s, p, dt.date(2021, 1, 4)) == ["300750.SZ", "600011.SH", "688981.SH"]
    assert resolve_universe(s, p, dt.date(2020, 1, 2), dt.date(2021, 1, 4)) == [
        "300750.SZ", "600010.SH", "600011.SH", "688981.SH"]
    assert {c["params"].get("list_status") for c in tushare_srv.calls("stock_basic")} == {"L", "D", "P"}
