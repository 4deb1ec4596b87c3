"""A lake write that fails part-way (ENOSPC, EIO) keeps the previous data and fails the run
with one line naming the path and the error, exit 4.

``kline backfill --data-only`` runs in a child process through ``kline_diskfault.py``, which
makes the write of one chosen file put half of its bytes on disk and then fail with the
chosen errno. The lake already holds a smaller backfill (a copy of one built once); after the failed run the file that
was being replaced is byte for byte as it was, still verifies against its recorded hash, no
temporary file is left anywhere in the lake, and a plain re-run completes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers_pipeline import fast_config
from reliability.helpers import kline_env
from reliability.test_crash import _run

from kline.lake import Lake

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SYMBOLS = ("000001.SH", "600519.SH")

# (id, errno, the file whose write fails, relative to the lake, the failing backfill's end and flags):
# the curated year is rewritten by a longer backfill, the raw month file by a refresh of the same one
CASES = [
    ("enospc-curated", "ENOSPC", "curated/bars/year=2023/part.parquet", "2023-12-29", []),
    ("eio-raw", "EIO", "raw/bars/month=2023-09/synthetic.parquet", "2023-10-31", ["--refresh"]),
]


def _argv(lake: Path, cfg: Path, end: str = "2023-10-31", *extra: str) -> list[str]:
    return [sys.executable, str(HERE / "kline_diskfault.py"), "backfill", "--start", "2023-09-01", "--end", end,
            "--lake", str(lake), "--config", str(cfg), "--data-only", *extra]


@pytest.fixture(scope="module")
def backfilled(reliability_server, tmp_path_factory) -> Path:
    """A lake holding a clean data backfill, 2023-09-01..2023-10-31 (each case copies it)."""
    d = tmp_path_factory.mktemp("disk-faults")
    cfg = d / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))
    first = _run(_argv(d / "lake", cfg), kline_env(reliability_server["env"], d / "home"), d)
    assert first.returncode == 0, first.stderr[-3000:]
    return d / "lake"


@pytest.mark.parametrize("code, target, end, extra", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_write_failing_part_way_keeps_the_previous_file_and_fails_in_one_line(code, target, end, extra,
                                                                                backfilled, reliability_server,
                                                                                tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))
    env = kline_env(reliability_server["env"], tmp_path / "home")
    lake = tmp_path / "lake"
    shutil.copytree(backfilled, lake)
    path = lake / target
    before = path.read_bytes()

    faulty = {**env, "KLINE_RELIABILITY_FAIL_PATH": f"{target}.tmp-", "KLINE_RELIABILITY_FAIL_ERRNO": code}
    run = _run(_argv(lake, cfg, end, *extra), faulty, tmp_path)
    assert run.returncode == 4, run.stderr[-3000:]
    last = [ln for ln in run.stderr.splitlines() if ln.strip()][-1]
    strerror = os.strerror(getattr(errno, code))
    assert last == f"kline: cannot write lake file {path}: {strerror} ({code}); the previous version is intact"
    assert path.read_bytes() == before  # not a byte changed
    files = Lake(lake)
    assert hashlib.sha256(before).hexdigest() in files.accepted_hashes(str(path))
    files.read_table(str(path))  # still verifies and reads
    assert sorted(lake.rglob("*.tmp-*")) == []

    again = _run(_argv(lake, cfg, end, *extra), env, tmp_path)  # the disk is fine again
    assert again.returncode == 0, again.stderr[-3000:]
