"""``kline`` with a test hook: the Nth rename of a lake write (``KLINE_RELIABILITY_PAUSE_AT``)
first writes the target path to ``KLINE_RELIABILITY_MARKER`` and then sleeps, so that a test
can SIGKILL the process inside a lake write (the temporary file complete, not yet renamed).
Without the variables it is plain ``kline``."""

from __future__ import annotations

import os
import sys
import time

from flows.cli import main
from kline import lake

PAUSE_AT = int(os.environ.get("KLINE_RELIABILITY_PAUSE_AT", "0") or 0)
MARKER = os.environ.get("KLINE_RELIABILITY_MARKER", "")

if PAUSE_AT:
    rename = lake.Lake._rename
    seen = 0

    def _paused(self, src: str, dst: str) -> None:
        global seen
        seen += 1
        if seen == PAUSE_AT:
            with open(MARKER, "w") as f:
                f.write(dst)
            time.sleep(3600)
        rename(self, src, dst)

    lake.Lake._rename = _paused

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
