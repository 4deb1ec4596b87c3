"""Reusable frames for validation tests: a clean synthetic chunk and a corrupted import.

``corrupted_import`` applies the issue's six corruptions to a clean canonical frame and says
which (symbol, trade_date) keys must end in quarantine. ``write_raw_frame`` puts a frame
into the raw layer as is: ``Lake.write_raw_bars`` keeps one row per key, so duplicates only
reach validation through it (or through a raw file written by another tool).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.schema import KEY_COLUMNS, to_canonical, to_table
from kline.validation import QUARANTINE_SCHEMA, _quarantine_files

MAIN_BOARD = "000001.SZ"  # Ping An Bank: a main-board stock (10 % limit)
OTHER = "600519.SH"
INDEX = "000001.SH"
SYMBOLS = (MAIN_BOARD, OTHER, INDEX)
FEB_2024 = (dt.date(2024, 2, 1), dt.date(2024, 2, 29))


def clean_bars(symbols=SYMBOLS, start: dt.date = FEB_2024[0], end: dt.date = FEB_2024[1]) -> pd.DataFrame:
    """Canonical synthetic bars (sorted by symbol, trade_date)."""
    return to_canonical(SyntheticProvider().fetch(list(symbols), start, end), "synthetic")


@dataclass
class Corruption:
    """A corrupted frame and the keys that must be quarantined (``rows``: how many rows)."""

    frame: pd.DataFrame
    broken: dict[str, tuple[str, dt.date]] = field(default_factory=dict)  # what -> key
    rows: int = 0

    def keys(self) -> set[tuple[str, dt.date]]:
        return set(self.broken.values())


def corrupted_import(clean: pd.DataFrame, carry_jump: bool = False) -> Corruption:
    """Duplicates, high < low, a weekend date, a NaN close, a negative price and a 50 % jump
    on a main-board stock, each on its own row of ``clean`` (which must hold MAIN_BOARD and
    OTHER with at least 12 rows each).

    With ``carry_jump`` the source also repeats the jumped close as the next day's
    ``pre_close`` (a consistent wrong series): that neighbour must be quarantined too.
    """
    df = clean.copy().reset_index(drop=True)
    main = df.index[df["symbol"] == MAIN_BOARD]
    other = df.index[df["symbol"] == OTHER]
    out = Corruption(df)
    key = lambda i: (df.at[i, "symbol"], df.at[i, "trade_date"])  # noqa: E731

    i = other[2]  # high < low
    df.loc[i, ["high", "low"]] = [df.at[i, "low"] - 0.5, df.at[i, "high"]]
    out.broken["high_lt_low"] = key(i)
    i = main[4]  # NaN close
    df.loc[i, "close"] = float("nan")
    out.broken["nan_close"] = key(i)
    i = other[6]  # negative price
    df.loc[i, "open"] = -abs(df.at[i, "open"])
    out.broken["negative_price"] = key(i)
    i = main[8]  # 50 % jump on a main-board stock
    df.loc[i, "close"] = round(df.at[i, "pre_close"] * 1.5, 2)
    df.loc[i, "high"] = max(df.at[i, "high"], df.at[i, "close"])
    out.broken["jump_50pct"] = key(i)
    if carry_jump:
        df.loc[main[9], "pre_close"] = df.at[i, "close"]
        out.broken["jump_neighbour"] = key(main[9])

    # A copy of a Friday bar dated the Saturday after: not a session.
    fri = next(j for j in other[8:] if df.at[j, "trade_date"].weekday() == 4)
    sat = df.loc[[fri]].assign(trade_date=df.at[fri, "trade_date"] + dt.timedelta(days=1))
    out.broken["weekend"] = (OTHER, sat["trade_date"].iloc[0])
    dup = df.loc[[main[10]]]  # the same key twice: every copy is rejected
    out.broken["duplicate"] = key(main[10])
    out.frame = pd.concat([df, sat, dup], ignore_index=True).sort_values(KEY_COLUMNS, kind="stable")
    out.frame = out.frame.reset_index(drop=True)
    out.rows = len(out.broken) + 1  # the duplicate key has two rows
    return out


def write_raw_frame(lake: Lake, frame: pd.DataFrame, source: str = "synthetic") -> None:
    """Write ``frame`` into its raw day partitions as is (duplicates kept), replacing them."""
    for day, part in frame.groupby("trade_date", sort=True):
        lake.atomic_write_table(lake.paths.raw_bars(day, source), to_table(part))


def chunk_ref(frame: pd.DataFrame, start: dt.date, end: dt.date, source: str = "synthetic") -> dict:
    """The chunk reference ``ingest_range`` would return for ``frame`` (the fields used)."""
    return {"source": source, "start": start.isoformat(), "end": end.isoformat(),
            "symbols": sorted(frame["symbol"].unique().tolist()), "rows": len(frame)}


def read_quarantine(
    lake: Lake, symbols: Iterable[str] | None = None, start: dt.date | None = None, end: dt.date | None = None
) -> pd.DataFrame:
    """Quarantined rows (``QUARANTINE_SCHEMA``), sorted by (symbol, trade_date)."""
    filters = [("symbol", "in", list(symbols))] if symbols is not None else None
    tables = [lake.read_table(p, filters=filters) for _, p in _quarantine_files(lake, start, end)]
    if not tables:
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    # files written before ``reason`` existed lack the column: promote fills it with nulls
    df = pa.concat_tables(tables, promote_options="default").to_pandas()
    return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def validation_history(lake: Lake, limit: int | None = None) -> list[dict[str, Any]]:
    """Result documents of past runs, newest first (run ids sort by time), without the
    per-expectation details."""
    names = [n for n in lake.listdir(lake.paths.validation_results_dir()) if n.endswith(".json")]
    names = sorted(names, reverse=True)[:limit]
    out = []
    for n in names:
        doc = json.loads(lake.read_text(f"{lake.paths.validation_results_dir()}/{n}"))
        doc.pop("expectations", None)
        out.append(doc)
    return out
