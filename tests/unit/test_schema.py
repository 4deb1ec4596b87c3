import datetime as dt

import pandas as pd
import pytest

from kline.schema import BAR_COLUMNS, BAR_SCHEMA, SchemaError, to_canonical, to_table


def _frame(**overrides):
    base = {
        "symbol": ["600519.SH", "000001.SZ"],
        "trade_date": [dt.date(2024, 1, 3), dt.date(2024, 1, 2)],
        "open": [1.0, 2.0], "high": [1.5, 2.5], "low": [0.9, 1.9], "close": [1.2, 2.2],
        "pre_close": [1.1, 2.1], "volume": [100.0, 200.0], "amount": [120.0, 440.0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_to_canonical_types_sorts_and_fills():
    out = to_canonical(_frame(), "file")
    assert list(out.columns) == BAR_COLUMNS
    assert list(out["symbol"]) == ["000001.SZ", "600519.SH"]
    assert (out["source"] == "file").all() and str(out["ingested_at"].dt.tz) == "UTC"
    assert to_table(out).schema.equals(BAR_SCHEMA)


def test_strings_and_timestamps_are_converted():
    out = to_canonical(_frame(trade_date=["2024-01-03", "2024-01-02"], volume=["100", "oops"]), "file")
    assert out["trade_date"].tolist() == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    assert out["volume"].isna().tolist() == [True, False]  # unparsable -> NaN, left for validation


def test_missing_column_is_named():
    with pytest.raises(SchemaError, match="missing canonical column\\(s\\): amount"):
        to_canonical(_frame().drop(columns="amount"), "file")
