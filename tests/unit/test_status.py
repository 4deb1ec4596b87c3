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
