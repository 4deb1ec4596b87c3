"""A lock on an object store, made of one object written with S3 conditional requests.

``PUT`` with ``If-None-Match: *`` creates the lock object only when no other holder has it
(the store decides, atomically); the holder renews it with ``If-Match: <its ETag>`` while it
works and deletes it with ``If-Match`` when done. A holder that died stops renewing: once
its lease (``ttl_s``) has run out, a waiter takes the lock over with ``If-Match`` on the ETag
it saw, so of several waiters exactly one wins. The guarantee holds while every holder
renews within ``ttl_s`` (a process stalled longer than that loses the lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from typing import Any


class LockTimeout(TimeoutError):
    """The lock stayed held by someone else for longer than the caller would wait."""


def _code(exc: BaseException) -> str:
    """The S3 error code behind an s3fs exception (``PreconditionFailed``, ``NoSuchKey``...)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    resp = getattr(cause, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


class ObjectLock:
    """An exclusive, expiring lock held in the object ``path`` (``bucket/key``) of the s3fs
    filesystem ``fs``; use as a context manager."""

    def __init__(self, fs: Any, path: str, ttl_s: float = 120.0, timeout_s: float = 600.0):
        self.fs, self.ttl_s, self.timeout_s = fs, float(ttl_s), float(timeout_s)
        self.bucket, _, self.key = path.partition("/")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._etag: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires_at": time.time() + self.ttl_s}).encode()

    def _put(self, **condition: str) -> str | None:
        """One conditional PUT of the lock object: its new ETag, or None when the condition failed."""
        try:
            out = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=self._body(), **condition)
        except (FileExistsError, OSError) as exc:
            if isinstance(exc, FileExistsError) or _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict",
                                                                   "NoSuchKey", "412", "409"):
                return None
            raise
        return out["ETag"]

    def _current(self) -> tuple[str, float] | None:
        """(ETag, expiry) of the lock object as stored now (one GET, so they belong together),
        or None when there is none."""
        from fsspec.asyn import sync

        async def get() -> tuple[str, bytes]:
            out = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            async with out["Body"] as body:
                return out["ETag"], await body.read()

        try:
            etag, raw = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        try:
            expires = float(json.loads(raw)["expires_at"])
        except (ValueError, KeyError, TypeError):
            expires = 0.0  # unreadable: treat as expired
        return etag, expires

    def acquire(self) -> None:
        """Wait until this process holds the lock (``LockTimeout`` after ``timeout_s``)."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.02
        while True:
            etag = self._put(IfNoneMatch="*")
            if etag is None:
                seen = self._current()
                if seen is not None and seen[1] < time.time():
                    etag = self._put(IfMatch=seen[0])  # take over an expired lease; one waiter wins
            if etag is not None:
                self._etag = etag
                self._stop.clear()
                self._renewer = threading.Thread(target=self._renew, name=f"lock-{self.key}", daemon=True)
                self._renewer.start()
                return
            if time.monotonic() > deadline:
                raise LockTimeout(f"lock s3://{self.bucket}/{self.key} still held after {self.timeout_s:.0f} s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            etag = self._put(IfMatch=self._etag or "")
            if etag is None:  # lost (someone took it over after an expiry): nothing to renew
                return
            self._etag = etag

    def release(self) -> None:
        """Stop renewing and delete the lock object if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=self._etag or "")
        self._etag = None

    def __enter__(self) -> ObjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

