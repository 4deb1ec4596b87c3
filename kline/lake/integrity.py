"""Checking the lake at rest: every Parquet file against the hashes recorded when it was
written (``kline.lake.files``), and the temporary files killed writes left behind.

Used by ``kline status`` (report) and ``kline repair`` (what to rebuild).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kline.lake.files import CorruptFileError, LakeFiles, stale_tmp

_SKIP = ("_state/prefect-results",)  # Prefect's own records: not kline's Parquet


@dataclass
class IntegrityReport:
    """What ``scan`` found: corrupt files (path -> reason), files with no recorded hash,
    how many verified, and temporary files left by writes that can no longer finish."""

    corrupt: dict[str, str] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    verified: int = 0
    stale_tmp: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.corrupt

    def to_dict(self) -> dict:
        return {"corrupt": [{"path": p, "reason": r} for p, r in sorted(self.corrupt.items())],
                "unverified": sorted(self.unverified), "verified": self.verified,
                "stale_tmp_files": sorted(self.stale_tmp)}

    def lines(self) -> list[str]:
        """The report for a terminal: one summary line, then one line per corrupt file."""
        out = [f"integrity: {self.verified} Parquet files verified, {len(self.unverified)} unverified (written "
               f"before hashes were recorded), {len(self.corrupt)} corrupt, {len(self.stale_tmp)} temporary "
               "files left by killed writes"]
        out += [f"CORRUPT {p}: {r}" for p, r in sorted(self.corrupt.items())]
        if self.corrupt or self.stale_tmp:
            out.append("run `kline repair` to rebuild corrupt files and remove temporary ones")
        return out


def _check(files: LakeFiles, path: str) -> tuple[str, str | None, bool]:
    """(path, reason when corrupt, verified)."""
    try:
        _, verified = files.read_verified(path)
        if not verified:  # no hash recorded: at least it must parse
            files.read_table(path, columns=[])
        return path, None, verified
    except CorruptFileError as exc:
        return path, exc.reason, False


def scan(lake: LakeFiles, threads: int = 4) -> IntegrityReport:
    """Check every Parquet file of ``lake`` against its recorded hashes (files without one
    are parsed instead and counted unverified) and list stale temporary files; paths as the
    lake names them (local paths, ``s3://`` URLs). Reads every
    byte of every Parquet file: hashing runs on ``threads`` threads (hashlib frees the GIL)."""
    root = lake.fs._strip_protocol(lake.root)
    found = lake.fs.find(root) if lake.fs.exists(root) else []
    scheme = "" if lake._local else lake.root.split("://", 1)[0] + "://"  # report s3:// URLs as such
    report = IntegrityReport()
    parquet = []
    for key in found:
        p = scheme + key
        rel = key[len(root):].lstrip("/")
        if rel.startswith(_SKIP):
            continue
        name = rel.rsplit("/", 1)[-1]
        if ".tmp-" in name:
            mtime = lake.fs.modified(key).timestamp() if lake._local else None
            if stale_tmp(name, mtime):
                report.stale_tmp.append(p)
        elif name.endswith(".parquet"):
            parquet.append(p)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for path, reason, verified in pool.map(lambda p: _check(lake, p), parquet):
            if reason is not None:
                report.corrupt[path] = reason
            elif verified:
                report.verified += 1
            else:
                report.unverified.append(path)
    return report
