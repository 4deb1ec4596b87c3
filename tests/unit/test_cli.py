import json
import os
import subprocess
import sys

import pytest

from kline.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["backfill", "--start", "2024-02-01", "--end", "2024-01-01"], "reversed range"),
        (["backfill", "--start", "2024-13-01", "--end", "2024-01-01"], "--start: not a date"),
        (["run", "--date", "yesterday"], "--date: not a date"),
        (["backfill", "--start", "2024-01-01", "--end", "2999-01-01"], "is in the future"),
        (["run", "--date", "2999-01-01"], "is in the future"),
        (["run", "--provider", "bloomberg"], "unknown provider 'bloomberg'"),
        (["run", "--symbols", "../x"], "ill-formed symbol '../x'"),
        (["run", "--symbols", "a/b"], "ill-formed symbol 'a/b'"),
        (["run", "--symbols", "600519"], "ill-formed symbol '600519'"),
        (["run", "--config", "missing.toml"], "config file not found: missing.toml"),
        (["status", "--config", "missing.toml"], "config file not found"),
        (["run", "--symbols", ","], "no symbol given"),
        (["run", "--provider", "tushare"], "TUSHARE_TOKEN"),
        (["run", "--config", "bad-preset.toml"], "unknown preset 'nope'"),
        (["run", "--config", "bad-scaler.toml"], "unknown scaler 'foo'"),
        (["run", "--config", "bad-metric.toml"], "backtest.promote_metric: unknown value 'sharpe'"),
        (["run", "--calendar", "BOGUS"], "unknown exchange calendar 'BOGUS'"),
        (["backfill", "--provider", "file", "--start", "2024-01-01", "--end", "2024-01-31"], "source"),
        (["run", "--provider", "file", "--source", "nowhere/", "--symbols", "SPX", "--calendar", "XNYS"], "nowhere"),
        (["run", "--provider", "file", "--source", "nowhere/", "--symbols", "SPX"], "give its exchange calendar"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, message, lake_root, isolated_cwd, capsys, monkeypatch):
    monkeypatch.delenv("TUSHARE_TOKEN", raising=False)
    (isolated_cwd / "bad-preset.toml").write_text('[train]\npreset = "nope"\n')
    (isolated_cwd / "bad-scaler.toml").write_text('[features]\nscaler = "foo"\n')
    (isolated_cwd / "bad-metric.toml").write_text('[backtest]\npromote_metric = "sharpe"\n')
    code = main([*argv, "--lake", lake_root])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not os.path.exists(lake_root)
    assert not os.path.exists(isolated_cwd / "data_lake")


def test_usage_errors_from_argparse_exit_2(capsys):
    assert main(["backfill", "--start", "2024-01-01"]) == 2
    assert main([]) == 2


def _imports_after(args: list[str], tmp_path) -> set[str]:
    code = (
        "import sys\nfrom kline.cli import main\n"
        f"rc = main({args!r})\n"
        "print('MODULES', sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    line = [x for x in out.stdout.splitlines() if x.startswith("MODULES")][0]
    return set(eval(line[len("MODULES "):]))


def test_help_and_status_import_neither_prefect_nor_gx(tmp_path):
    for args in (["--help"], ["status", "--lake", str(tmp_path / "lake")]):
        mods = _imports_after(args, tmp_path)
        assert "prefect" not in mods and "great_expectations" not in mods, args


def test_status_on_a_lake(lake, capsys):
    import datetime as dt

    from kline.ingestion import ingest_range
    from kline.providers.synthetic import SyntheticProvider

    ingest_range(SyntheticProvider(), lake, ["000001.SH", "600519.SH"], dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert main(["status", "--lake", lake.root, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    idx = {r["symbol"]: r for r in data["symbols"]}["000001.SH"]
    assert (idx["first"], idx["last"], idx["rows"], idx["missing"]) == ("2024-01-02", "2024-01-31", 22, 0)
    assert main(["status", "--lake", lake.root]) == 0
    assert "000001.SH  2024-01-02  2024-01-31  22    0" in capsys.readouterr().out


def test_domain_package_imports_no_prefect():
    code = "import sys, kline, kline.lake, kline.ingestion, kline.status, kline.providers.synthetic; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
