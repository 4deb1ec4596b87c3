"""The lake's file primitives: atomic writes, reads, listings and locks.

All IO goes through an fsspec filesystem resolved from the lake root, never ``open()`` on
a string path. A crash never leaves a half-written file, and readers only ever open final
names: on local disk a write goes to a temporary name that is renamed into place; on an
object store the whole object is sent in one PUT, which the store makes visible whole or not
at all (no temporary object to leave behind).

Locks: ``flock`` on local disk (one host); on S3 an expiring lock object written with
conditional requests (``kline.lake.locks``), which holds across processes and machines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kline.lake.locks import ObjectLock
from kline.lake.paths import LakePaths, partition_day

if TYPE_CHECKING:
    from kline.config import StorageConfig

_default_storage: StorageConfig | None = None


def configure_storage(storage: StorageConfig | None) -> None:
    """Set how this process reaches an object-store lake when a ``Lake`` is not given its own
    ``storage`` (the flows call it with the run's settings)."""
    global _default_storage
    _default_storage = storage


def storage_options(root: str, storage: StorageConfig | None = None) -> dict[str, Any]:
    """fsspec options for the filesystem of ``root`` from ``storage`` (default: the process's);
    empty fields are left to the AWS variables and files. Listings are never cached: other
    processes write the same lake."""
    if not root.startswith(("s3://", "s3a://")):
        return {}
    cfg = storage if storage is not None else _default_storage
    opts: dict[str, Any] = {"use_listings_cache": False}
    if cfg is None:
        return opts
    if cfg.endpoint_url:
        opts["endpoint_url"] = cfg.endpoint_url
    if cfg.region:
        opts["client_kwargs"] = {"region_name": cfg.region}
    if cfg.profile:
        opts["profile"] = cfg.profile
    if cfg.access_key_id:
        opts["key"], opts["secret"] = cfg.access_key_id, cfg.secret_access_key
    return opts


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


class LakeFiles:
    """Atomic file IO and locks under ``root`` (a local path or an fsspec URL)."""

    def __init__(self, root: str | os.PathLike[str], storage: StorageConfig | None = None):
        self.paths = LakePaths(root)
        self.root = self.paths.root
        self.storage = storage if storage is not None else _default_storage
        self.fs, _ = fsspec.core.url_to_fs(self.root, **storage_options(self.root, self.storage))
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self._local = "file" in protocols
        self._s3 = bool({"s3", "s3a"} & set(protocols))

    def _strip(self, path: str) -> str:
        return self.fs._strip_protocol(path)

    def exists(self, path: str) -> bool:
        p = self._strip(path)
        return os.path.exists(p) if self._local else self.fs.exists(p)

    def atomic_write_bytes(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` whole or not at all (see the module docstring)."""
        p = self._strip(path)
        if not self._local:
            self.fs.pipe_file(p, bytes(data))  # one PUT (multipart beyond 100 MB: also all or nothing)
            return
        self._atomic_local(p, lambda f: f.write(data))

    def _atomic_local(self, p: str, write) -> None:
        """Write through ``write(file)`` to ``<p>.tmp-<uuid>`` then rename it into place."""
        parent = p.rsplit("/", 1)[0]
        if not os.path.isdir(parent):
            self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{p}.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, p)  # atomic on one filesystem
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def atomic_write_table(
        self, path: str, table: pa.Table, row_group_size: int | None = None, compression: str = "zstd"
    ) -> None:
        def write(f) -> None:
            pq.write_table(table, f, compression=compression, row_group_size=row_group_size)

        if self._local:
            self._atomic_local(self._strip(path), write)
            return
        buf = pa.BufferOutputStream()
        write(buf)
        self.atomic_write_bytes(path, buf.getvalue().to_pybytes())

    def atomic_write_text(self, path: str, text: str) -> None:
        self.atomic_write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(self._strip(path), "rb") as f:
            return f.read()

    def read_table(self, path: str, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        # a path, not a Python file object: Arrow reads local files natively, so none of its
        # IO threads holds a Python object that it could release during interpreter exit
        # (which aborted processes: "terminate called without an active exception")
        return pq.read_table(self._strip(path), filesystem=self.fs, columns=list(columns) if columns else None,
                             filters=filters)

    def listdir(self, path: str) -> list[str]:
        """Base names under ``path``; empty when it does not exist."""
        p = self._strip(path)
        if not self.fs.exists(p):
            return []
        return sorted(x.rstrip("/").rsplit("/", 1)[-1] for x in self.fs.ls(p, detail=False))

    def day_partitions(self, folder: str, start: dt.date | None = None,
                       end: dt.date | None = None) -> list[dt.date]:
        """Dates of the ``trade_date=`` folders under ``folder``, within ``[start, end]``."""
        days = (partition_day(n) for n in self.listdir(folder))
        return [d for d in days if d is not None and (start is None or d >= start) and (end is None or d <= end)]

    def source_tables(self, folder: str, source: str | None = None, symbols: list[str] | None = None,
                      columns: Sequence[str] | None = None) -> list[pa.Table]:
        """The ``<source>.parquet`` files in ``folder`` (one source or all), filtered to ``symbols``."""
        filters = [("symbol", "in", symbols)] if symbols is not None else None
        return [self.read_table(f"{folder}/{n}", columns=columns, filters=filters) for n in self.listdir(folder)
                if n.endswith(".parquet") and ".tmp-" not in n and (source is None or n == f"{source}.parquet")]

    def read_day_files(self, folder: str, start: dt.date | None, end: dt.date | None,
                       symbols: Iterable[str] | None = None, source: str | None = None,
                       columns: Sequence[str] | None = None) -> list[pa.Table]:
        """The day files under ``folder`` dated in ``[start, end]`` (only those partitions are
        opened), of one source or all, filtered to ``symbols`` with pushdown."""
        symbols = list(symbols) if symbols is not None else None
        return [t for d in self.day_partitions(folder, start, end)
                for t in self.source_tables(f"{folder}/trade_date={d.isoformat()}", source, symbols, columns)]

    @contextlib.contextmanager
    def _flock(self, target: str, folder: bool) -> Iterator[None]:
        """``flock`` on a folder (created if missing) or on a lock file."""
        os.makedirs(target if folder else os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_RDONLY) if folder else os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _object_lock(self, lock_path: str) -> contextlib.AbstractContextManager[None]:
        if not self._s3:
            raise NotImplementedError(f"no lock for the lake's filesystem {self.fs.protocol!r}: "
                                      "use a local path or s3://")
        ttl, timeout = (self.storage.lock_ttl_s, self.storage.lock_timeout_s) if self.storage else (120.0, 600.0)
        return ObjectLock(self.fs, self._strip(lock_path), ttl, timeout)

    def lock_partition(self, path: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock on the partition folder holding ``path``. Locally the folder locks
        itself (a new day costs no extra lock file); on S3 a lock object under ``_state/locks``."""
        folder = self._strip(path).rsplit("/", 1)[0]
        if self._local:
            return self._flock(folder, folder=True)
        rel = folder[len(self._strip(self.root)):].strip("/")
        return self._object_lock(self.paths.partition_lock(rel))

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive lock named ``key`` (``_state/locks``): across processes on one host for a
        local lake, across machines on S3."""
        if self._local:
            return self._flock(self._strip(self.paths.lock(key)), folder=False)
        return self._object_lock(self.paths.lock(key))


class Store:
    """One layer of the lake: its reads and writes, done through the lake's files."""

    def __init__(self, files: LakeFiles):
        self.files, self.paths = files, files.paths
