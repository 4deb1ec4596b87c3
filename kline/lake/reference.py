"""Reference data beside the bars: adjustment factors, exchange limit prices (day and month
files under ``raw/``, ``kline.lake.partitions``) and the instrument-fact tables
(``reference/``: listings, ST periods)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kline.lake.files import LakeFiles, Store, WriteResult, content_hash
from kline.lake.partitions import DAY, DayMonthTable
from kline.lake.paths import REFERENCE_TABLES
from kline.rules import STK_LIMIT_SCHEMA, InstrumentFacts, empty_frame
from kline.schema import ADJ_SCHEMA, KEY_COLUMNS


class ReferenceData(Store):
    """Adjustment factors, limit prices, listings and ST periods: written by ingestion, read
    by validation, features and the backtest."""

    def __init__(self, files: LakeFiles):
        super().__init__(files)
        self.adj_factor = DayMonthTable(files, "adj_factor", ADJ_SCHEMA, compression="zstd")
        self.stk_limit = DayMonthTable(files, "stk_limit", STK_LIMIT_SCHEMA, compression="zstd")

    def write_adj_factor(self, factors: pd.DataFrame, source: str, layout: str = DAY) -> WriteResult:
        """Merge adjustment factors into day files (``layout="day"``) or month files
        (``"month"``) beside raw bars: the newest fetch wins per (symbol, trade_date)."""
        if factors.empty:
            return WriteResult([], 0, content_hash(factors))
        return self._merge(self.adj_factor, factors[ADJ_SCHEMA.names], ADJ_SCHEMA, source, layout)

    def read_adj_factor(
        self, symbols: Iterable[str] | None = None, start: dt.date | None = None, end: dt.date | None = None
    ) -> pd.DataFrame:
        """Stored adjustment factors (``symbol, trade_date, adj_factor``), all sources."""
        tables = self.adj_factor.read(start, end, symbols)
        if not tables:
            return ADJ_SCHEMA.empty_table().to_pandas()
        df = pa.concat_tables(tables).to_pandas()
        return df.drop_duplicates(KEY_COLUMNS, keep="last").sort_values(KEY_COLUMNS).reset_index(drop=True)

    def write_stk_limit(self, limits: pd.DataFrame, source: str, layout: str = DAY) -> WriteResult:
        """Merge exchange limit prices (``STK_LIMIT_SCHEMA``) into day or month files, as
        ``write_adj_factor``."""
        if limits.empty:
            return WriteResult([], 0, content_hash(limits))
        return self._merge(self.stk_limit, limits.assign(source=source)[STK_LIMIT_SCHEMA.names], STK_LIMIT_SCHEMA,
                           source, layout)

    def read_stk_limit(self, symbols: Iterable[str] | None = None, start: dt.date | None = None,
                       end: dt.date | None = None, source: str | None = None) -> pd.DataFrame:
        """Stored exchange limit prices in ``[start, end]`` (only those day partitions are opened)."""
        tables = self.stk_limit.read(start, end, symbols, source)
        if not tables:
            return empty_frame(STK_LIMIT_SCHEMA)
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)

    @staticmethod
    def _merge(table: DayMonthTable, frame: pd.DataFrame, schema: pa.Schema, source: str,
               layout: str) -> WriteResult:
        """Merge rows into ``table``: on each day, the rows of the symbols in ``frame`` replace
        the stored ones (within ``frame``, the last row of a key wins)."""
        rows = frame.drop_duplicates(KEY_COLUMNS, keep="last")
        new = pa.Table.from_pandas(rows, schema=schema, preserve_index=False)
        sent = _keys(new).combine_chunks()
        partitions = table.write(new, source, lambda old: pc.is_in(_keys(old), value_set=sent), layout=layout)
        return WriteResult(partitions, len(frame), content_hash(frame))

    def write(self, table: str, rows: pd.DataFrame, source: str, symbols: Iterable[str]) -> int:
        """Replace ``source``'s rows of ``symbols`` in an instrument-fact table (``listings``,
        ``st_periods``) with ``rows``; other symbols' rows stay. Returns the rows written."""
        schema = REFERENCE_TABLES[table]
        path = self.paths.reference(table, source)
        asked = set(symbols) | set(rows["symbol"].astype(str)) if len(rows) else set(symbols)
        rows = rows.assign(source=source)[schema.names] if len(rows) else empty_frame(schema)
        with self.files.lock(f"reference-{table}-{source}"):
            if self.files.exists(path):
                old = self.files.read_table(path).to_pandas()
                rows = pd.concat([old[~old["symbol"].isin(asked)], rows], ignore_index=True)
            rows = rows.drop_duplicates().sort_values(list(schema.names[:2]), kind="stable")
            self.files.atomic_write_table(path, pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
        return len(rows)

    def read(self, table: str, symbols: Iterable[str] | None = None, source: str | None = None) -> pd.DataFrame:
        """Rows of an instrument-fact table, every source (or one), optionally for some symbols."""
        schema = REFERENCE_TABLES[table]
        symbols = list(symbols) if symbols is not None else None
        tables = self.files.source_tables(self.paths.reference_dir(table), source, symbols)
        if not tables:
            return empty_frame(schema)
        return pa.concat_tables([t.cast(schema) for t in tables]).to_pandas()

    def instrument_facts(self, symbols: Iterable[str], start: dt.date | None = None,
                         end: dt.date | None = None, source: str | None = None) -> InstrumentFacts:
        """Listings, ST periods and the exchange limit prices in ``[start, end]`` of ``symbols``
        from ``source`` (None: every source). Point in time as of ``end``: a delisting or an ST
        period's end after it is not known yet, an ST period starting after it not at all."""
        symbols = list(symbols)
        listings = self.read("listings", symbols, source)
        st = self.read("st_periods", symbols, source)
        if end is not None:
            listings["delist_date"] = listings["delist_date"].where(
                pd.to_datetime(listings["delist_date"]) <= pd.Timestamp(end), None)
            st = st[pd.to_datetime(st["start_date"]) <= pd.Timestamp(end)].copy()
            st["end_date"] = st["end_date"].where(pd.to_datetime(st["end_date"]) <= pd.Timestamp(end), None)
        return InstrumentFacts(listings=listings, st_periods=st,
                               stk_limit=self.read_stk_limit(symbols, start, end, source))


def _keys(t: pa.Table) -> pa.ChunkedArray:
    """``symbol|trade_date`` of each row."""
    return pc.binary_join_element_wise(t.column("symbol"), pc.cast(t.column("trade_date"), pa.string()), "|")
