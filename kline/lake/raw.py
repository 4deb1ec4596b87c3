"""The raw layer: bars as the provider returned them, per source in day files (daily runs)
and month files (backfills), read as one (``kline.lake.partitions``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kline.lake.files import LakeFiles, Store, WriteResult, content_hash
from kline.lake.partitions import DAY, DayMonthTable
from kline.schema import BAR_SCHEMA, KEY_COLUMNS, empty_bars, to_table


class RawBars(Store):
    """``raw/bars/trade_date=YYYY-MM-DD/<source>.parquet`` and ``raw/bars/month=YYYY-MM/<source>.parquet``:
    written per fetch, read by validation."""

    def __init__(self, files: LakeFiles):
        super().__init__(files)
        # small day files: snappy writes in half zstd's time; size hardly differs
        self.table = DayMonthTable(files, "bars", BAR_SCHEMA, compression="snappy")

    def write(
        self,
        bars: pd.DataFrame,
        source: str,
        symbols: Iterable[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        layout: str = DAY,
    ) -> WriteResult:
        """Merge canonical bars into day files (``layout="day"``, daily runs) or month files
        (``"month"``, backfills), atomically, one lock per month.

        A fetch is authoritative for what it asked for: on each day it touches, its rows
        replace every stored row of the requested ``symbols`` (default: those in ``bars``) and
        other symbols' rows stay. Given ``[start, end]``, stored rows of those symbols on days
        the fetch no longer returns (a fixed bad date, a suspension) are removed too. Rows
        within one fetch are kept as sent, duplicates included, so validation can see them.
        """
        table = to_table(bars)
        asked = pa.array(sorted(set(symbols) if symbols is not None else set(bars["symbol"].dropna())),
                         pa.string())
        sent = pc.unique(table.column("trade_date"))
        span = (start, end) if start is not None and end is not None else None

        def drop(old: pa.Table) -> pa.Array:
            dates = old.column("trade_date")
            days = pc.is_in(dates, value_set=sent)
            if span is not None:
                days = pc.or_(days, pc.and_(pc.greater_equal(dates, span[0]), pc.less_equal(dates, span[1])))
            return pc.and_(pc.is_in(old.column("symbol"), value_set=asked), days).fill_null(False)

        partitions = self.table.write(table, source, drop, span, layout)
        return WriteResult(partitions, len(bars), content_hash(bars))

    def dates(self, start: dt.date | None = None, end: dt.date | None = None) -> list[dt.date]:
        """Trade dates that have a raw day partition or rows in a month file, within ``[start, end]``."""
        return self.table.dates(start, end)

    def read(
        self,
        start: dt.date | None = None,
        end: dt.date | None = None,
        symbols: Iterable[str] | None = None,
        source: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Raw bars in ``[start, end]``, optionally for some symbols / one source. Only the
        partitions in range are opened; symbols and dates are filtered with pushdown."""
        tables = self.table.read(start, end, symbols, source, columns)
        if not tables:
            return empty_bars()[list(columns)] if columns else empty_bars()
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
