import json
import os
import subprocess
import sys

import pytest

from flows.cli import main


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
        (["run", "--config", "bad-preset.toml"], "train.preset: unknown value 'nope', choose from default, seed"),
        (["run", "--config", "bad-scaler.toml"], "features.scaler: unknown value 'foo', choose from zscore, minmax"),
        (["run", "--config", "bad-metric.toml"], "backtest.promote_metric: unknown value 'sharpe'"),
        (["run", "--config", "bad-interval.toml"], "backtest.interval_low/interval_high: need 0 < low < high < 1"),
        (["run", "--config", "bad-max-p.toml"], "promotion: need 0 < max_p <= 1"),
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
    (isolated_cwd / "bad-interval.toml").write_text("[backtest]\ninterval_low = 0.9\ninterval_high = 0.1\n")
    (isolated_cwd / "bad-max-p.toml").write_text("[promotion]\nmax_p = 0\n")
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
        "import sys\nfrom flows.cli import main\n"
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


# -- the clock: the close cutoff decides what "today" may model ----------------------------

def _shanghai(text: str):
    import datetime as dt
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize(("clock", "expected"), [
    ("2026-12-01T13:00", "2026-11-30"), ("2026-12-01T17:29", "2026-11-30"),
    ("2026-12-01T17:31", "2026-12-01"), ("2026-12-01T23:00", "2026-12-01"),
    ("2026-12-05T13:00", "2026-12-04"), ("2026-10-01T13:00", "2026-09-30"),
    ("2027-01-04T18:30", "2027-01-04"), ("2027-01-04T13:00", "2026-12-31"),
])
def test_the_default_run_date_is_the_latest_closed_session(clock, expected, isolated_cwd, monkeypatch):
    import time_machine

    from flows._common import default_run_date
    from kline.config import load_settings

    with time_machine.travel(_shanghai(clock), tick=False):
        assert default_run_date(load_settings()).isoformat() == expected
    monkeypatch.setenv("KLINE_CALENDAR_CLOSE_CUTOFF", "13:30")
    with time_machine.travel(_shanghai("2026-12-01T14:00"), tick=False):
        assert default_run_date(load_settings()).isoformat() == "2026-12-01"


def test_today_before_the_cutoff_is_refused_and_a_backfill_end_capped(lake_root, isolated_cwd, capsys):
    import time_machine

    with time_machine.travel(_shanghai("2026-12-01T13:00"), tick=False):
        assert main(["run", "--date", "2026-12-01", "--lake", lake_root]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "not closed before 17:30 Asia/Shanghai (calendar.close_cutoff)" in err
        assert main(["backfill", "--start", "2026-12-01", "--end", "2026-12-01", "--lake", lake_root]) == 2
        assert "capped to 2026-11-30" in capsys.readouterr().err
    assert not os.path.exists(lake_root)


def test_runs_past_the_published_calendar_are_accepted(lake_root, isolated_cwd, capsys):
    import datetime as dt

    import time_machine

    from kline.config import Settings
    from kline.preflight import check_dates

    with time_machine.travel(_shanghai("2027-01-04T18:30"), tick=False):
        check_dates(Settings(), [dt.date(2026, 12, 31), dt.date(2027, 1, 4)])
        with pytest.raises(ValueError, match="before the XSHG trading calendar starts"):
            check_dates(Settings(), [dt.date(1980, 1, 2)])


def test_status_names_each_calendar_s_source_and_reach(lake_root, isolated_cwd, capsys):
    assert main(["status", "--lake", lake_root]) == 0
    out = capsys.readouterr().out
    assert "calendar XSHG: known through 2026-12-31 (exchange-calendars" in out
    assert "provisional from 2027-01-01" in out
    assert main(["status", "--lake", lake_root, "--json", "--calendar", "XNYS"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {c["calendar"] for c in data["calendars"]} == {"XSHG", "XNYS"}
