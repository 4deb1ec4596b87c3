"""The Parquet data lake: ``Lake`` does the file IO (atomic writes, locks) and holds one store
per layer, each in its own module:

    paths.py      every path (the layout is documented there)
    files.py      atomic writes, reads, listings, locks
    raw.py        ``lake.raw``: bars as fetched, one file per day and source
    curated.py    ``lake.curated``: validated bars, one partition per year
    reference.py  ``lake.reference``: adjustment factors, limit prices, listings, ST periods
    log.py        ``lake.ingest_log``: one JSON line per ingest run
"""

from __future__ import annotations

import os

from kline.lake.curated import CuratedBars
from kline.lake.files import LakeFiles, WriteResult, content_hash
from kline.lake.log import IngestLog
from kline.lake.paths import LakePaths, resolve_root
from kline.lake.raw import RawBars
from kline.lake.reference import ReferenceData

__all__ = ["Lake", "LakePaths", "WriteResult", "content_hash", "resolve_root"]


class Lake(LakeFiles):
    """Reads and writes the lake under ``root`` (a local path or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str]):
        super().__init__(root)
        self.raw, self.curated = RawBars(self), CuratedBars(self)
        self.reference, self.ingest_log = ReferenceData(self), IngestLog(self)
        # the names most callers use, kept on the lake itself
        self.write_raw_bars, self.read_raw_bars, self.raw_dates = self.raw.write, self.raw.read, self.raw.dates
        self.read_curated_bars, self.write_curated_bars = self.curated.read, self.curated.write
        self.curated_years, self.curated_fingerprint = self.curated.years, self.curated.fingerprint
        self.delete_curated_rows, self.read_ingest_log = self.curated.delete, self.ingest_log.read
        self.read_adj_factor = self.reference.read_adj_factor
        self.read_instrument_facts = self.reference.instrument_facts
