"""The curated layer: validated bars, unique (symbol, trade_date), one partition per year."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from kline.lake.files import Store, content_hash
from kline.schema import BAR_COLUMNS, KEY_COLUMNS, empty_bars, to_table


class CuratedBars(Store):
    """``curated/bars/year=YYYY/part.parquet`` and its content hash: written by validation,
    read by features, training and the backtest."""

    def years(self) -> list[int]:
        """Years that have a curated partition, ascending."""
        years = []
        for name in self.files.listdir(self.paths.curated_bars_dir()):
            if name.startswith("year=") and self.files.exists(self.paths.curated_bars(int(name[5:]))):
                years.append(int(name[5:]))
        return years

    def read(
        self,
        symbols: Iterable[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Curated bars, one symbol's (or several) history over a date range; only the year
        partitions in range are opened, and symbol/date filters are pushed into Parquet."""
        filters = []
        if symbols is not None:
            filters.append(("symbol", "in", list(symbols)))
        if start is not None:
            filters.append(("trade_date", ">=", start))
        if end is not None:
            filters.append(("trade_date", "<=", end))
        tables = []
        for y in self.years():
            if (start is not None and y < start.year) or (end is not None and y > end.year):
                continue
            tables.append(self.files.read_table(self.paths.curated_bars(y), columns=columns,
                                                filters=filters or None))
        if not tables:
            return empty_bars()[list(columns)] if columns else empty_bars()
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values([c for c in KEY_COLUMNS if c in df.columns], kind="stable").reset_index(drop=True)

    def write(self, bars: pd.DataFrame) -> list[int]:
        """Upsert validated rows into year partitions (unique (symbol, trade_date), sorted)."""
        if bars.empty:
            return []
        bars = bars[BAR_COLUMNS]
        years = pd.to_datetime(bars["trade_date"]).dt.year.to_numpy()
        touched = []
        for y in np.unique(years):
            part = bars[years == y]
            path = self.paths.curated_bars(int(y))
            with self.files.lock(f"curated-{int(y)}"):
                if self.files.exists(path):
                    old = self.files.read_table(path).to_pandas()
                    part = pd.concat([old, part], ignore_index=True)
                part = part.drop_duplicates(KEY_COLUMNS, keep="last").sort_values(KEY_COLUMNS, kind="stable")
                self._write_year(int(y), part)
            touched.append(int(y))
        return touched

    def _write_year(self, year: int, part: pd.DataFrame) -> None:
        self.files.atomic_write_table(self.paths.curated_bars(year), to_table(part), row_group_size=16_384)
        self.files.atomic_write_text(self.paths.curated_fingerprint(year), content_hash(part.reset_index(drop=True)))

    def fingerprint(self, end: dt.date | None = None) -> str:
        """Content fingerprint of the curated rows dated ``<= end`` (all when None): changes
        when any of them changes, and not when later rows arrive. Past years read only their
        small sidecar hashes; ``end``'s own year is hashed from its rows up to ``end``."""
        parts = []
        for y in self.years():
            if end is not None and y > end.year:
                continue
            if end is not None and y == end.year:
                part = self.files.read_table(self.paths.curated_bars(y), filters=[("trade_date", "<=", end)]).to_pandas()
                parts.append(f"{y}<={end}:{content_hash(part.reset_index(drop=True))}")
                continue
            p = self.paths.curated_fingerprint(y)
            parts.append(f"{y}:{self.files.read_text(p) if self.files.exists(p) else 'missing'}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def delete(self, keys: pd.DataFrame) -> int:
        """Remove (symbol, trade_date) rows from curated; returns how many were removed."""
        if keys.empty:
            return 0
        removed = 0
        years = pd.to_datetime(keys["trade_date"]).dt.year.to_numpy()
        for y in np.unique(years):
            path = self.paths.curated_bars(int(y))
            with self.files.lock(f"curated-{int(y)}"):
                if not self.files.exists(path):
                    continue
                old = self.files.read_table(path).to_pandas()
                k = keys[years == y]
                drop = pd.MultiIndex.from_frame(old[KEY_COLUMNS]).isin(pd.MultiIndex.from_frame(k[KEY_COLUMNS]))
                if drop.any():
                    removed += int(drop.sum())
                    self._write_year(int(y), old[~drop])
        return removed
