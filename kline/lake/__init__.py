"""The Parquet data lake: ``Lake`` does the file IO (atomic writes, locks) and holds one store
per layer, each in its own module:

    paths.py      every path (the layout is documented there)
    files.py      atomic writes, reads, listings, locks; how an object store is reached
    locks.py      the lock on an object store (S3 conditional writes)
    raw.py        ``lake.raw``: bars as fetched, day files (daily runs) and month files (backfills)
    partitions.py day and month files of a raw table, read and written as one
    curated.py    ``lake.curated``: validated bars, one partition per year
    reference.py  ``lake.reference``: adjustment factors, limit prices, listings, ST periods
    log.py        ``lake.ingest_log``: one JSON line per ingest run
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kline.lake.curated import CuratedBars
from kline.lake.files import (
    LakeFiles,
    WriteResult,
    configure_storage,
    content_hash,
    storage_options,
)
from kline.lake.log import IngestLog
from kline.lake.paths import LakePaths, resolve_root
from kline.lake.raw import RawBars
from kline.lake.reference import ReferenceData

if TYPE_CHECKING:
    from kline.config import StorageConfig

__all__ = ["Lake", "LakePaths", "WriteResult", "configure_storage", "content_hash", "resolve_root",
           "storage_options"]


class Lake(LakeFiles):
    """Reads and writes the lake under ``root`` (a local path or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str], storage: StorageConfig | None = None):
        super().__init__(root, storage)
        self.raw, self.curated = RawBars(self), CuratedBars(self)
        self.reference, self.ingest_log = ReferenceData(self), IngestLog(self)
        # the names most callers use, kept on the lake itself
        self.write_raw_bars, self.read_raw_bars, self.raw_dates = self.raw.write, self.raw.read, self.raw.dates
        self.read_curated_bars, self.write_curated_bars = self.curated.read, self.curated.write
        self.curated_years, self.curated_fingerprint = self.curated.years, self.curated.fingerprint
        self.delete_curated_rows, self.read_ingest_log = self.curated.delete, self.ingest_log.read
        self.read_adj_factor = self.reference.read_adj_factor
        self.read_instrument_facts = self.reference.instrument_facts
