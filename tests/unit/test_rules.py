"""The dated rules table: known dates, listing windows, ST periods, exchange limit prices."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from kline.calendar import sessions_in_range
from kline.instruments import instrument
from kline.rules import InstrumentFacts, limit_of, limit_table, st_periods_from_namechange

D = dt.date


def facts(listings=(), st=(), stk=()) -> InstrumentFacts:
    f = InstrumentFacts()
    if listings:
        f.listings = pd.DataFrame([dict(symbol=s, list_date=a, delist_date=b, source="test")
                                   for s, a, b in listings])
    if st:
        f.st_periods = pd.DataFrame([dict(symbol=s, start_date=a, end_date=b, name=n, source="test")
                                     for s, a, b, n in st])
    if stk:
        f.stk_limit = pd.DataFrame([dict(symbol=s, trade_date=d, up_limit=u, down_limit=w, source="test")
                                    for s, d, u, w in stk])
    return f


@pytest.mark.parametrize("symbol, day, up, down, where", [
    ("300750.SZ", D(2020, 8, 21), 0.10, 0.10, "chinext ±10% from 2009-10-30"),
    ("300750.SZ", D(2020, 8, 24), 0.20, 0.20, "chinext ±20% from 2020-08-24"),
    ("688981.SH", D(2019, 7, 22), 0.20, 0.20, "star ±20% from 2019-07-22"),
    ("600519.SH", D(2024, 1, 2), 0.10, 0.10, "main ±10% from 1996-12-16"),
    ("430047.BJ", D(2022, 1, 4), 0.30, 0.30, "bse ±30% from 2021-11-15"),
    ("430047.BJ", D(2021, 11, 12), None, None, "before the board's first dated rule"),
    ("000001.SH", D(2024, 1, 2), None, None, "no limit (index)"),
])
def test_board_rules_on_known_dates(symbol, day, up, down, where):
    lim = limit_of(symbol, day)
    assert (lim.up, lim.down) == (up, down)
    assert where in lim.rule


def test_main_board_st_limit_changes_on_2026_07_06():
    f = facts(st=[("600010.SH", D(2025, 5, 6), None, "*ST包钢")])
    before, after = limit_of("600010.SH", D(2026, 7, 3), f), limit_of("600010.SH", D(2026, 7, 6), f)
    assert (before.up, after.up) == (0.05, 0.10)
    assert "main ST ±5% from 1998-04-22" in before.rule and "*ST包钢" in before.rule
    assert "main ST ±10% from 2026-07-06" in after.rule
    # outside the period the board rule for non-ST stocks applies
    assert limit_of("600010.SH", D(2025, 5, 5), f).rule.startswith("main ±10%")


def test_chinext_st_follows_the_board_after_the_reform():
    f = facts(st=[("300001.SZ", D(2019, 1, 2), D(2021, 12, 31), "ST特锐")])
    assert limit_of("300001.SZ", D(2020, 8, 21), f).up == 0.05
    assert limit_of("300001.SZ", D(2020, 8, 24), f).up == 0.20
    assert limit_of("300001.SZ", D(2022, 1, 4), f).up == 0.20  # period over (end inclusive)


def test_listing_days_one_to_five_have_no_limit_and_day_six_has_the_board_rule():
    listed = D(2021, 3, 1)
    f = facts(listings=[("301001.SZ", listed, None)])
    days = sessions_in_range(listed, D(2021, 3, 31))
    t = limit_table("301001.SZ", days[:7], f)
    for i in range(5):
        assert t.at(i).up is None and t.at(i).down is None
        assert t.at(i).rule.startswith(f"listing day {i + 1}: no limit")
    assert t.at(5).up == 0.20 and "board rule" in t.at(5).rule
    # the session before listing is judged by the board rule (no special window)
    assert limit_of("301001.SZ", D(2021, 2, 26), f).up == 0.20


def test_main_board_listing_rules_by_era():
    f = facts(listings=[("603001.SH", D(2019, 4, 1), None), ("603002.SH", D(2023, 4, 10), None),
                        ("600002.SH", D(2005, 3, 1), None)])
    first = limit_of("603001.SH", D(2019, 4, 1), f)
    assert (first.up, first.down) == (0.44, 0.36) and "issue price" in first.rule
    assert limit_of("603001.SH", D(2019, 4, 2), f).up == 0.10  # day 2: board rule
    reg = limit_table("603002.SH", sessions_in_range(D(2023, 4, 10), D(2023, 4, 30))[:6], f)
    assert [reg.at(i).up for i in range(6)] == [None] * 5 + [0.10]
    assert limit_of("600002.SH", D(2005, 3, 1), f).up is None


def test_star_listing_on_opening_day_has_no_limit():
    f = facts(listings=[("688001.SH", D(2019, 7, 22), None)])
    assert limit_of("688001.SH", D(2019, 7, 22), f).up is None
    assert limit_of("688001.SH", D(2019, 7, 29), f).up == 0.20  # sixth session


def test_exchange_limit_prices_override_the_board_rule():
    f = facts(stk=[("600519.SH", D(2024, 1, 2), 1900.0, 1500.0)])
    lim = limit_of("600519.SH", D(2024, 1, 2), f)
    assert lim.prices(1700.0) == (1500.0, 1900.0)
    assert "stk_limit" in lim.rule
    other = limit_of("600519.SH", D(2024, 1, 3), f)
    assert other.prices(1700.0) == (1530.0, 1870.0) and "board rule" in other.rule


def test_namechange_rows_become_de_duplicated_st_periods():
    names = pd.DataFrame({
        "symbol": ["600010.SH"] * 4,
        "name": ["包钢股份", "*ST包钢", "*ST包钢", "包钢股份"],
        "start_date": ["20010309", "20250506", "20250506", "20260101"],
        "end_date": [None, "20251231", "20251231", None],
    })
    out = st_periods_from_namechange(names, "tushare")
    assert len(out) == 1
    r = out.iloc[0]
    assert (r["start_date"], r["end_date"], r["name"], r["source"]) == (D(2025, 5, 6), D(2025, 12, 31), "*ST包钢", "tushare")


def test_foreign_symbols_have_no_limit():
    lim = limit_of("SPX", D(2024, 1, 2), inst=instrument("SPX", calendar="XNYS"))
    assert lim.up is None and lim.prices(100.0) == (float("-inf"), float("inf"))


def test_fact_sources_are_described():
    from kline.rules import describe_limit_sources

    assert describe_limit_sources({"listings": [], "st_periods": [], "stk_limit": []}).startswith(
        "dated board rules only")
    assert describe_limit_sources({"listings": ["tushare"], "st_periods": ["tushare"], "stk_limit": []}) == (
        "dated board rules with listings from tushare; st periods from tushare")
