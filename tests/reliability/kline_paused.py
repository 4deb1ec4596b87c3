"""``kline`` with a test hook: the Nth rename of a lake write (``KLINE_RELIABILITY_PAUSE_AT``)
first writes the target path to ``KLINE_RELIABILITY_MARKER`` and then sleeps, so that a test
can SIGKILL the process inside a lake write (the temporary file complete, not yet renamed).
With ``KLINE_RELIABILITY_COUNT`` it writes there, at exit, how many renames the run made.
Without the variables it is plain ``kline``."""

from __future__ import annotations

import atexit
import os
import sys
import time

from flows.cli import main
from kline.lake import files

PAUSE_AT = int(os.environ.get("KLINE_RELIABILITY_PAUSE_AT", "0") or 0)
MARKER = os.environ.get("KLINE_RELIABILITY_MARKER", "")
COUNT = os.environ.get("KLINE_RELIABILITY_COUNT", "")


class _PausingOs:
    """``os`` as the lake's file module sees it, with ``replace`` (the rename that publishes a
    lake write) pausing at the Nth call."""

    seen = 0

    def __getattr__(self, name: str):
        return getattr(os, name)

    def replace(self, src, dst) -> None:
        self.seen += 1
        if self.seen == PAUSE_AT:
            with open(MARKER, "w") as f:
                f.write(os.fspath(dst))
            time.sleep(3600)
        os.replace(src, dst)


if PAUSE_AT or COUNT:
    files.os = _PausingOs()
if COUNT:
    atexit.register(lambda: open(COUNT, "w").write(str(files.os.seen)))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
