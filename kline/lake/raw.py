"""The raw layer: bars as the provider returned them, one file per day and source."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kline.lake.files import Store, WriteResult, content_hash
from kline.schema import BAR_SCHEMA, KEY_COLUMNS, empty_bars, to_table


class RawBars(Store):
    """``raw/bars/trade_date=YYYY-MM-DD/<source>.parquet``: written per fetch, read by validation."""

    def write(
        self,
        bars: pd.DataFrame,
        source: str,
        symbols: Iterable[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> WriteResult:
        """Merge canonical bars into their day partitions, atomically, one lock per day.

        A fetch is authoritative for what it asked for: on each day it touches, its rows
        replace every stored row of the requested ``symbols`` (default: those in ``bars``) and
        other symbols' rows stay. Given ``[start, end]``, stored rows of those symbols on days
        the fetch no longer returns (a fixed bad date, a suspension) are removed too. Rows
        within one fetch are kept as sent, duplicates included, so validation can see them.
        """
        files, paths = self.files, self.paths
        table = to_table(bars).sort_by([("trade_date", "ascending"), ("symbol", "ascending")])
        asked = pa.array(sorted(set(symbols) if symbols is not None else set(bars["symbol"].dropna())),
                         pa.string())
        days = table.column("trade_date").to_numpy()
        starts = np.concatenate([[0], np.flatnonzero(days[1:] != days[:-1]) + 1]) if len(days) else np.array([], int)
        ends = np.concatenate([starts[1:], [len(days)]]) if len(days) else np.array([], int)
        slices = {pd.Timestamp(days[a]).date(): table.slice(a, b - a) for a, b in zip(starts, ends, strict=True)}
        stale = []
        if start is not None and end is not None:
            # probe only the days this fetch did not return (cost independent of history)
            for n in range((end - start).days + 1):
                d = start + dt.timedelta(days=n)
                if d not in slices and files.exists(paths.raw_bars(d, source)):
                    stale.append(d)
        def write_day(day: dt.date) -> str | None:
            part = slices.get(day, table.schema.empty_table())
            path = paths.raw_bars(day, source)
            with files.lock_partition(path):
                if files.exists(path):
                    old = files.read_table(path)
                    keep = pc.invert(pc.is_in(old.column("symbol"), value_set=asked))
                    part = pa.concat_tables([old.filter(keep).cast(BAR_SCHEMA), part])
                    part = part.sort_by([("symbol", "ascending")])
                elif part.num_rows == 0:
                    return None
                if part.num_rows == 0:
                    files.fs.rm(files._strip(path))  # the (locked) folder stays, empty
                else:
                    # small day files: snappy writes in half zstd's time; size hardly differs
                    files.atomic_write_table(path, part, compression="snappy")
            return f"trade_date={day.isoformat()}"

        done = [write_day(d) for d in [*slices, *stale]]
        partitions = [p for p in done if p is not None]
        return WriteResult(partitions, len(bars), content_hash(bars))

    def dates(self, start: dt.date | None = None, end: dt.date | None = None) -> list[dt.date]:
        """Trade dates that have a raw partition, within ``[start, end]`` when given."""
        return self.files.day_partitions(self.paths.raw_bars_dir(), start, end)

    def read(
        self,
        start: dt.date | None = None,
        end: dt.date | None = None,
        symbols: Iterable[str] | None = None,
        source: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Raw bars in ``[start, end]``, optionally for some symbols / one source. Only the
        day partitions in range are opened; symbols are filtered with pushdown."""
        tables = self.files.read_day_files(self.paths.raw_bars_dir(), start, end, symbols, source, columns)
        if not tables:
            return empty_bars()[list(columns)] if columns else empty_bars()
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
