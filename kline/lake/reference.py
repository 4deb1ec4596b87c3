"""Reference data beside the bars: adjustment factors, exchange limit prices (day files under
``raw/``) and the instrument-fact tables (``reference/``: listings, ST periods)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import pandas as pd
import pyarrow as pa

from kline.lake.files import Store, WriteResult, content_hash
from kline.lake.paths import REFERENCE_TABLES
from kline.rules import STK_LIMIT_SCHEMA, InstrumentFacts, empty_frame
from kline.schema import ADJ_SCHEMA, KEY_COLUMNS


class ReferenceData(Store):
    """Adjustment factors, limit prices, listings and ST periods: written by ingestion, read
    by validation, features and the backtest."""

    def write_adj_factor(self, factors: pd.DataFrame, source: str) -> WriteResult:
        """Merge adjustment factors into day partitions beside raw bars (newest fetch wins)."""
        if factors.empty:
            return WriteResult([], 0, content_hash(factors))
        return self._merge_day_files(factors[ADJ_SCHEMA.names], ADJ_SCHEMA,
                                     lambda day: self.paths.raw_adj_factor(day, source))

    def read_adj_factor(
        self, symbols: Iterable[str] | None = None, start: dt.date | None = None, end: dt.date | None = None
    ) -> pd.DataFrame:
        """Stored adjustment factors (``symbol, trade_date, adj_factor``), all sources."""
        tables = self.files.read_day_files(self.paths.raw_adj_factor_dir(), start, end, symbols)
        if not tables:
            return ADJ_SCHEMA.empty_table().to_pandas()
        df = pa.concat_tables(tables).to_pandas()
        return df.drop_duplicates(KEY_COLUMNS, keep="last").sort_values(KEY_COLUMNS).reset_index(drop=True)

    def write_stk_limit(self, limits: pd.DataFrame, source: str) -> WriteResult:
        """Merge exchange limit prices (``STK_LIMIT_SCHEMA``) into day partitions."""
        if limits.empty:
            return WriteResult([], 0, content_hash(limits))
        return self._merge_day_files(limits.assign(source=source)[STK_LIMIT_SCHEMA.names], STK_LIMIT_SCHEMA,
                                     lambda day: self.paths.raw_stk_limit(day, source))

    def read_stk_limit(self, symbols: Iterable[str] | None = None, start: dt.date | None = None,
                       end: dt.date | None = None, source: str | None = None) -> pd.DataFrame:
        """Stored exchange limit prices in ``[start, end]`` (only those day partitions are opened)."""
        tables = self.files.read_day_files(self.paths.raw_stk_limit_dir(), start, end, symbols, source)
        if not tables:
            return empty_frame(STK_LIMIT_SCHEMA)
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)

    def _merge_day_files(self, frame: pd.DataFrame, schema: pa.Schema,
                         path_of: Callable[[dt.date], str]) -> WriteResult:
        """Merge rows into one file per trade date (``path_of(day)``): on each day, the rows of
        the symbols in ``frame`` replace the stored ones; one lock per day partition."""
        partitions = []
        for day, part in frame.groupby("trade_date", sort=True):
            path = path_of(day)
            with self.files.lock_partition(path):
                if self.files.exists(path):
                    old = self.files.read_table(path).to_pandas()
                    part = pd.concat([old[~old["symbol"].isin(part["symbol"])], part], ignore_index=True)
                part = part.drop_duplicates(KEY_COLUMNS, keep="last").sort_values("symbol")
                self.files.atomic_write_table(path, pa.Table.from_pandas(part, schema=schema, preserve_index=False))
            partitions.append(f"trade_date={day.isoformat()}")
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
