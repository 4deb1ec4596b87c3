"""The lake's file primitives: atomic writes, reads, listings and locks.

All IO goes through an fsspec filesystem resolved from the lake root, never ``open()`` on
a string path. A crash never leaves a half-written file, and readers only ever open final
names: on local disk a write goes to a temporary name that is renamed into place; on an
object store the whole object is sent in one PUT, which the store makes visible whole or not
at all (no temporary object to leave behind).

Integrity: every Parquet file's sha256 is recorded beside it when written
(``<name>.parquet.hashes``, ``LakePaths.accepted_hashes``) and checked on every read, so a
truncated or bit-flipped file raises ``CorruptFileError`` naming it instead of being read. The
sidecar lists the hashes a reader accepts: before the data file is replaced it accepts the old
and the new version, after it the new one only, so a crash at any point never makes a good
file look corrupt (on S3 too: three whole-object PUTs). A file without a sidecar (written
before hashes were recorded) is read as before and counted "unverified" by
``kline.lake.integrity.scan``.

Disk faults: a write that fails (disk full, IO error) raises ``LakeWriteError`` naming the
path and the errno; the previous version stays readable and no temporary file is left. A
temporary file left by a killed writer (``<name>.tmp-<pid>-<uuid>``) is removed by the next
write of that name once its process is gone, and by the next writer of its partition under
the partition's lock.

Locks: ``flock`` on local disk (one host); on S3 an expiring lock object written with
conditional requests (``kline.lake.locks``), which holds across processes and machines.
"""

from __future__ import annotations

import contextlib
import errno as errno_names
import fcntl
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kline.lake.locks import ObjectLock
from kline.lake.paths import LakePaths

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


class LakeFileError(Exception):
    """A lake file that cannot be read or written; ``str()`` is one line naming ``path``, and
    ``exit_code`` the ``kline`` exit status it ends a command with."""

    path: str
    exit_code = 1


class CorruptFileError(LakeFileError):
    """A Parquet file whose bytes match none of its recorded hashes, or that does not parse."""

    exit_code = 3  # the CLI's

    def __init__(self, path: str, reason: str):
        super().__init__(f"corrupt lake file {path}: {reason}; `kline repair` rebuilds it")
        self.path, self.reason = path, reason

    def __reduce__(self):  # picklable (Prefect persists a failed task's exception)
        return type(self), (self.path, self.reason)


class LakeWriteError(LakeFileError, OSError):
    """A write that failed part-way (disk full, IO error): the previous version is intact and
    no temporary file is left. ``errno`` is the underlying error's."""

    exit_code = 4  # the CLI's

    def __init__(self, path: str, code: int | None, detail: str = ""):
        OSError.__init__(self, code, os.strerror(code) if code else detail)
        self.path, self.detail = path, detail
        name = errno_names.errorcode.get(code, str(code)) if code else "no errno"
        self.message = (f"cannot write lake file {path}: {os.strerror(code) if code else detail} ({name}); "
                        "the previous version is intact")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.path, self.errno, self.detail)


def sha256_of(data) -> str:
    """Hex sha256 of a bytes-like object (an Arrow buffer included, without a copy)."""
    return hashlib.sha256(memoryview(data)).hexdigest()


_TMP_RE = re.compile(r"\.tmp-(?:(\d+)-)?[0-9a-f]{32}$")
LEGACY_TMP_AGE_S = 3600.0  # a temporary name without a pid (older kline) is stale after this


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_tmp(name: str, mtime: float | None = None, now: float | None = None) -> bool:
    """Whether ``name`` is a temporary file of a write that can no longer finish: its process
    is gone (this host), or, for a name without a pid, it is older than an hour."""
    m = _TMP_RE.search(name)
    if not m:
        return False
    if m.group(1):
        return int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))
    return mtime is not None and (now if now is not None else time.time()) - mtime > LEGACY_TMP_AGE_S


# Local files this process has hashed whole and found as recorded, by path: (inode, size,
# mtime, ctime) then. A later read of the same unchanged file skips the hash, so a pushdown
# read of one symbol does not read a whole year file every time; any rewrite, truncation or
# write through the file system changes the key. (Damage that bypasses the file system, a
# disk's own bit rot, is caught by the next process, or by ``kline status``.)
_verified_here: dict[str, tuple[int, int, int, int]] = {}


def _stat_key(p: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


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

    def atomic_write_bytes(self, path: str, data: bytes | pa.Buffer) -> None:
        """Write ``data`` to ``path`` whole or not at all (see the module docstring); an
        ``OSError`` becomes ``LakeWriteError`` naming ``path``."""
        self._put(path, data)

    def _put(self, path: str, data: bytes | pa.Buffer, clean: bool = True) -> None:
        p = self._strip(path)
        try:
            if not self._local:
                self.fs.pipe_file(p, bytes(data))  # one PUT (multipart beyond 100 MB: also all or nothing)
                return
            self._atomic_local(p, data, clean)
        except LakeWriteError:
            raise
        except OSError as exc:
            raise LakeWriteError(path, exc.errno, str(exc)) from exc

    def _atomic_local(self, p: str, data, clean: bool = True) -> None:
        """Write ``data`` to ``<p>.tmp-<pid>-<uuid>`` then rename it into place; with ``clean``,
        temporary files of ``p`` (and of its sidecars) left by dead writers go first."""
        parent, name = p.rsplit("/", 1)
        if not os.path.isdir(parent):
            self.fs.makedirs(parent, exist_ok=True)
        elif clean:
            self.remove_stale_tmp(parent, name)
        tmp = f"{p}.tmp-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)  # atomic on one filesystem
        except BaseException:
            with contextlib.suppress(OSError):  # the disk that failed the write may fail this too
                os.remove(tmp)
            raise

    def remove_stale_tmp(self, folder: str, name: str | None = None, everything: bool = False) -> list[str]:
        """Remove the temporary files in local ``folder`` (of ``name`` and its sidecars only,
        when given) whose writer is gone (``stale_tmp``), or all of them with ``everything``
        (the caller holds the lock every writer of the folder takes). Returns the paths removed."""
        if not self._local:
            return []
        folder = self._strip(folder)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        removed = []
        now = time.time()
        for n in names:
            if ".tmp-" not in n or (name is not None and not n.startswith(f"{name}.")):
                continue
            full = f"{folder}/{n}"
            try:
                if everything and _TMP_RE.search(n) or stale_tmp(n, os.path.getmtime(full), now):
                    os.remove(full)
                    removed.append(full)
            except FileNotFoundError:  # its writer finished or another cleaner was first
                pass
        return removed

    def accepted_hashes(self, path: str) -> set[str] | None:
        """The sha256 hashes recorded for ``path``; None when none is (a file written before
        hashes were recorded, or no file)."""
        try:
            text = self.fs.cat_file(self._strip(self.paths.accepted_hashes(path))).decode("ascii", "replace")
        except FileNotFoundError:
            return None
        return {h for h in text.split() if len(h) == 64}

    def atomic_write_table(
        self, path: str, table: pa.Table, row_group_size: int | None = None, compression: str = "zstd"
    ) -> None:
        """Write ``table`` as Parquet to ``path`` atomically and record its sha256 (the
        accepted-hashes protocol of the module docstring)."""
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression=compression, row_group_size=row_group_size)
        self.publish_verified(path, buf.getvalue())

    def publish_verified(self, path: str, data: bytes | pa.Buffer) -> None:
        """Put ``data`` at ``path`` with its hash recorded: the sidecar accepts old and new
        before the rename and the new one after, so a crash never leaves a good file unaccepted."""
        digest = sha256_of(data)
        sidecar = self.paths.accepted_hashes(path)
        old = self.accepted_hashes(path)
        before = None
        # an existing file without hashes stays unverified until the new version is in place
        if old is not None or not self.exists(path):
            before = sorted((old or set()) | {digest})
            self._put(sidecar, ("\n".join(before) + "\n").encode(), clean=False)
        self._put(path, data)  # also removes dead writers' temporary files of the sidecar
        if before != [digest]:
            self._put(sidecar, f"{digest}\n".encode(), clean=False)

    def remove(self, path: str) -> None:
        """Delete a data file and its recorded hashes (either may be missing)."""
        for p in (path, self.paths.accepted_hashes(path)):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self._strip(p))

    def atomic_write_text(self, path: str, text: str) -> None:
        self.atomic_write_bytes(path, text.encode("utf-8"))

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open(self._strip(path), "rb") as f:
            return f.read()

    def _read_buffer(self, path: str) -> pa.Buffer:
        p = self._strip(path)
        if self._local:
            with pa.OSFile(p, "rb") as f:
                return f.read_buffer()
        return pa.py_buffer(self.fs.cat_file(p))

    def read_verified(self, path: str) -> tuple[pa.Buffer, bool]:
        """The bytes of ``path`` and whether a recorded hash vouched for them (False: none
        recorded). Raises ``CorruptFileError`` when they match none of the recorded hashes."""
        last = None
        for attempt in range(3):  # a mismatch may be a writer's rename between our two reads
            if attempt:
                time.sleep(0.05 * attempt)  # let that writer record its hash
            accepted = self.accepted_hashes(path)
            data = self._read_buffer(path)
            if accepted is None:
                return data, False
            digest = sha256_of(data)
            if digest in accepted:
                return data, True
            if last == (accepted, digest):
                break
            last = (accepted, digest)
        raise CorruptFileError(path, f"its {data.size} bytes (sha256 {digest[:12]}) match no hash recorded "
                                     "when it was written (truncated or altered at rest)")

    def read_table(self, path: str, columns: Sequence[str] | None = None, filters=None) -> pa.Table:
        """Read Parquet at ``path`` after checking its bytes against the recorded hash
        (``CorruptFileError`` naming the path when they differ or, unrecorded, do not parse)."""
        # an Arrow buffer, not a Python file object: none of Arrow's IO threads holds a Python
        # object that it could release during interpreter exit (which aborted processes:
        # "terminate called without an active exception")
        columns = list(columns) if columns else None
        p = self._strip(path)
        key = _stat_key(p) if self._local else None
        if key is not None and _verified_here.get(p) == key:
            # checked whole by this process and unchanged since: Arrow reads only what it needs
            return pq.read_table(p, filesystem=self.fs, columns=columns, filters=filters)
        data, verified = self.read_verified(path)
        if verified and key is not None and _stat_key(p) == key:
            _verified_here[p] = key
        try:
            return pq.read_table(pa.BufferReader(data), columns=columns, filters=filters)
        except (pa.ArrowException, OSError) as exc:
            if verified:  # the bytes are the ones written: a caller's error, not corruption
                raise
            raise CorruptFileError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None

    def listdir(self, path: str) -> list[str]:
        """Base names under ``path``; empty when it does not exist."""
        p = self._strip(path)
        if not self.fs.exists(p):
            return []
        return sorted(x.rstrip("/").rsplit("/", 1)[-1] for x in self.fs.ls(p, detail=False))

    def source_tables(self, folder: str, source: str | None = None, symbols: list[str] | None = None,
                      columns: Sequence[str] | None = None) -> list[pa.Table]:
        """The ``<source>.parquet`` files in ``folder`` (one source or all), filtered to ``symbols``."""
        filters = [("symbol", "in", symbols)] if symbols is not None else None
        return [self.read_table(f"{folder}/{n}", columns=columns, filters=filters) for n in self.listdir(folder)
                if n.endswith(".parquet") and ".tmp-" not in n and (source is None or n == f"{source}.parquet")]

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
            return self._locked_partition(folder)
        rel = folder[len(self._strip(self.root)):].strip("/")
        return self._object_lock(self.paths.partition_lock(rel))

    @contextlib.contextmanager
    def _locked_partition(self, folder: str) -> Iterator[None]:
        with self._flock(folder, folder=True):
            # every writer of the folder holds this lock: any temporary file in it is a dead one's
            self.remove_stale_tmp(folder, everything=True)
            yield

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
