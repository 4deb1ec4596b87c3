"""The Parquet data lake: every path, every read and write, locks and the ingestion log.

All IO goes through an fsspec filesystem resolved from the lake root, never ``open()`` on
a string path. Writes go to a temporary name and are renamed into place, so a crash never
leaves a half-written file; readers only ever open final names.

Layout (relative to the root)::

    raw/bars/trade_date=YYYY-MM-DD/<source>.parquet    provider output, one file per day
    raw/adj_factor/trade_date=YYYY-MM-DD/<source>.parquet
    raw/stk_limit/trade_date=YYYY-MM-DD/<source>.parquet    exchange limit prices per day
    reference/listings/<source>.parquet  reference/st_periods/<source>.parquet
                                                       instrument facts (kline.rules)
    curated/bars/year=YYYY/part.parquet                validated rows
    quarantine/bars/trade_date=YYYY-MM-DD/<run>.parquet
    validation/results/<run>.json  validation/docs/    GX results, Data Docs
    features/<fingerprint>/...                         feature frames
    models/<name>/<version>/  models/<name>/champion.json
    backtests/<run>/  reports/<run_date>/
    _state/ingest_log/as_of=YYYY-MM.jsonl  _state/locks/  _state/prefect-results/
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kline.rules import LISTING_SCHEMA, ST_SCHEMA, STK_LIMIT_SCHEMA, InstrumentFacts, empty_frame
from kline.schema import ADJ_SCHEMA, BAR_COLUMNS, BAR_SCHEMA, KEY_COLUMNS, empty_bars, to_table

REFERENCE_TABLES: dict[str, pa.Schema] = {"listings": LISTING_SCHEMA, "st_periods": ST_SCHEMA}

_PART_RE = re.compile(r"^trade_date=(\d{4}-\d{2}-\d{2})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _safe_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name) or ".." in name:
        raise ValueError(f"ill-formed {what} {name!r} for a lake path")
    return name


def resolve_root(root: str | os.PathLike[str]) -> str:
    """Absolute local path for a plain path; URLs (``scheme://``) pass through unchanged."""
    root = os.fspath(root)
    if "://" in root:
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


class LakePaths:
    """Builds every path in the lake from its root. Pure string functions, no IO."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = resolve_root(root)

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def raw_bars_dir(self) -> str:
        return self._join("raw", "bars")

    def raw_bars(self, trade_date: dt.date, source: str) -> str:
        return self._join("raw", "bars", f"trade_date={trade_date.isoformat()}",
                          f"{_safe_name(source, 'source')}.parquet")

    def raw_adj_factor(self, trade_date: dt.date, source: str) -> str:
        return self._join("raw", "adj_factor", f"trade_date={trade_date.isoformat()}",
                          f"{_safe_name(source, 'source')}.parquet")

    def raw_adj_factor_dir(self) -> str:
        return self._join("raw", "adj_factor")

    def raw_stk_limit(self, trade_date: dt.date, source: str) -> str:
        return self._join("raw", "stk_limit", f"trade_date={trade_date.isoformat()}",
                          f"{_safe_name(source, 'source')}.parquet")

    def raw_stk_limit_dir(self) -> str:
        return self._join("raw", "stk_limit")

    def reference_dir(self, table: str) -> str:
        """Folder of one instrument-fact table (``listings`` or ``st_periods``)."""
        if table not in REFERENCE_TABLES:
            raise ValueError(f"unknown reference table {table!r}: one of {', '.join(REFERENCE_TABLES)}")
        return self._join("reference", table)

    def reference(self, table: str, source: str) -> str:
        """One provider's rows of an instrument-fact table."""
        return f"{self.reference_dir(table)}/{_safe_name(source, 'source')}.parquet"

    def curated_bars_dir(self) -> str:
        return self._join("curated", "bars")

    def curated_bars(self, year: int) -> str:
        return self._join("curated", "bars", f"year={year:04d}", "part.parquet")

    def curated_fingerprint(self, year: int) -> str:
        """Content hash of the year's partition, written beside it."""
        return self._join("curated", "bars", f"year={year:04d}", "part.sha256")

    def quarantine_bars_dir(self) -> str:
        return self._join("quarantine", "bars")

    def quarantine_bars(self, trade_date: dt.date, run_id: str) -> str:
        return self._join("quarantine", "bars", f"trade_date={trade_date.isoformat()}",
                          f"{_safe_name(run_id, 'run id')}.parquet")

    def validation_results_dir(self) -> str:
        return self._join("validation", "results")

    def validation_result(self, run_id: str) -> str:
        return self._join("validation", "results", f"{_safe_name(run_id, 'run id')}.json")

    def data_docs_dir(self) -> str:
        return self._join("validation", "docs")

    def features_dir(self, fingerprint: str) -> str:
        return self._join("features", _safe_name(fingerprint, "fingerprint"))

    def models_dir(self) -> str:
        return self._join("models")

    def model_dir(self, name: str, version: str) -> str:
        return self._join("models", _safe_name(name, "model name"), _safe_name(version, "version"))

    def champion(self, name: str) -> str:
        return self._join("models", _safe_name(name, "model name"), "champion.json")

    def backtest_dir(self, run: str) -> str:
        return self._join("backtests", _safe_name(run, "backtest run"))

    def reports_dir(self) -> str:
        return self._join("reports")

    def report_dir(self, run_date: dt.date) -> str:
        return self._join("reports", run_date.isoformat())

    def report_html(self, run_date: dt.date) -> str:
        return self._join("reports", run_date.isoformat(), "report.html")

    def docs_server(self) -> str:
        """Where a running ``kline docs`` / ``kline serve`` announces its URL to the tasks."""
        return self._join("_state", "docs-server.json")

    def forecast(self, run_date: dt.date) -> str:
        """The next-session forecast published by the run of ``run_date``."""
        return self._join("reports", run_date.isoformat(), "forecast.csv")

    def reports_index(self) -> str:
        """The page listing every run's report (``kline.serving``)."""
        return self._join("reports", "index.html")

    def metrics_history(self) -> str:
        return self._join("reports", "metrics_history.parquet")

    def ingest_log_dir(self) -> str:
        return self._join("_state", "ingest_log")

    def ingest_log(self, month: str) -> str:
        """One JSON-lines file per month of the runs' as-of date (``YYYY-MM``)."""
        if not re.match(r"^\d{4}-\d{2}$", month):
            raise ValueError(f"ill-formed log month {month!r}")
        return self._join("_state", "ingest_log", f"as_of={month}.jsonl")

    def trade_cal(self, source: str, year: int) -> str:
        """A vendor's trading calendar of one whole year, cached (``kline.calendar``)."""
        return self._join("_state", "calendar", _safe_name(source, "source"), f"{int(year)}.parquet")

    def lock(self, key: str) -> str:
        return self._join("_state", "locks", f"{_safe_name(key, 'lock key')}.lock")

    def prefect_results(self) -> str:
        return self._join("_state", "prefect-results")


@dataclass(frozen=True)
class WriteResult:
    """What a raw write did: partition keys touched, rows written, content hash."""

    partitions: list[str]
    rows: int
    content_hash: str

    def to_dict(self) -> dict:
        return {"partitions": self.partitions, "rows": self.rows, "content_hash": self.content_hash}


def content_hash(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """Stable hash of a frame's values (``ingested_at`` excluded by default), order-sensitive."""
    if columns is None:
        columns = [c for c in df.columns if c != "ingested_at"]
    if df.empty:
        return hashlib.sha256(b"empty").hexdigest()[:16]
    h = pd.util.hash_pandas_object(df[list(columns)], index=False).values
    return hashlib.sha256(np.ascontiguousarray(h).tobytes()).hexdigest()[:16]


class Lake:
    """Reads and writes the lake under ``root`` (a local path or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.paths = LakePaths(root)
        self.root = self.paths.root
        self.fs, _ = fsspec.core.url_to_fs(self.root)
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    # -- primitives ----------------------------------------------------------------------
    def _strip(self, path: str) -> str:
        return self.fs._strip_protocol(path)

    def exists(self, path: str) -> bool:
        p = self._strip(path)
        return os.path.exists(p) if self._local else self.fs.exists(p)

    def atomic_write_bytes(self, path: str, data: bytes) -> None:
        """Write to ``<path>.tmp-<uuid>`` then rename into place."""
        self._atomic(path, lambda f: f.write(data))

    def _atomic(self, path: str, write) -> None:
        p = self._strip(path)
        parent = p.rsplit("/", 1)[0]
        if not (self._local and os.path.isdir(parent)):
            self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{p}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as f:
                write(f)
            self._rename(tmp, p)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def _rename(self, src: str, dst: str) -> None:
        if self._local:
            os.replace(src, dst)  # atomic on one filesystem
        else:
            self.fs.mv(src, dst)

    def atomic_write_table(
        self, path: str, table: pa.Table, row_group_size: int | None = None, compression: str = "zstd"
    ) -> None:
        self._atomic(path, lambda f: pq.write_table(table, f, compression=compression, row_group_size=row_group_size))

    def atomic_write_text(self, path: str, text: str) -> None:
        self.atomic_write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        with self.fs.open(self._strip(path), "rb") as f:
            return f.read().decode("utf-8")

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(self._strip(path), "rb") as f:
            return f.read()

    def read_table(self, path: str, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        with self.fs.open(self._strip(path), "rb") as f:
            return pq.read_table(f, columns=list(columns) if columns else None, filters=filters)

    def listdir(self, path: str) -> list[str]:
        """Base names under ``path``; empty when it does not exist."""
        p = self._strip(path)
        if not self.fs.exists(p):
            return []
        return sorted(x.rstrip("/").rsplit("/", 1)[-1] for x in self.fs.ls(p, detail=False))

    @contextlib.contextmanager
    def _flock(self, target: str, folder: bool) -> Iterator[None]:
        """``flock`` on a folder (created if missing) or on a lock file; no-op off local disk."""
        if not self._local:  # object stores: writers must not overlap
            yield
            return
        os.makedirs(target if folder else os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_RDONLY) if folder else os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def lock_partition(self, path: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock on the folder holding ``path``: partitions lock themselves, so a new
        day costs no extra lock file."""
        return self._flock(self._strip(path).rsplit("/", 1)[0], folder=True)

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock named ``key`` across processes on one host (``_state/locks``)."""
        return self._flock(self._strip(self.paths.lock(key)), folder=False)

    # -- raw layer -----------------------------------------------------------------------
    def write_raw_bars(
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
                if d not in slices and self.exists(self.paths.raw_bars(d, source)):
                    stale.append(d)
        def write_day(day: dt.date) -> str | None:
            part = slices.get(day, table.schema.empty_table())
            path = self.paths.raw_bars(day, source)
            with self.lock_partition(path):
                if self.exists(path):
                    old = self.read_table(path)
                    keep = pc.invert(pc.is_in(old.column("symbol"), value_set=asked))
                    part = pa.concat_tables([old.filter(keep).cast(BAR_SCHEMA), part])
                    part = part.sort_by([("symbol", "ascending")])
                elif part.num_rows == 0:
                    return None
                if part.num_rows == 0:
                    self.fs.rm(self._strip(path))  # the (locked) folder stays, empty
                else:
                    # small day files: snappy writes in half zstd's time; size hardly differs
                    self.atomic_write_table(path, part, compression="snappy")
            return f"trade_date={day.isoformat()}"

        done = [write_day(d) for d in [*slices, *stale]]
        partitions = [p for p in done if p is not None]
        return WriteResult(partitions, len(bars), content_hash(bars))

    def raw_dates(self, start: dt.date | None = None, end: dt.date | None = None) -> list[dt.date]:
        """Trade dates that have a raw partition, within ``[start, end]`` when given."""
        out = []
        for name in self.listdir(self.paths.raw_bars_dir()):
            m = _PART_RE.match(name)
            if not m:
                continue
            d = dt.date.fromisoformat(m.group(1))
            if (start is None or d >= start) and (end is None or d <= end):
                out.append(d)
        return out

    def read_raw_bars(
        self,
        start: dt.date | None = None,
        end: dt.date | None = None,
        symbols: Iterable[str] | None = None,
        source: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Raw bars in ``[start, end]``, optionally for some symbols / one source. Only the
        day partitions in range are opened; symbols are filtered with pushdown."""
        symbols = list(symbols) if symbols is not None else None
        tables = []
        filters = [("symbol", "in", symbols)] if symbols is not None else None
        for d in self.raw_dates(start, end):
            part_dir = self.paths.raw_bars(d, "x").rsplit("/", 1)[0]
            for name in self.listdir(part_dir):
                if not name.endswith(".parquet") or ".tmp-" in name:
                    continue
                if source is not None and name != f"{source}.parquet":
                    continue
                tables.append(self.read_table(f"{part_dir}/{name}", columns=columns, filters=filters))
        if not tables:
            return empty_bars()[list(columns)] if columns else empty_bars()
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)

    def write_raw_adj_factor(self, factors: pd.DataFrame, source: str) -> WriteResult:
        """Merge adjustment factors into day partitions beside raw bars (newest fetch wins)."""
        if factors.empty:
            return WriteResult([], 0, content_hash(factors))
        return self._merge_day_files(factors[ADJ_SCHEMA.names], ADJ_SCHEMA,
                                     lambda day: self.paths.raw_adj_factor(day, source))

    def read_adj_factor(
        self, symbols: Iterable[str] | None = None, start: dt.date | None = None, end: dt.date | None = None
    ) -> pd.DataFrame:
        """Stored adjustment factors (``symbol, trade_date, adj_factor``), all sources."""
        tables = self._read_day_files(self.paths.raw_adj_factor_dir(), symbols, start, end)
        if not tables:
            return ADJ_SCHEMA.empty_table().to_pandas()
        df = pa.concat_tables(tables).to_pandas()
        return df.drop_duplicates(KEY_COLUMNS, keep="last").sort_values(KEY_COLUMNS).reset_index(drop=True)

    def _merge_day_files(self, frame: pd.DataFrame, schema: pa.Schema, path_of) -> WriteResult:
        """Merge rows into one file per trade date (``path_of(day)``): on each day, the rows of
        the symbols in ``frame`` replace the stored ones; one lock per day partition."""
        partitions = []
        for day, part in frame.groupby("trade_date", sort=True):
            path = path_of(day)
            with self.lock_partition(path):
                if self.exists(path):
                    old = self.read_table(path).to_pandas()
                    part = pd.concat([old[~old["symbol"].isin(part["symbol"])], part], ignore_index=True)
                part = part.drop_duplicates(KEY_COLUMNS, keep="last").sort_values("symbol")
                self.atomic_write_table(path, pa.Table.from_pandas(part, schema=schema, preserve_index=False))
            partitions.append(f"trade_date={day.isoformat()}")
        return WriteResult(partitions, len(frame), content_hash(frame))

    def _read_day_files(self, folder: str, symbols: Iterable[str] | None, start: dt.date | None,
                        end: dt.date | None, source: str | None = None) -> list[pa.Table]:
        """The day files under ``folder`` dated in ``[start, end]`` (only those partitions are
        opened), of one source or all, filtered to ``symbols``."""
        filters = [("symbol", "in", list(symbols))] if symbols is not None else None
        tables = []
        for name in self.listdir(folder):
            m = _PART_RE.match(name)
            if not m:
                continue
            d = dt.date.fromisoformat(m.group(1))
            if (start is not None and d < start) or (end is not None and d > end):
                continue
            for f in self.listdir(f"{folder}/{name}"):
                if f.endswith(".parquet") and ".tmp-" not in f and (source is None or f == f"{source}.parquet"):
                    tables.append(self.read_table(f"{folder}/{name}/{f}", filters=filters))
        return tables

    # -- instrument facts ------------------------------------------------------------------
    def write_reference(self, table: str, rows: pd.DataFrame, source: str, symbols: Iterable[str]) -> int:
        """Replace ``source``'s rows of ``symbols`` in an instrument-fact table (``listings``,
        ``st_periods``) with ``rows``; other symbols' rows stay. Returns the rows written."""
        schema = REFERENCE_TABLES[table]
        path = self.paths.reference(table, source)
        asked = set(symbols) | set(rows["symbol"].astype(str)) if len(rows) else set(symbols)
        rows = rows.assign(source=source)[schema.names] if len(rows) else empty_frame(schema)
        with self.lock(f"reference-{table}-{source}"):
            if self.exists(path):
                old = self.read_table(path).to_pandas()
                rows = pd.concat([old[~old["symbol"].isin(asked)], rows], ignore_index=True)
            rows = rows.drop_duplicates().sort_values(list(schema.names[:2]), kind="stable")
            self.atomic_write_table(path, pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
        return len(rows)

    def read_reference(self, table: str, symbols: Iterable[str] | None = None,
                       source: str | None = None) -> pd.DataFrame:
        """Rows of an instrument-fact table, every source (or one), optionally for some symbols."""
        schema = REFERENCE_TABLES[table]
        filters = [("symbol", "in", list(symbols))] if symbols is not None else None
        tables = [self.read_table(f"{self.paths.reference_dir(table)}/{n}", filters=filters)
                  for n in self.listdir(self.paths.reference_dir(table))
                  if n.endswith(".parquet") and ".tmp-" not in n
                  and (source is None or n == f"{source}.parquet")]
        if not tables:
            return empty_frame(schema)
        return pa.concat_tables([t.cast(schema) for t in tables]).to_pandas()

    def write_stk_limit(self, limits: pd.DataFrame, source: str) -> WriteResult:
        """Merge exchange limit prices (``STK_LIMIT_SCHEMA``) into day partitions."""
        if limits.empty:
            return WriteResult([], 0, content_hash(limits))
        return self._merge_day_files(limits.assign(source=source)[STK_LIMIT_SCHEMA.names], STK_LIMIT_SCHEMA,
                                     lambda day: self.paths.raw_stk_limit(day, source))

    def read_stk_limit(self, symbols: Iterable[str] | None = None, start: dt.date | None = None,
                       end: dt.date | None = None, source: str | None = None) -> pd.DataFrame:
        """Stored exchange limit prices in ``[start, end]`` (only those day partitions are opened)."""
        tables = self._read_day_files(self.paths.raw_stk_limit_dir(), symbols, start, end, source)
        if not tables:
            return empty_frame(STK_LIMIT_SCHEMA)
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)

    def read_instrument_facts(self, symbols: Iterable[str], start: dt.date | None = None,
                              end: dt.date | None = None, source: str | None = None) -> InstrumentFacts:
        """Listings, ST periods and the exchange limit prices in ``[start, end]`` of ``symbols``
        from ``source`` (None: every source). Point in time as of ``end``: a delisting or an ST
        period's end after it is not known yet, an ST period starting after it not at all."""
        symbols = list(symbols)
        listings = self.read_reference("listings", symbols, source)
        st = self.read_reference("st_periods", symbols, source)
        if end is not None:
            listings["delist_date"] = listings["delist_date"].where(
                pd.to_datetime(listings["delist_date"]) <= pd.Timestamp(end), None)
            st = st[pd.to_datetime(st["start_date"]) <= pd.Timestamp(end)].copy()
            st["end_date"] = st["end_date"].where(pd.to_datetime(st["end_date"]) <= pd.Timestamp(end), None)
        return InstrumentFacts(listings=listings, st_periods=st,
                               stk_limit=self.read_stk_limit(symbols, start, end, source))

    # -- curated layer ---------------------------------------------------------------------
    def curated_years(self) -> list[int]:
        years = []
        for name in self.listdir(self.paths.curated_bars_dir()):
            if name.startswith("year=") and self.exists(self.paths.curated_bars(int(name[5:]))):
                years.append(int(name[5:]))
        return years

    def read_curated_bars(
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
        for y in self.curated_years():
            if (start is not None and y < start.year) or (end is not None and y > end.year):
                continue
            tables.append(self.read_table(self.paths.curated_bars(y), columns=columns, filters=filters or None))
        if not tables:
            return empty_bars()[list(columns)] if columns else empty_bars()
        df = pa.concat_tables(tables).to_pandas()
        return df.sort_values([c for c in KEY_COLUMNS if c in df.columns], kind="stable").reset_index(drop=True)

    def write_curated_bars(self, bars: pd.DataFrame) -> list[int]:
        """Upsert validated rows into year partitions (unique (symbol, trade_date), sorted)."""
        if bars.empty:
            return []
        bars = bars[BAR_COLUMNS]
        years = pd.to_datetime(bars["trade_date"]).dt.year.to_numpy()
        touched = []
        for y in np.unique(years):
            part = bars[years == y]
            path = self.paths.curated_bars(int(y))
            with self.lock(f"curated-{int(y)}"):
                if self.exists(path):
                    old = self.read_table(path).to_pandas()
                    part = pd.concat([old, part], ignore_index=True)
                part = part.drop_duplicates(KEY_COLUMNS, keep="last").sort_values(KEY_COLUMNS, kind="stable")
                self._write_curated_year(int(y), part)
            touched.append(int(y))
        return touched

    def _write_curated_year(self, year: int, part: pd.DataFrame) -> None:
        self.atomic_write_table(self.paths.curated_bars(year), to_table(part), row_group_size=16_384)
        self.atomic_write_text(self.paths.curated_fingerprint(year), content_hash(part.reset_index(drop=True)))

    def curated_fingerprint(self, end: dt.date | None = None) -> str:
        """Content fingerprint of the curated rows dated ``<= end`` (all when None): changes
        when any of them changes, and not when later rows arrive. Past years read only their
        small sidecar hashes; ``end``'s own year is hashed from its rows up to ``end``."""
        parts = []
        for y in self.curated_years():
            if end is not None and y > end.year:
                continue
            if end is not None and y == end.year:
                part = self.read_table(self.paths.curated_bars(y), filters=[("trade_date", "<=", end)]).to_pandas()
                parts.append(f"{y}<={end}:{content_hash(part.reset_index(drop=True))}")
                continue
            p = self.paths.curated_fingerprint(y)
            parts.append(f"{y}:{self.read_text(p) if self.exists(p) else 'missing'}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def delete_curated_rows(self, keys: pd.DataFrame) -> int:
        """Remove (symbol, trade_date) rows from curated; returns how many were removed."""
        if keys.empty:
            return 0
        removed = 0
        years = pd.to_datetime(keys["trade_date"]).dt.year.to_numpy()
        for y in np.unique(years):
            path = self.paths.curated_bars(int(y))
            with self.lock(f"curated-{int(y)}"):
                if not self.exists(path):
                    continue
                old = self.read_table(path).to_pandas()
                k = keys[years == y]
                drop = pd.MultiIndex.from_frame(old[KEY_COLUMNS]).isin(pd.MultiIndex.from_frame(k[KEY_COLUMNS]))
                if drop.any():
                    removed += int(drop.sum())
                    self._write_curated_year(int(y), old[~drop])
        return removed

    # -- ingestion log ---------------------------------------------------------------------
    # Split by the month of the run's as-of date, so appending and planning touch only the
    # newest files and daily cost does not grow with history.
    def append_ingest_log(self, entry: dict) -> None:
        """Append one JSON line to its month's file (rewrite-and-rename under a lock, so it
        works on any filesystem). ``entry["as_of"]`` (or ``entry["end"]``) picks the month."""
        month = str(entry.get("as_of") or entry["end"])[:7]
        path = self.paths.ingest_log(month)
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with self.lock("ingest-log"):
            old = self.read_text(path) if self.exists(path) else ""
            self.atomic_write_text(path, old + line)

    def ingest_log_months(self) -> list[str]:
        """Months (``YYYY-MM``) that have log entries, ascending."""
        return [n[6:13] for n in self.listdir(self.paths.ingest_log_dir())
                if n.startswith("as_of=") and n.endswith(".jsonl")]

    def read_ingest_log(self, months: Iterable[str] | None = None) -> list[dict]:
        """Log entries of the given months (default: all), oldest month first."""
        out = []
        for m in self.ingest_log_months() if months is None else months:
            path = self.paths.ingest_log(m)
            if self.exists(path):
                out.extend(json.loads(x) for x in self.read_text(path).splitlines() if x.strip())
        return out


# The schema is re-exported for callers that only import the lake.
__all__ = ["BAR_SCHEMA", "Lake", "LakePaths", "WriteResult", "content_hash", "resolve_root"]
