"""The ingestion log: one JSON line per ingest run, one file per month of its as-of date."""

from __future__ import annotations

import json
from collections.abc import Iterable

from kline.lake.files import Store


class IngestLog(Store):
    """``_state/ingest_log/as_of=YYYY-MM.jsonl``. Split by the month of the run's as-of date,
    so appending and planning touch only the newest files and daily cost does not grow with
    history."""

    def append(self, entry: dict) -> None:
        """Append one JSON line to its month's file (rewrite-and-rename under a lock, so it
        works on any filesystem). ``entry["as_of"]`` (or ``entry["end"]``) picks the month."""
        path = self.paths.ingest_log(str(entry.get("as_of") or entry["end"])[:7])
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with self.files.lock("ingest-log"):
            old = self.files.read_text(path) if self.files.exists(path) else ""
            self.files.atomic_write_text(path, old + line)

    def months(self) -> list[str]:
        """Months (``YYYY-MM``) that have log entries, ascending."""
        return [n[6:13] for n in self.files.listdir(self.paths.ingest_log_dir())
                if n.startswith("as_of=") and n.endswith(".jsonl")]

    def read(self, months: Iterable[str] | None = None) -> list[dict]:
        """Log entries of the given months (default: all), oldest month first."""
        out = []
        for m in self.months() if months is None else months:
            path = self.paths.ingest_log(m)
            if self.files.exists(path):
                out.extend(json.loads(x) for x in self.files.read_text(path).splitlines() if x.strip())
        return out
