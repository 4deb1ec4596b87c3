"""``kline`` with a disk-fault hook: a local write to a file whose path contains
``KLINE_RELIABILITY_FAIL_PATH`` writes half of its bytes and then fails with the errno named
by ``KLINE_RELIABILITY_FAIL_ERRNO`` (``ENOSPC``, ``EIO``), as a full or failing disk would.
The fault is injected under ``kline.lake.files``: fsspec's local file object, through which
every local lake write goes. Without the variables it is plain ``kline``."""

from __future__ import annotations

import errno
import os
import sys

from fsspec.implementations.local import LocalFileOpener

from flows.cli import main

FAIL_PATH = os.environ.get("KLINE_RELIABILITY_FAIL_PATH", "")
FAIL_ERRNO = getattr(errno, os.environ.get("KLINE_RELIABILITY_FAIL_ERRNO", "ENOSPC"))
_write = LocalFileOpener.write


def _failing_write(self, data, *args):
    if FAIL_PATH in str(self.path):
        view = memoryview(data)
        _write(self, view[: len(view) // 2])  # part of it reaches the disk, then the disk fails
        self.flush()
        raise OSError(FAIL_ERRNO, os.strerror(FAIL_ERRNO))
    return _write(self, data, *args)


if FAIL_PATH:
    LocalFileOpener.write = _failing_write

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
