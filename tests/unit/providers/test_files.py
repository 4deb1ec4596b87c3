"""Vendor-file import: each layout written into tmp_path, read back as canonical bars."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest

from kline.calendar import sessions_in_range
from kline.config import Settings
from kline.ingestion import ingest_range
from kline.lake import Lake
from kline.providers import make_provider
from kline.providers.base import FatalProviderError, ProviderConfigError
from kline.providers.files import FileProvider
from kline.providers.synthetic import SyntheticProvider

START, END = dt.date(2024, 1, 1), dt.date(2024, 3, 31)
FILE_START = dt.date(2023, 12, 1)  # files hold more history than the requested range


def synthetic(symbol: str, start=FILE_START, end=END) -> pd.DataFrame:
    return SyntheticProvider().fetch([symbol], start, end)


def write_tushare(path, symbol):
    b = synthetic(symbol).iloc[::-1]  # newest first, lots and thousands
    pd.DataFrame({"ts_code": symbol, "trade_date": [d.strftime("%Y%m%d") for d in b["trade_date"]],
                  "open": b["open"], "high": b["high"], "low": b["low"], "close": b["close"],
                  "pre_close": b["pre_close"], "change": b["close"] - b["pre_close"], "pct_chg": 0.0,
                  "vol": b["volume"] / 100, "amount": b["amount"] / 1000}).to_csv(path, index=False)


def write_akshare(path, symbol):
    b = synthetic(symbol)
    pd.DataFrame({"日期": [d.isoformat() for d in b["trade_date"]], "股票代码": symbol[:6], "开盘": b["open"],
                  "收盘": b["close"], "最高": b["high"], "最低": b["low"], "成交量": b["volume"] / 100,
                  "成交额": b["amount"], "涨跌额": (b["close"] - b["pre_close"]).round(2)}).to_csv(path, index=False)


def write_yahoo(path, symbol, us_dates=False):
    b = synthetic(symbol)
    dates = [d.strftime("%m/%d/%Y") if us_dates else d.isoformat() for d in b["trade_date"]]
    pd.DataFrame({"Date": dates, "Open": b["open"], "High": b["high"], "Low": b["low"], "Close": b["close"],
                  "Adj Close": b["close"] * 0.5, "Volume": b["volume"]}).to_csv(path, index=False)


def assert_like_synthetic(got: pd.DataFrame, symbol: str, start=START, end=END, amount=True, pre_close=True):
    want = synthetic(symbol, start, end).reset_index(drop=True)
    assert list(got.columns) == list(want.columns) and list(got.dtypes) == list(want.dtypes)
    assert got["trade_date"].tolist() == want["trade_date"].tolist()
    for c in ["open", "high", "low", "close", "volume"] + (["amount"] if amount else []) + (["pre_close"] if pre_close else []):
        np.testing.assert_allclose(got[c], want[c], rtol=1e-9, err_msg=c)
    assert (got["source"] == "file").all() and (got["symbol"] == symbol).all()


def test_tushare_export_gz_newest_first_in_lots_and_thousands(tmp_path, caplog):
    write_tushare(tmp_path / "600519.SH.csv.gz", "600519.SH")
    with caplog.at_level(logging.INFO, logger="kline.providers.files"):
        bars = FileProvider(tmp_path).fetch(["600519.SH"], START, END)
    assert_like_synthetic(bars, "600519.SH")
    assert "layout tushare" in caplog.text and "600519.SH.csv.gz" in caplog.text


def test_akshare_chinese_headers_volume_in_lots(tmp_path):
    write_akshare(tmp_path / "000001.SZ.csv", "000001.SZ")
    p = FileProvider(tmp_path)
    bars = p.fetch(["000001.SZ"], START, END)
    assert_like_synthetic(bars, "000001.SZ")
    assert p.last_fetch_report["000001.SZ"]["layout"] == "akshare"


@pytest.mark.parametrize("us_dates", [False, True])
def test_yahoo_iso_or_us_dates_raw_close_and_adj_factor(tmp_path, us_dates):
    write_yahoo(tmp_path / "600519.SH.csv", "600519.SH", us_dates=us_dates)
    p = FileProvider(tmp_path)
    bars = p.fetch(["600519.SH"], START, END)
    # no pre_close and no amount in the file: previous close, and volume * typical price
    assert_like_synthetic(bars, "600519.SH")
    assert p.last_fetch_report["600519.SH"]["amount_estimated"] is True
    adj = p.fetch_adj_factor(["600519.SH"], START, END)
    assert len(adj) == len(bars) and np.allclose(adj["adj_factor"], 0.5)


def test_pre_close_of_the_first_requested_row_comes_from_the_row_before_start(tmp_path):
    write_yahoo(tmp_path / "600519.SH.csv", "600519.SH")
    bars = FileProvider(tmp_path).fetch(["600519.SH"], START, END)
    prev = synthetic("600519.SH", FILE_START, dt.date(2023, 12, 31))["close"].iloc[-1]
    assert bars["pre_close"].iloc[0] == prev


def test_the_files_first_row_is_kept_without_pre_close(tmp_path):
    write_yahoo(tmp_path / "600519.SH.csv", "600519.SH")
    p = FileProvider(tmp_path)
    bars = p.fetch(["600519.SH"], FILE_START, END)
    first = sessions_in_range(FILE_START, END)[0]
    assert bars["trade_date"].iloc[0] == first and np.isnan(bars["pre_close"].iloc[0])
    assert bars["pre_close"].iloc[1] == bars["close"].iloc[0]
    assert len(bars) == len(synthetic("600519.SH"))  # every row of the file lands
    assert p.last_fetch_report["600519.SH"]["first_row_without_pre_close"] == first.isoformat()


def test_date_index_parquet_and_csv(tmp_path):
    b = synthetic("300750.SZ")
    frame = pd.DataFrame({"Open": b["open"].to_numpy(), "High": b["high"].to_numpy(), "Low": b["low"].to_numpy(),
                          "Close": b["close"].to_numpy(), "Volume": b["volume"].to_numpy()},
                         index=pd.DatetimeIndex(pd.to_datetime(b["trade_date"]), name="Date"))
    (tmp_path / "pq").mkdir()
    frame.to_parquet(tmp_path / "pq" / "300750.SZ.parquet")
    (tmp_path / "csv").mkdir()
    frame.rename_axis(None).to_csv(tmp_path / "csv" / "300750.SZ.csv")  # unnamed first column
    for sub in ("pq", "csv"):
        p = FileProvider(tmp_path / sub)
        assert_like_synthetic(p.fetch(["300750.SZ"], START, END), "300750.SZ")
        assert p.last_fetch_report["300750.SZ"]["layout"] == "date_index"


def test_explicit_mapping_overrides_detection(tmp_path):
    b = synthetic("600519.SH")
    pd.DataFrame({"day": b["trade_date"].astype(str), "o": b["open"], "h": b["high"], "l": b["low"], "c": b["close"],
                  "v": b["volume"], "turnover": b["amount"], "prev": b["pre_close"]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(FatalProviderError, match=r"x\.csv: unknown layout"):
        FileProvider(tmp_path / "x.csv").fetch(["600519.SH"], START, END)
    mapping = {"trade_date": "day", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "v",
               "amount": "turnover", "pre_close": "prev"}
    p = FileProvider(tmp_path / "x.csv", columns=mapping)
    assert_like_synthetic(p.fetch(["600519.SH"], START, END), "600519.SH")
    assert p.last_fetch_report["600519.SH"]["layout"] == "mapping"


def test_a_bad_file_names_file_and_column_and_nothing_is_written(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_tushare(src / "600519.SH.csv", "600519.SH")
    b = synthetic("000001.SZ")
    pd.DataFrame({"Date": b["trade_date"].astype(str), "Open": b["open"], "High": b["high"], "Low": b["low"],
                  "Close": b["close"], "Adj Close": b["close"]}).to_csv(src / "000001.SZ.csv", index=False)
    lake = Lake(tmp_path / "lake")
    with pytest.raises(FatalProviderError, match=r"000001\.SZ\.csv: unknown layout, closest is yahoo which misses column\(s\) Volume"):
        ingest_range(FileProvider(src), lake, ["600519.SH", "000001.SZ"], START, END)
    assert lake.raw_dates() == [] and not (tmp_path / "lake").exists()


def test_a_mapped_column_missing_from_the_file_is_named(tmp_path):
    b = synthetic("000001.SZ")
    pd.DataFrame({"day": b["trade_date"].astype(str), "o": b["open"], "h": b["high"], "l": b["low"],
                  "c": b["close"]}).to_csv(tmp_path / "000001.SZ.csv", index=False)
    mapping = {"trade_date": "day", "open": "o", "high": "h", "low": "l", "close": "c", "volume": "qty"}
    with pytest.raises(FatalProviderError, match=r"000001\.SZ\.csv: layout mapping: missing column\(s\) volume \(column 'qty'\)"):
        FileProvider(tmp_path, columns=mapping).fetch(["000001.SZ"], START, END)


def test_foreign_ticker_needs_a_calendar_and_uses_its_sessions(tmp_path):
    days = pd.bdate_range("2024-01-02", "2024-02-29")
    n = len(days)
    close = 4700 + np.arange(n, dtype=float)
    pd.DataFrame({"Date": days.strftime("%Y-%m-%d"), "Open": close - 1, "High": close + 5, "Low": close - 5,
                  "Close": close, "Adj Close": close, "Volume": 1e9}).to_csv(tmp_path / "SPX.csv", index=False)
    with pytest.raises(ProviderConfigError, match="calendar"):
        FileProvider(tmp_path).fetch(["SPX"], START, END)
    with pytest.raises(ProviderConfigError, match="unknown exchange calendar"):
        FileProvider(tmp_path, calendar="NOPE").fetch(["SPX"], START, END)
    p = FileProvider(tmp_path, calendar="XNYS")
    bars = p.fetch(["SPX"], START, END)
    assert len(bars) == n and bars["symbol"].eq("SPX").all()
    # 2024-01-15 (MLK day) and 2024-02-19 are weekdays but not NYSE sessions
    assert p.last_fetch_report["SPX"]["non_session_dates"] == ["2024-01-15", "2024-02-19"]
    per_symbol = FileProvider(tmp_path, calendars={"SPX": "XNYS"}).fetch(["SPX"], START, END)
    assert per_symbol.drop(columns="ingested_at").equals(bars.drop(columns="ingested_at"))


def test_a_symbol_is_never_a_path(tmp_path):
    write_yahoo(tmp_path / "600519.SH.csv", "600519.SH")
    for bad in ("../600519.SH", "/etc/passwd", "a/b"):
        with pytest.raises(ProviderConfigError, match="ill-formed symbol"):
            FileProvider(tmp_path, calendar="XNYS").fetch([bad], START, END)


def test_single_file_serves_the_one_requested_symbol(tmp_path):
    write_akshare(tmp_path / "moutai.csv", "600519.SH")
    p = FileProvider(tmp_path / "moutai.csv")
    assert_like_synthetic(p.fetch(["600519.SH"], START, END), "600519.SH")
    with pytest.raises(ProviderConfigError, match="exactly one symbol"):
        p.fetch(["600519.SH", "000001.SZ"], START, END)
    with pytest.raises(FatalProviderError, match="no rows for 000001.SZ"):
        p.fetch(["000001.SZ"], START, END)  # the file's code column says otherwise


def test_missing_source_or_file_is_a_config_error(tmp_path):
    with pytest.raises(ProviderConfigError, match="--source"):
        make_provider(Settings(provider="file"))
    with pytest.raises(ProviderConfigError, match="not found"):
        FileProvider(tmp_path / "nope")
    write_yahoo(tmp_path / "600519.SH.csv", "600519.SH")
    settings = Settings(provider="file", symbols=("600519.SH", "000001.SZ")).replace(file={"source": str(tmp_path)})
    with pytest.raises(ProviderConfigError, match=r"no file for 000001\.SZ .*--symbols"):
        make_provider(settings)
    p = make_provider(settings.replace(symbols=["600519.SH"]))
    assert p.name == "file" and p.available_symbols() == ["600519.SH"]
    sessions = sessions_in_range(FILE_START, END)
    days = p.fetch(["600519.SH"], dt.date(1990, 1, 1), dt.date(2100, 1, 1))["trade_date"]
    assert (days.min(), days.max()) == (sessions[0], sessions[-1])


def test_ingest_fills_the_raw_layer_like_synthetic_and_reimport_is_idempotent(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_tushare(src / "600519.SH.csv.gz", "600519.SH")
    write_akshare(src / "000001.SZ.csv", "000001.SZ")
    write_yahoo(src / "300750.SZ.csv", "300750.SZ")
    syms = ["000001.SZ", "300750.SZ", "600519.SH"]
    lake = Lake(tmp_path / "lake")
    first = ingest_range(FileProvider(src), lake, syms, START, END)
    raw = lake.read_raw_bars(START, END, source="file")
    for s in syms:
        assert_like_synthetic(raw[raw["symbol"] == s].reset_index(drop=True), s)
    assert set(lake.read_adj_factor()["symbol"]) == {"300750.SZ"}
    second = ingest_range(FileProvider(src), lake, syms, START, END)
    assert second["content_hash"] == first["content_hash"] and second["rows"] == first["rows"]
    again = lake.read_raw_bars(START, END, source="file")
    assert again.drop(columns="ingested_at").equals(raw.drop(columns="ingested_at"))


def test_unparseable_dates_name_the_file_and_column(tmp_path):
    pd.DataFrame({"Date": ["2024-01-02", "yesterday"], "Open": 1, "High": 1, "Low": 1, "Close": 1,
                  "Adj Close": 1, "Volume": 1}).to_csv(tmp_path / "600519.SH.csv", index=False)
    with pytest.raises(FatalProviderError, match=r"600519\.SH\.csv: column 'Date': cannot parse dates like 'yesterday'"):
        FileProvider(tmp_path).fetch(["600519.SH"], START, END)


def write_defective_yahoo(path, symbol):
    """A Yahoo file with row-level defects: an identical duplicate, a date twice with different
    values, a null row on a session and a Yahoo ``null`` row on a holiday."""
    b = synthetic(symbol)
    df = pd.DataFrame({"Date": [d.isoformat() for d in b["trade_date"]], "Open": b["open"], "High": b["high"],
                       "Low": b["low"], "Close": b["close"], "Adj Close": b["close"], "Volume": b["volume"]})
    df = df.astype(object)
    same, twice, empty = 10, 20, 30
    dup = df.iloc[[twice]].copy()
    dup["Close"] = float(dup["Close"].iloc[0]) * 1.01
    df.iloc[empty, 1:] = "null"
    holiday = pd.DataFrame([{"Date": "2024-02-12", **{c: "null" for c in df.columns[1:]}}])  # Spring Festival
    df = pd.concat([df, df.iloc[[same]], dup, holiday], ignore_index=True)
    df.to_csv(path, index=False)
    return b, {"same": b["trade_date"].iloc[same], "twice": b["trade_date"].iloc[twice],
               "empty": b["trade_date"].iloc[empty]}


def test_row_level_defects_do_not_reject_the_file(tmp_path):
    b, days = write_defective_yahoo(tmp_path / "600519.SH.csv", "600519.SH")
    p = FileProvider(tmp_path)
    bars = p.fetch(["600519.SH"], FILE_START, END)
    counts = bars["trade_date"].value_counts()
    assert counts[days["same"]] == 1 and counts[days["twice"]] == 2  # collapsed / both kept
    assert np.isnan(bars.loc[bars["trade_date"] == days["empty"], "close"]).all()  # kept, for quarantine
    assert dt.date(2024, 2, 12) not in set(bars["trade_date"])
    assert len(bars) == len(b) + 1
    note = p.last_fetch_report["600519.SH"]
    assert note["duplicate_rows_collapsed"] == 1 and note["duplicate_dates"] == [days["twice"].isoformat()]
    assert note["rows_without_close"] == 1 and note["dropped_null_rows_off_session"] == 1


def test_side_files_give_listings_st_periods_and_limit_prices(tmp_path):
    write_yahoo(tmp_path / "600519.SH.csv", "600519.SH")
    pd.DataFrame({"symbol": ["600519.SH", "000001.SZ"], "list_date": ["2001-08-27", "1991-04-03"]}).to_csv(
        tmp_path / "_listings.csv", index=False)
    pd.DataFrame({"symbol": ["600519.SH"], "start_date": ["20240105"], "end_date": [""], "name": ["ST茅台"]}).to_csv(
        tmp_path / "_st_periods.csv", index=False)
    pd.DataFrame({"symbol": ["600519.SH"], "trade_date": ["2024-01-02"], "up_limit": [1900.0],
                  "down_limit": [1500.0]}).to_csv(tmp_path / "_stk_limit.csv", index=False)
    p = FileProvider(tmp_path)
    assert p.available_symbols() == ["600519.SH"]  # side files are not symbols
    f = p.fetch_instrument_facts(["600519.SH"], START, END)
    assert f.listing("600519.SH") == (dt.date(2001, 8, 27), None)
    st = f.st_periods.iloc[0]
    assert (st["start_date"], st["end_date"], st["name"]) == (dt.date(2024, 1, 5), None, "ST茅台")
    assert f.stk_limit[["up_limit", "down_limit"]].iloc[0].tolist() == [1900.0, 1500.0]
    assert f.sources() == {"listings": ["file"], "st_periods": ["file"], "stk_limit": ["file"]}
    bare = FileProvider(tmp_path / "600519.SH.csv").fetch_instrument_facts(["600519.SH"], START, END)
    assert bare.listings.empty and bare.st_periods.empty and bare.stk_limit.empty


def test_a_file_over_max_mb_is_refused_by_its_size_before_it_is_read(tmp_path, monkeypatch):
    import os

    from kline.providers import files as vendor_files

    path = tmp_path / "SPX.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,1000\n")
    os.truncate(path, 5 * 2**20)  # sparse: 5 MiB on paper

    def never(p):
        raise AssertionError(f"read {p}")

    monkeypatch.setattr(vendor_files, "read_table_file", never)
    provider = FileProvider(path, calendar="XNYS", max_mb=4)
    with pytest.raises(FatalProviderError, match=r"SPX.csv: 5 MiB, over the 4 MiB a vendor file may have"):
        provider.date_range(["SPX"])
