"""The canonical bar schema every provider returns and every lake layer stores.

Prices in CNY (stocks) or index points, ``volume`` in shares (not lots), ``amount`` in CNY
(not thousands). ``trade_date`` is the session date; ``ingested_at`` is UTC.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

PRICE_COLUMNS = ["open", "high", "low", "close", "pre_close"]
FLOAT_COLUMNS = [*PRICE_COLUMNS, "volume", "amount"]
KEY_COLUMNS = ["symbol", "trade_date"]
BAR_SCHEMA = pa.schema([
    ("symbol", pa.string()),
    ("trade_date", pa.date32()),
    *((c, pa.float64()) for c in FLOAT_COLUMNS),
    ("source", pa.string()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
])
BAR_COLUMNS: list[str] = BAR_SCHEMA.names

# adj_factor rows stored beside raw prices (tushare). kline.features adjusts on read as
# raw * factor / (the symbol's first factor), so later corporate actions never rescale the past.
ADJ_SCHEMA = pa.schema([("symbol", pa.string()), ("trade_date", pa.date32()), ("adj_factor", pa.float64())])


class SchemaError(ValueError):
    """A frame that cannot be put into the canonical schema; the message names the column."""


def to_canonical(df: pd.DataFrame, source: str, ingested_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """Return ``df`` with exactly the canonical columns and dtypes, sorted by (symbol, trade_date).

    Missing ``source``/``ingested_at`` are filled; any other missing column is an error.
    """
    df = df.copy()
    if "source" not in df:
        df["source"] = source
    if "ingested_at" not in df:
        df["ingested_at"] = ingested_at if ingested_at is not None else pd.Timestamp.now(tz="UTC")
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"missing canonical column(s): {', '.join(missing)}")
    out = pd.DataFrame(
        {
            "symbol": df["symbol"].astype(str),
            "trade_date": _dates(df["trade_date"]),
            **{c: _floats(df[c]) for c in FLOAT_COLUMNS},
            "source": df["source"].astype(str),
            "ingested_at": pd.to_datetime(df["ingested_at"], utc=True),
        }
    )
    return out.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def _dates(col: pd.Series) -> pd.Series:
    """``datetime.date`` objects; a column that already holds them is kept as is."""
    first = col.iloc[0] if len(col) else None
    if col.dtype == object and type(first) is dt.date and col.map(type).eq(dt.date).all():
        return col
    return pd.to_datetime(col).dt.date


def _floats(col: pd.Series) -> pd.Series:
    return col if col.dtype == "float64" else pd.to_numeric(col, errors="coerce").astype("float64")


def to_table(df: pd.DataFrame) -> pa.Table:
    """Canonical frame -> Arrow table with ``BAR_SCHEMA``."""
    return pa.Table.from_pandas(df[BAR_COLUMNS], schema=BAR_SCHEMA, preserve_index=False)


def empty_bars() -> pd.DataFrame:
    return BAR_SCHEMA.empty_table().to_pandas()
