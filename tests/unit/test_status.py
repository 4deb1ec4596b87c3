import datetime as dt

from kline.config import Settings
from kline.ingestion import ingest_range
from kline.providers.synthetic import SyntheticProvider
from kline.status import lake_status

JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))


def test_status_counts_raw_until_something_is_curated(lake):
    ingest_range(SyntheticProvider(), lake, ["000001.SH", "600519.SH"], *JAN)
    rows = {r["symbol"]: r for r in lake_status(lake, Settings())}
    assert rows["000001.SH"]["rows"] == 22 and rows["000001.SH"]["missing"] == 0

    curated = lake.read_raw_bars(*JAN, symbols=["000001.SH"])
    lake.write_curated_bars(curated[curated["trade_date"] != dt.date(2024, 1, 10)])
    rows = {r["symbol"]: r for r in lake_status(lake, Settings())}
    assert set(rows) == {"000001.SH"}  # validated bars are what the lake serves downstream
    assert (rows["000001.SH"]["rows"], rows["000001.SH"]["missing"]) == (21, 1)
    assert rows["000001.SH"]["last_ingested"] != ""


def _reference_status(keys, settings):
    """The per-symbol figures computed the slow, obvious way (one calendar lookup per symbol)."""
    import numpy as np

    from kline.calendar import sessions_array
    from kline.instruments import SymbolError
    from kline.validation import instrument_for

    out = {}
    for sym, g in keys.drop_duplicates().groupby("symbol"):
        dates = sorted(g["trade_date"])
        try:
            expected = sessions_array(dates[0], dates[-1], instrument_for(sym, settings).calendar)
            missing = len(np.setdiff1d(expected, np.array(dates, dtype="datetime64[D]")))
        except SymbolError:
            missing = None
        out[sym] = (dates[0].isoformat(), dates[-1].isoformat(), len(dates), missing)
    return out


def test_status_from_raw_month_and_day_files_with_two_calendars_duplicates_and_a_foreign_symbol(lake):
    import pandas as pd

    feb = (dt.date(2024, 2, 1), dt.date(2024, 3, 29))
    bars = SyntheticProvider().fetch(["000001.SH", "600519.SH"], *feb)
    bars = bars[bars["trade_date"] != dt.date(2024, 3, 5)]  # one gap
    nyse = bars[bars["symbol"] == "000001.SH"].assign(symbol="IXIC")
    nyse = nyse[pd.to_datetime(nyse["trade_date"]).dt.day_of_week < 5]
    lonely = nyse.assign(symbol="FOREIGN")  # no calendar configured for it: missing unknown
    raw = pd.concat([bars, nyse, lonely, bars.iloc[:3]])  # raw may repeat a key
    lake.write_raw_bars(raw, "synthetic", start=feb[0], end=feb[1], layout="month")
    day = dt.date(2024, 4, 1)
    lake.write_raw_bars(SyntheticProvider().fetch(["600519.SH"], day, day), "synthetic", start=day, end=day)
    settings = Settings(file={"calendars": {"IXIC": "XNYS"}})
    got = {r["symbol"]: (r["first"], r["last"], r["rows"], r["missing"]) for r in lake_status(lake, settings)}
    want = _reference_status(lake.read_raw_bars(columns=["symbol", "trade_date"]), settings)
    assert got == want
    assert got["000001.SH"][3] == 1 and got["FOREIGN"][3] is None and got["IXIC"][3] > 0  # US holidays differ
    assert got["600519.SH"][1] == "2024-04-01"
