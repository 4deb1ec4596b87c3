"""Bad input, table-driven: one clear line (under 800 characters) on stderr, exit 2, and the
lake byte for byte as it was (every file hashed before and after). The lake holds a month of ingested bars first, so
"as it was" is not simply "absent". Each case runs ``kline`` in process against a real
Prefect server, so a case that wrongly starts a flow still runs (and is caught writing)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
import subprocess
from pathlib import Path

import pytest
from reliability.helpers import tree_digest

from flows.cli import main
from kline.ingestion import ingest_range
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider

pytestmark = pytest.mark.e2e

GOOD_CSV = "Date,Open,High,Low,Close,Volume\n2024-01-02,10,11,9,10.5,1000\n2024-01-03,10.5,11,10,10.8,1200\n"
BF = ["backfill", "--start", "2024-01-02", "--end", "2024-01-31"]
VENDOR = ["--provider", "file", "--symbols", "SPX", "--calendar", "XNYS", "--data-only"]

# (id, argv with {tmp} placeholders, files to create {relpath: text|bytes}, message fragment)
CASES = [
    ("reversed-range", ["backfill", "--start", "2024-02-01", "--end", "2024-01-02"], {}, "reversed range"),
    ("unparsable-date", ["run", "--date", "2024-02-30"], {}, "not a date"),
    ("future-date", ["run", "--date", "2999-01-04"], {}, "in the future"),
    ("before-calendar", ["backfill", "--start", "1970-01-05", "--end", "1970-02-02"], {}, "before the XSHG"),
    ("unknown-provider", ["run", "--provider", "wind"], {}, "unknown provider"),
    ("path-like-symbol", ["run", "--symbols", "../../etc/passwd"], {}, "ill-formed symbol"),
    ("ill-formed-symbol", ["run", "--symbols", "600519"], {}, "ill-formed symbol"),
    ("empty-symbol-list", ["run", "--symbols", " , "], {}, "no symbol given"),
    ("missing-settings", ["run", "--config", "{tmp}/nope.toml"], {}, "config file not found"),
    ("malformed-toml", ["run", "--config", "{tmp}/bad.toml"], {"bad.toml": "[train\nepochs = 3\n"}, "bad.toml"),
    ("unknown-key", ["run", "--config", "{tmp}/bad.toml"], {"bad.toml": "[train]\nepochz = 3\n"}, "epochz"),
    ("wrong-type", ["run", "--config", "{tmp}/bad.toml"], {"bad.toml": '[train]\nepochs = "many"\n'}, "epochs"),
    ("negative-number", ["run", "--config", "{tmp}/bad.toml"], {"bad.toml": "[train]\nepochs = -3\n"}, "epochs"),
    ("absurd-number", ["run", "--config", "{tmp}/bad.toml"], {"bad.toml": "[train]\nepochs = 1000000000\n"},
     "epochs"),
    ("vendor-missing", [*BF, *VENDOR, "--source", "{tmp}/nowhere"], {}, "nowhere"),
    ("vendor-empty-file", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv"], {"v/SPX.csv": ""}, "SPX.csv"),
    ("vendor-header-only", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv"],
     {"v/SPX.csv": "Date,Open,High,Low,Close,Volume\n"}, "SPX.csv"),
    ("vendor-wrong-delimiter", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv"],
     {"v/SPX.csv": GOOD_CSV.replace(",", ";")}, "SPX.csv"),
    ("vendor-mixed-dates", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv"],
     {"v/SPX.csv": GOOD_CSV.replace("2024-01-03", "01/03/2024")}, "SPX.csv"),
    ("vendor-not-utf8", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv"],
     {"v/SPX.csv": GOOD_CSV.replace("Date", "Dat\u00e9").encode("utf-16")}, "SPX.csv"),
    ("vendor-symlink-out", [*BF, "--provider", "file", "--calendar", "XNYS", "--data-only", "--source", "{tmp}/v"],
     {"v/SPX.csv": "symlink:../outside.csv", "outside.csv": GOOD_CSV}, "outside"),
    ("lake-is-a-file", [*BF, "--data-only", "--lake", "{tmp}/afile"], {"afile": "not a lake"}, "afile"),
    # a 2 GiB file (sparse: a good header and rows, then zeros) is refused by its size, unread
    ("vendor-2gb-file", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv"], {"v/SPX.csv": f"sparse:{2 * 2**30}"},
     "over the 512 MiB a vendor file may have ([file] max_mb)"),
    ("vendor-over-max-mb", [*BF, *VENDOR, "--source", "{tmp}/v/SPX.csv", "--config", "{tmp}/k.toml"],
     {"v/SPX.csv": f"sparse:{3 * 2**20}", "k.toml": "[file]\nmax_mb = 2\n"}, "3 MiB, over the 2 MiB"),
    ("max-mb-zero", ["run", "--config", "{tmp}/bad.toml"], {"bad.toml": "[file]\nmax_mb = 0\n"}, "file.max_mb"),
    ("ten-thousand-symbols", ["run", "--symbols", ",".join(f"{i:06d}.SZ" for i in range(10_000))], {},
     "10000 codes given, more than the 6000"),
    ("thousands-with-one-ill-formed", ["run", "--symbols", ",".join(
        f"{i:06d}.SZ" if i != 3999 else "3999.SZ" for i in range(5000))], {}, "ill-formed symbol '3999.SZ'"),
]


@pytest.fixture(scope="module")
def populated_lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad-input") / "lake"
    ingest_range(SyntheticProvider(), Lake(root), ["000001.SH", "600519.SH"], dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    return root


def _materialise(tmp: Path, files: dict) -> None:
    for rel, content in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("symlink:"):
            p.symlink_to(content.removeprefix("symlink:"))
        elif isinstance(content, str) and content.startswith("sparse:"):
            p.write_text(GOOD_CSV)
            os.truncate(p, int(content.removeprefix("sparse:")))  # no blocks written: fast, and no disk used
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def _check(argv, lake: Path, tmp: Path, capsys, message: str, watched: list[Path]) -> None:
    before = {str(w): tree_digest(w) for w in watched}
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("kline: ") and message in lines[0], err[-2000:]
    assert len(lines[0]) < 800, lines[0][:2000]  # one line, not a wall (of codes, say)
    assert {str(w): tree_digest(w) for w in watched} == before  # not a byte changed


@pytest.mark.parametrize("argv, files, message",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_the_lake_unchanged(argv, files, message, populated_lake, tmp_path,
                                                            capsys, monkeypatch, reliability_server):
    monkeypatch.setenv("PREFECT_API_URL", reliability_server["url"])
    monkeypatch.chdir(tmp_path)
    _materialise(tmp_path, files)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--lake" not in argv:
        argv += ["--lake", str(populated_lake)]
    lake = Path(argv[argv.index("--lake") + 1])
    _check(argv, lake, tmp_path, capsys, message, [populated_lake, lake, tmp_path / "data_lake"])


@contextlib.contextmanager
def _read_only_view(lake: Path, at: Path):
    """``lake`` seen read-only at ``at``: a read-only bind mount (root writes through permission
    bits, not through a read-only filesystem)."""
    at.mkdir()
    if subprocess.run(["mount", "--bind", str(lake), str(at)], capture_output=True).returncode != 0:
        pytest.skip("no bind mount here (root writes through read-only permissions)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(at)], capture_output=True).returncode != 0:
            pytest.skip("no read-only remount here (root writes through read-only permissions)")
        yield at
    finally:
        subprocess.run(["umount", str(at)], capture_output=True)


def test_a_read_only_lake_fails_before_any_work(populated_lake, tmp_path, capsys, monkeypatch, reliability_server):
    monkeypatch.setenv("PREFECT_API_URL", reliability_server["url"])
    if os.geteuid() == 0:
        with _read_only_view(populated_lake, tmp_path / "read-only-lake") as ro:
            _check([*BF, "--data-only", "--lake", str(ro)], ro, tmp_path, capsys, "read-only", [populated_lake])
        return
    modes = {p: p.stat().st_mode for p in [populated_lake, *populated_lake.rglob("*")]}
    try:
        for p in modes:
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        _check([*BF, "--data-only", "--lake", str(populated_lake)], populated_lake, tmp_path, capsys,
               "read-only", [populated_lake])
    finally:
        for p, m in modes.items():
            p.chmod(m)
