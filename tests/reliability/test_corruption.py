"""Corruption at rest is detected, named, never silently read, and repaired from the source.

A real full ``kline backfill`` (synthetic provider, 3 symbols) builds a lake; a copy of it
is kept as the never-corrupted reference. Then four files of the lake are damaged: a raw day
file truncated, another bit-flipped, the curated year bit-flipped, the feature panel
truncated. ``kline status`` names each and exits 3; a data backfill with ``--refresh`` and a
full backfill both stop with exit 3 naming a damaged file (neither reads one); bad input to
``kline repair`` is one line, exit 2, and changes nothing; ``kline repair`` rebuilds the raw
days from the provider, the curated year from raw and removes the panel; ``status`` is then
clean, raw and curated equal the reference by content hash, and the next full backfill
recomputes the panel equal to the reference's.

Temporary files: a backfill SIGKILLed inside a lake write leaves one; ``status`` counts it,
and both the next writer of its partition and ``kline repair`` remove it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_pipeline import fast_config
from reliability.helpers import kline_env, parquet_files, table_digest, tree_digest
from reliability.test_crash import _run

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
RANGE = ("2023-06-01", "2023-12-29")
SYMBOLS = ("000001.SH", "600519.SH", "000001.SZ")


def _kline(*argv: str) -> list[str]:
    return [sys.executable, str(HERE / "kline_paused.py"), *argv]


def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _bitflip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x04
    p.write_bytes(bytes(data))


def _content(lake: Path) -> dict[str, tuple[str, int]]:
    return {layer: table_digest(parquet_files(lake / layer)) for layer in ("raw/bars", "curated/bars", "features")}


def _last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


def test_damaged_files_are_named_never_read_and_repaired_from_the_source(reliability_server, tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))
    env = kline_env(reliability_server["env"], tmp_path / "home")
    lake = tmp_path / "lake"
    common = ["--lake", str(lake), "--config", str(cfg)]
    backfill = ["backfill", "--start", RANGE[0], "--end", RANGE[1], *common]
    first = _run(_kline(*backfill), env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    reference = tmp_path / "reference"
    shutil.copytree(lake, reference)
    want = _content(reference)
    assert want["curated/bars"][1] > 0 and want["features"][1] > 0

    damaged = {
        lake / "raw/bars/month=2023-09/synthetic.parquet": _truncate,  # a backfill writes month files
        lake / "raw/bars/month=2023-10/synthetic.parquet": _bitflip,
        lake / "curated/bars/year=2023/part.parquet": _bitflip,
        next((lake / "features").rglob("panel.parquet")): _truncate,
    }
    for path, damage in damaged.items():
        damage(path)
    names = {str(p) for p in damaged}

    status = _run(_kline("status", *common), env, tmp_path)
    assert status.returncode == 3, status.stderr[-3000:]
    corrupt_lines = [ln for ln in status.stdout.splitlines() if ln.startswith("CORRUPT ")]
    assert {ln.split(" ")[1].rstrip(":") for ln in corrupt_lines} == names, status.stdout
    as_json = json.loads(_run(_kline("status", "--json", *common), env, tmp_path).stdout)
    assert {c["path"] for c in as_json["integrity"]["corrupt"]} == names

    # a run that reads them stops, naming one, and uses none: the damaged bytes are still there
    damaged_bytes = tree_digest(lake / "raw"), {p: p.read_bytes() for p in damaged}
    for argv in (["backfill", "--start", RANGE[0], "--end", RANGE[1], *common, "--data-only", "--refresh"],
                 backfill):
        run = _run(_kline(*argv), env, tmp_path)
        assert run.returncode == 3, (argv, run.stderr[-3000:])
        line = _last_line(run.stderr)
        assert line.startswith("kline: corrupt lake file ") and any(n in line for n in names), line
        assert {p: p.read_bytes() for p in damaged} == damaged_bytes[1]

    # bad input to repair: one line, exit 2, nothing changed
    before = tree_digest(lake)
    for argv, message in ((["repair", "--lake", str(tmp_path / "nowhere"), "--config", str(cfg)], "no lake at"),
                          (["repair", *common, "--provider", "wind"], "unknown provider"),
                          (["repair", *common, "--provider", "tushare"], "run `kline repair --provider synthetic`")):
        bad = _run(_kline(*argv), {**env, "TUSHARE_TOKEN": "unused"}, tmp_path)
        lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
        assert bad.returncode == 2 and len(lines) == 1 and message in lines[0], bad.stderr[-3000:]
        assert tree_digest(lake) == before

    repair = _run(_kline("repair", *common), env, tmp_path)
    assert repair.returncode == 0, repair.stderr[-3000:]
    assert "fetched 2023-09-01..2023-09-30 again" in repair.stdout and "curated year 2023 rebuilt" in repair.stdout
    clean = _run(_kline("status", *common), env, tmp_path)
    assert clean.returncode == 0 and ", 0 corrupt," in clean.stdout and "0 unverified" in clean.stdout, clean.stdout
    got = _content(lake)
    assert got["raw/bars"] == want["raw/bars"] and got["curated/bars"] == want["curated/bars"]
    assert got["features"][1] == 0  # removed: a cache

    again = _run(_kline(*backfill), env, tmp_path)  # recomputes the panel instead of trusting its cache
    assert again.returncode == 0, again.stderr[-3000:]
    assert _content(lake) == want
    print(json.dumps({"damaged": sorted(names), "rows_compared": {k: v[1] for k, v in want.items()},
                      "repair": repair.stdout.splitlines()}, indent=1))


def _killed_in_write(lake: Path, cfg: Path, env: dict, tmp: Path, n: int) -> Path:
    """A data backfill SIGKILLed while paused before the rename of its ``n``-th lake write;
    returns the temporary file it left."""
    marker = tmp / f"marker-{n}"
    proc = subprocess.Popen(_kline("backfill", "--start", "2023-09-01", "--end", "2023-10-31", "--lake", str(lake),
                                   "--config", str(cfg), "--data-only"),
                            env={**env, "KLINE_RELIABILITY_PAUSE_AT": str(n), "KLINE_RELIABILITY_MARKER": str(marker)},
                            cwd=tmp, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the paused write"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    left = sorted(lake.rglob("*.tmp-*"))
    assert len(left) == 1 and str(left[0]).startswith(marker.read_text()), (left, marker.read_text())
    return left[0]


def test_temporary_files_of_killed_writes_are_counted_then_cleaned(reliability_server, tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS[:2]))
    env = kline_env(reliability_server["env"], tmp_path / "home")
    lake = tmp_path / "lake"
    common = ["--lake", str(lake), "--config", str(cfg)]

    tmp = _killed_in_write(lake, cfg, env, tmp_path, 4)  # a raw day file's write
    status = _run(_kline("status", *common), env, tmp_path)
    assert "1 temporary files left by killed writes" in status.stdout, status.stdout
    rerun = _run(_kline("backfill", "--start", "2023-09-01", "--end", "2023-10-31", *common, "--data-only"),
                 env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not tmp.exists() and sorted(lake.rglob("*.tmp-*")) == []  # its partition's next writer removed it

    shutil.rmtree(lake)
    tmp = _killed_in_write(lake, cfg, env, tmp_path, 7)
    repair = _run(_kline("repair", *common), env, tmp_path)
    assert repair.returncode == 0 and f"removed temporary file {tmp}" in repair.stdout, repair.stdout + repair.stderr
    assert sorted(lake.rglob("*.tmp-*")) == []
    status = _run(_kline("status", *common), env, tmp_path)
    assert "0 temporary files left by killed writes" in status.stdout, status.stdout
