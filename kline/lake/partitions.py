"""Day files and month files of one raw table, read and written as one.

A raw table (``raw/bars``, ``raw/adj_factor``, ``raw/stk_limit``) holds per source day files
(``trade_date=YYYY-MM-DD/<source>.parquet``, written by daily runs) and month files
(``month=YYYY-MM/<source>.parquet``, written by backfills: 240 files instead of 5 000 for
twenty years). The rules, per source:

- Reading: a day that has a day file is that file, whole; the month file's rows of that day
  are ignored. A day without one is the month file's rows of that day.
- A month write (``layout="month"``) folds the month's day files in (each replacing the month
  file's rows of its day), applies the write, writes the month file, then removes those day
  files: afterwards the month file alone holds the month.
- A day write (``layout="day"``) starts from the day as read (its day file, else the month
  file's rows of that day), so the day file it writes holds the whole day; then the month
  file drops that day, so a day lives in one file. A day left with no rows loses its day
  file, and the month file that day. (A month file is rewritten only when a day write
  touches a day it holds: a re-fetch of a backfilled day, not the next session.)
- Every write of a month, either layout, any source, holds the lock of the month folder
  (``LakeFiles.lock_partition``), and lists the day files under it. Each file is replaced
  atomically. A month write writes the month file before it removes the folded day files: a
  crash in between leaves day files that still win with their old content (those days read
  as before the write, the others as after) and the re-run write finishes the fold; a day
  write writes its day files before it drops their days from the month file, and drops an
  emptied day from the month file before it removes that day's file.
- Reads take no lock: a read that listed a day file which a month write then folded away
  lists and reads again.

A write says which stored rows it replaces with ``drop(stored) -> mask`` (a fetch's symbols in
its range for bars, the keys it sends for reference data); rows it sends are added as sent.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kline.lake.files import LakeFiles
from kline.lake.paths import month_of, partition_day, partition_month

DAY, MONTH = "day", "month"
LAYOUTS = (DAY, MONTH)

Drop = Callable[[pa.Table], pa.Array]


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First and last calendar day of ``YYYY-MM``."""
    first = dt.date.fromisoformat(f"{month}-01")
    nxt = dt.date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def months_between(start: dt.date, end: dt.date) -> list[str]:
    """Every ``YYYY-MM`` from ``start``'s month to ``end``'s, inclusive."""
    out, y, m = [], start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = y + (m == 12), m % 12 + 1
    return out


def _is_data(name: str) -> bool:
    return name.endswith(".parquet") and ".tmp-" not in name


def _any(mask: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.any(mask).as_py()) if len(mask) else False


def _dates(values: Iterable[dt.date]) -> pa.Array:
    return pa.array(sorted(set(values)), pa.date32())


class DayMonthTable:
    """One raw table (``kind``: ``bars``, ``adj_factor``, ``stk_limit``) of ``schema``, stored as
    day files and month files under ``raw/<kind>/`` (rules in the module docstring)."""

    def __init__(self, files: LakeFiles, kind: str, schema: pa.Schema, compression: str = "snappy"):
        self.files, self.kind, self.schema, self.compression = files, kind, schema, compression
        self.paths = files.paths
        self.dir = files.paths.raw_dir(kind)

    # -- listings ---------------------------------------------------------------------------

    def _names(self, folder: str) -> list[str]:
        if self.files._local:  # a plain listing: this runs once per month written, under its lock
            p = self.files._strip(folder)
            return sorted(os.listdir(p)) if os.path.isdir(p) else []
        return self.files.listdir(folder)

    def _partitions(self, start: dt.date | None, end: dt.date | None) -> tuple[list[dt.date], list[str]]:
        """Day folders dated in ``[start, end]`` and month folders overlapping it."""
        names = self._names(self.dir)
        lo, hi = (month_of(start) if start else None), (month_of(end) if end else None)
        days = [d for d in map(partition_day, names)
                if d is not None and (start is None or d >= start) and (end is None or d <= end)]
        months = [m for m in map(partition_month, names)
                  if m is not None and (lo is None or m >= lo) and (hi is None or m <= hi)]
        return days, months

    def years(self) -> list[int]:
        """Years with a day or month folder, from the folder names alone (no file is read)."""
        days, months = self._partitions(None, None)
        return sorted({d.year for d in days} | {int(m[:4]) for m in months})

    def _sources(self, folder: str, source: str | None = None) -> list[str]:
        return [n[:-8] for n in self._names(folder) if _is_data(n) and (source is None or n == f"{source}.parquet")]

    def _day_files(self, month: str, source: str) -> dict[dt.date, str]:
        """``source``'s day files of ``month`` (listed now: call it under the month's lock)."""
        prefix = f"trade_date={month}-"
        out = {}
        for n in self._names(self.dir):
            d = partition_day(n) if n.startswith(prefix) else None
            if d is not None and f"{source}.parquet" in self._names(f"{self.dir}/{n}"):
                out[d] = self.paths.raw_day(self.kind, d, source)
        return out

    # -- reads ------------------------------------------------------------------------------

    def _stored(self, path: str, filters=None) -> pa.Table:
        """A file's rows in this table's schema, for a merge."""
        t = self.files.read_table(path, filters=filters or None)
        return t.select(self.schema.names).cast(self.schema)

    def _read(self, path: str, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        """A file's rows as stored (a raw file may break the schema: validation says so)."""
        return self.files.read_table(path, columns=columns, filters=filters or None)

    @staticmethod
    def _listed_then_read(read: Callable[[], list]) -> list:
        """``read()`` again when a file it listed was gone when opened: a month write folding
        day files (or a month emptied) in between; the next listing sees the result whole."""
        for attempt in range(4):
            try:
                return read()
            except FileNotFoundError:
                if attempt == 3:
                    raise
        raise AssertionError("unreachable")

    def read(self, start: dt.date | None = None, end: dt.date | None = None, symbols: Iterable[str] | None = None,
             source: str | None = None, columns: Sequence[str] | None = None) -> list[pa.Table]:
        """Rows dated in ``[start, end]`` of one source or all, of ``symbols`` (pushed down),
        day and month files together by the rules above, one table per file, by source.
        Only the partitions in range are opened."""
        symbols = list(symbols) if symbols is not None else None
        return self._listed_then_read(lambda: self._read_all(start, end, symbols, source, columns))

    def _read_all(self, start: dt.date | None, end: dt.date | None, symbols: list[str] | None,
                  source: str | None, columns: Sequence[str] | None) -> list[pa.Table]:
        sym = [("symbol", "in", symbols)] if symbols is not None else []
        rng = ([("trade_date", ">=", start)] if start else []) + ([("trade_date", "<=", end)] if end else [])
        cols = list(dict.fromkeys([*columns, "trade_date"])) if columns is not None else None
        days, months = self._partitions(start, end)
        found: list[tuple[str, pa.Table]] = []
        shadow: dict[str, set[dt.date]] = {}
        for d in days:
            folder = f"{self.dir}/trade_date={d.isoformat()}"
            for src in self._sources(folder, source):
                shadow.setdefault(src, set()).add(d)
                found.append((src, self._read(f"{folder}/{src}.parquet", columns, sym)))
        for m in months:
            folder = f"{self.dir}/month={m}"
            for src in self._sources(folder, source):
                t = self._read(f"{folder}/{src}.parquet", cols, sym + rng)
                if shadow.get(src):
                    t = t.filter(pc.invert(pc.is_in(t.column("trade_date"), value_set=_dates(shadow[src]))))
                found.append((src, t.select(list(columns)) if columns is not None else t))
        return [t for _, t in sorted(found, key=lambda x: x[0])]  # stable: a source's files stay in date order

    def dates(self, start: dt.date | None = None, end: dt.date | None = None) -> list[dt.date]:
        """Days in ``[start, end]`` with a day folder or rows in a month file."""
        return self._listed_then_read(lambda: self._dates(start, end))

    def _dates(self, start: dt.date | None, end: dt.date | None) -> list[dt.date]:
        days, months = self._partitions(start, end)
        rng = ([("trade_date", ">=", start)] if start else []) + ([("trade_date", "<=", end)] if end else [])
        out = set(days)
        for m in months:
            folder = f"{self.dir}/month={m}"
            for src in self._sources(folder):
                t = self.files.read_table(f"{folder}/{src}.parquet", columns=["trade_date"], filters=rng or None)
                out.update(pc.unique(t.column("trade_date")).to_pylist())
        return sorted(out)

    # -- writes -----------------------------------------------------------------------------

    def write(self, rows: pa.Table, source: str, drop: Drop, span: tuple[dt.date, dt.date] | None = None,
              layout: str = DAY) -> list[str]:
        """Merge ``rows`` (this table's schema, non-null ``trade_date``) of ``source``: in each
        month that ``rows`` or ``span`` touch, the stored rows ``drop`` marks are replaced by
        ``rows``, written as day files or month files (``layout``), one month lock at a time.
        Returns the partitions written or emptied (``trade_date=…`` / ``month=…``)."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
        rows = rows.select(self.schema.names).cast(self.schema).sort_by([("trade_date", "ascending")])
        days = rows.column("trade_date").to_numpy()  # sorted: each month is one slice
        months = sorted({month_of(d) for d in pc.unique(rows.column("trade_date")).to_pylist()}
                        | set(months_between(*span) if span else []))
        out: list[str] = []
        for m in months:
            first, last = month_bounds(m)
            a, b = np.searchsorted(days, np.datetime64(first)), np.searchsorted(days, np.datetime64(last), "right")
            mine = rows.slice(a, b - a)
            clip = (max(span[0], first), min(span[1], last)) if span else None
            with self.files.lock_partition(self.paths.raw_month(self.kind, m, source)):
                if layout == MONTH:
                    out += self._write_month(m, mine, source, drop)
                else:
                    out += self._write_days(m, mine, source, drop, clip)
        return out

    def _put(self, path: str, table: pa.Table) -> None:
        """Write ``table`` sorted by day and symbol (stable: a fetch's duplicates stay in order),
        or remove ``path`` when it is empty."""
        if table.num_rows:
            table = table.sort_by([("trade_date", "ascending"), ("symbol", "ascending")])
            self.files.atomic_write_table(path, table, compression=self.compression)
        elif self.files.exists(path):
            self.files.remove(path)

    def _remove_day(self, path: str) -> None:
        self.files.remove(path)  # with its recorded hashes, so the folder can go
        if self.files._local:  # an emptied day folder would still list as a raw date
            try:
                os.rmdir(self.files._strip(path).rsplit("/", 1)[0])
            except OSError:
                pass  # another source's file is still there

    def _write_month(self, month: str, new: pa.Table, source: str, drop: Drop) -> list[str]:
        path = self.paths.raw_month(self.kind, month, source)
        day_files = self._day_files(month, source)
        stored = []
        if self.files.exists(path):
            t = self._stored(path)
            if day_files:
                t = t.filter(pc.invert(pc.is_in(t.column("trade_date"), value_set=_dates(day_files))))
            stored.append(t)
        stored += [self._stored(day_files[d]) for d in sorted(day_files)]
        old = pa.concat_tables(stored) if stored else self.schema.empty_table()
        mask = drop(old)
        if not day_files and new.num_rows == 0 and not _any(mask):
            return []  # nothing stored changes
        self._put(path, pa.concat_tables([old.filter(pc.invert(mask)), new]))
        for p in day_files.values():  # after the month file: a crash before leaves them winning
            self._remove_day(p)
        return [f"month={month}"]

    def _write_days(self, month: str, new: pa.Table, source: str, drop: Drop,
                    span: tuple[dt.date, dt.date] | None) -> list[str]:
        mpath = self.paths.raw_month(self.kind, month, source)
        day_files = self._day_files(month, source)
        touched = set(pc.unique(new.column("trade_date")).to_pylist())
        in_month = None
        if self.files.exists(mpath):
            lo, hi = min([*touched, *(span[:1] if span else [])]), max([*touched, *(span[1:] if span else [])])
            in_month = self._stored(mpath, filters=[("trade_date", ">=", lo), ("trade_date", "<=", hi)])
        if span:  # stored days in the span may hold rows the write replaces
            touched |= {d for d in day_files if span[0] <= d <= span[1]}
            if in_month is not None:
                touched |= set(pc.unique(in_month.column("trade_date")).to_pylist())
        out, trim, emptied = [], [], []
        for d in sorted(touched):
            if d in day_files:
                old = self._stored(day_files[d])
            elif in_month is not None:
                old = in_month.filter(pc.equal(in_month.column("trade_date"), d))
            else:
                old = self.schema.empty_table()
            mask = drop(old)
            mine = new.filter(pc.equal(new.column("trade_date"), d)) if new.num_rows else new
            if mine.num_rows == 0 and not _any(mask):
                continue
            kept = pa.concat_tables([old.filter(pc.invert(mask)), mine])
            path = self.paths.raw_day(self.kind, d, source)
            if kept.num_rows:
                self._put(path, kept)
            elif d in day_files:
                emptied.append(path)
            if in_month is not None and _any(pc.equal(in_month.column("trade_date"), d)):
                trim.append(d)  # the day now lives in its day file (or nowhere)
            out.append(f"trade_date={d.isoformat()}")
        if trim:  # after the new day files, before the emptied ones go: each day reads whole
            t = self._stored(mpath)
            self._put(mpath, t.filter(pc.invert(pc.is_in(t.column("trade_date"), value_set=_dates(trim)))))
        for path in emptied:
            self._remove_day(path)
        return out
