"""kline.lake.reference: day files of factors and limit prices, point-in-time instrument facts."""

import datetime as dt

import pandas as pd

D1, D2, D3 = dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)


def test_instrument_facts_are_point_in_time(lake):
    lake.reference.write("listings", pd.DataFrame([{"symbol": "600001.SH", "list_date": dt.date(2001, 1, 8),
                                                    "delist_date": dt.date(2024, 6, 28)}]), "test", ["600001.SH"])
    lake.reference.write("st_periods", pd.DataFrame([{"symbol": "600001.SH", "start_date": dt.date(2024, 5, 6),
                                                      "end_date": dt.date(2024, 6, 28), "name": "*ST"}]),
                         "test", ["600001.SH"])
    march = lake.read_instrument_facts(["600001.SH"], end=dt.date(2024, 3, 29))
    assert march.listing("600001.SH")[1] is None and march.st_periods.empty  # neither known yet
    june = lake.read_instrument_facts(["600001.SH"], end=dt.date(2024, 6, 3))
    assert june.listing("600001.SH")[1] is None
    assert len(june.st_periods) == 1 and pd.isna(june.st_periods["end_date"].iloc[0])
    july = lake.read_instrument_facts(["600001.SH"], end=dt.date(2024, 7, 1))
    assert july.listing("600001.SH")[1] == dt.date(2024, 6, 28)


def test_day_files_newest_fetch_wins_per_symbol_and_reads_open_only_the_range(lake):
    factors = pd.DataFrame({"symbol": ["600519.SH", "000001.SZ"] * 3, "trade_date": [D1, D1, D2, D2, D3, D3],
                            "adj_factor": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]})
    assert lake.reference.write_adj_factor(factors, "a").partitions == [
        "trade_date=2024-01-02", "trade_date=2024-01-03", "trade_date=2024-01-04"]
    again = factors[factors["symbol"] == "600519.SH"].assign(adj_factor=1.5)
    lake.reference.write_adj_factor(again, "a")
    out = lake.read_adj_factor(start=D2, end=D3)
    assert sorted(set(out["trade_date"])) == [D2, D3]
    assert out.set_index("symbol")["adj_factor"].to_dict() == {"600519.SH": 1.5, "000001.SZ": 2.0}
    assert list(lake.read_adj_factor(["000001.SZ"])["adj_factor"]) == [2.0, 2.0, 2.0]
    limits = factors.rename(columns={"adj_factor": "up_limit"}).assign(down_limit=0.5)
    lake.reference.write_stk_limit(limits, "a")
    lake.reference.write_stk_limit(limits.assign(up_limit=9.0), "b")
    assert set(lake.reference.read_stk_limit(start=D1, end=D1, source="b")["up_limit"]) == {9.0}
    assert len(lake.reference.read_stk_limit(["600519.SH"], D1, D3)) == 6  # both sources
