"""Every path in the lake, built from its root: pure string functions, no IO.

Layout (relative to the root)::

    raw/bars/trade_date=YYYY-MM-DD/<source>.parquet    provider output: a day file (daily runs)
    raw/bars/month=YYYY-MM/<source>.parquet            ... or a month file (backfills)
    raw/adj_factor/{trade_date=YYYY-MM-DD,month=YYYY-MM}/<source>.parquet
    raw/stk_limit/{trade_date=YYYY-MM-DD,month=YYYY-MM}/<source>.parquet   exchange limit prices
    reference/listings/<source>.parquet  reference/st_periods/<source>.parquet
                                                       instrument facts (kline.rules)
    curated/bars/year=YYYY/part.parquet                validated rows
    quarantine/bars/trade_date=YYYY-MM-DD/<run>.parquet
    validation/results/<run>.json  validation/docs/    GX results, Data Docs
    features/<fingerprint>/...                         feature frames
    models/<name>/<version>/  models/<name>/champion.json
    backtests/<run>/  reports/<run_date>/
    _state/ingest_log/as_of=YYYY-MM.jsonl  _state/locks/  _state/prefect-results/

The raw tables hold day files and month files side by side, read as one
(``kline.lake.partitions``): for a source and a day, a day file wins over the month file's
rows of that day. The month folder is the lock of both (``LakeFiles.lock_partition``).

Every Parquet file ``<name>.parquet`` has ``<name>.parquet.hashes`` beside it
(``kline.lake.files``: the hashes a reader accepts).
"""

from __future__ import annotations

import datetime as dt
import os
import re

import pyarrow as pa

from kline.rules import LISTING_SCHEMA, ST_SCHEMA

REFERENCE_TABLES: dict[str, pa.Schema] = {"listings": LISTING_SCHEMA, "st_periods": ST_SCHEMA}

_PART_RE = re.compile(r"^trade_date=(\d{4}-\d{2}-\d{2})$")
_MONTH_RE = re.compile(r"^month=(\d{4}-\d{2})$")
RAW_KINDS = ("bars", "adj_factor", "stk_limit")
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


def partition_day(name: str) -> dt.date | None:
    """The date of a ``trade_date=YYYY-MM-DD`` folder name; None for any other name."""
    m = _PART_RE.match(name)
    return dt.date.fromisoformat(m.group(1)) if m else None


def partition_month(name: str) -> str | None:
    """The ``YYYY-MM`` of a ``month=YYYY-MM`` folder name; None for any other name."""
    m = _MONTH_RE.match(name)
    return m.group(1) if m else None


def month_of(day: dt.date) -> str:
    """``YYYY-MM`` of a date: the month partition holding it."""
    return f"{day.year:04d}-{day.month:02d}"


class LakePaths:
    """Builds every path in the lake from its root. Pure string functions, no IO."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = resolve_root(root)

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _day_file(self, kind: str, trade_date: dt.date, source: str) -> str:
        return self._join("raw", kind, f"trade_date={trade_date.isoformat()}",
                          f"{_safe_name(source, 'source')}.parquet")

    def raw_dir(self, kind: str) -> str:
        """Folder of one raw table (``bars``, ``adj_factor``, ``stk_limit``)."""
        if kind not in RAW_KINDS:
            raise ValueError(f"unknown raw table {kind!r}: one of {', '.join(RAW_KINDS)}")
        return self._join("raw", kind)

    def raw_day(self, kind: str, trade_date: dt.date, source: str) -> str:
        """One source's day file of a raw table."""
        self.raw_dir(kind)
        return self._day_file(kind, trade_date, source)

    def raw_month(self, kind: str, month: str, source: str) -> str:
        """One source's month file of a raw table (``month``: ``YYYY-MM``), written by backfills."""
        if not _MONTH_RE.match(f"month={month}"):
            raise ValueError(f"ill-formed month {month!r}")
        return f"{self.raw_dir(kind)}/month={month}/{_safe_name(source, 'source')}.parquet"

    def raw_bars_dir(self) -> str:
        return self._join("raw", "bars")

    def raw_bars(self, trade_date: dt.date, source: str) -> str:
        return self._day_file("bars", trade_date, source)

    def raw_adj_factor(self, trade_date: dt.date, source: str) -> str:
        return self._day_file("adj_factor", trade_date, source)

    def raw_adj_factor_dir(self) -> str:
        return self._join("raw", "adj_factor")

    def raw_stk_limit(self, trade_date: dt.date, source: str) -> str:
        return self._day_file("stk_limit", trade_date, source)

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

    def partition_lock(self, folder: str) -> str:
        """The lock object of a partition folder (relative to the root) on an object store:
        ``raw/bars/trade_date=2024-01-02`` -> ``_state/locks/part.raw.bars.trade_date-2024-01-02.lock``."""
        return self.lock("part." + folder.strip("/").replace("/", ".").replace("=", "-"))

    @staticmethod
    def accepted_hashes(path: str) -> str:
        """Beside a Parquet file: the sha256 of each version of it a reader may accept."""
        return f"{path}.hashes"

    def prefect_results(self) -> str:
        return self._join("_state", "prefect-results")
