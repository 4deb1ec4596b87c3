"""The deployments as code and prefect.yaml agree; the entrypoints read settings when used."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_schedules_the_daily_cron_of_the_code():
    from flows.deployments import DAILY_CRON, DAILY_TIMEZONE

    spec = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    assert spec["daily"]["schedules"] == [{"cron": DAILY_CRON, "timezone": DAILY_TIMEZONE}]
    assert "schedules" not in spec["backfill"]


def test_entrypoints_read_the_settings_of_the_working_directory_when_asked(isolated_cwd):
    import flows.deployments as deployments  # imported before any kline.toml exists
    from kline.config import Settings

    (isolated_cwd / "kline.toml").write_text("[alerts]\ndaily_timeout_s = 123\nbackfill_timeout_s = 45\n")
    assert (deployments.daily.name, deployments.daily.timeout_seconds) == ("kline-daily", 123)
    assert (deployments.backfill.name, deployments.backfill.timeout_seconds) == ("kline-backfill", 45)
    (isolated_cwd / "kline.toml").write_text("[alerts]\ndaily_timeout_s = 'soon'\n")
    assert deployments.daily.timeout_seconds == Settings().alerts.daily_timeout_s  # the run reports it


def test_the_entrypoints_load_as_prefect_loads_them():
    from prefect.flows import load_flow_from_entrypoint

    for name in ("daily", "backfill"):
        flow = load_flow_from_entrypoint(str(REPO / f"flows/deployments.py:{name}"))
        assert flow.name == f"kline-{name}"
