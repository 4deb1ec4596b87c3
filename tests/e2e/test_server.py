"""End to end against a real Prefect server on loopback: `prefect deploy` from prefect.yaml,
`kline serve`, a daily run triggered through the API, read back through the client."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers_pipeline import STAGES as PIPELINE_STAGES
from helpers_pipeline import fast_config
from helpers_server import BIN, prefect_server, stop_group, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STAGES = set(PIPELINE_STAGES)


server = prefect_server  # this module's own server


@pytest.fixture
def client_settings(server):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server["url"]}):
        yield


def test_prefect_yaml_deploys_both_deployments(server, tmp_path, client_settings):
    env = {**server["env"]}
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "kline", "--type", "process"],
                   env=env, cwd=REPO, check=True, capture_output=True, timeout=120)
    out = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    from prefect import get_client

    with get_client(sync_client=True) as client:
        daily = client.read_deployment_by_name("kline-daily/daily")
        backfill = client.read_deployment_by_name("kline-backfill/backfill")
        # the same names are served by `kline serve` in another test on this server
        client.delete_deployment(daily.id)
        client.delete_deployment(backfill.id)
    assert daily.work_pool_name == backfill.work_pool_name == "kline"
    (sched,) = daily.schedules
    from flows.deployments import DAILY_CRON, DAILY_TIMEZONE

    assert (sched.schedule.cron, sched.schedule.timezone) == (DAILY_CRON, DAILY_TIMEZONE)
    assert backfill.schedules == []


def test_served_daily_run_through_the_api(server, tmp_path, client_settings):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.deployments import run_deployment

    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config())
    lake = tmp_path / "lake"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    serve = subprocess.Popen([str(BIN / "kline"), "serve", "--lake", str(lake), "--config", str(cfg)],
                             env=server["env"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        def served() -> bool:
            with get_client(sync_client=True) as client:
                try:
                    client.read_deployment_by_name("kline-daily/daily")
                    return serve.poll() is None
                except Exception:  # noqa: BLE001 - not registered yet
                    return False

        wait_until(served, 120, "kline serve to register its deployments")

        def run_once():
            fr = run_deployment("kline-daily/daily", parameters={"run_date": "2024-03-15"}, timeout=600)
            assert fr.state.is_completed(), (fr.state.message, (tmp_path / "serve.log").read_text()[-3000:])
            assert fr.name == "daily-2024-03-15"
            deadline = time.monotonic() + 60
            while True:
                with get_client(sync_client=True) as client:
                    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
                    arts = client.read_artifacts(
                        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fr.id])))
                if (all(r.state and r.state.is_final() for r in runs) and
                        {r.name.split("-")[0] for r in runs} == STAGES) or time.monotonic() > deadline:
                    return fr, runs, {a.key: a for a in arts if a.key}
                time.sleep(0.5)

        fr, runs, arts = run_once()
        assert {r.name.split("-")[0] for r in runs} == STAGES  # one task run (or more) per stage
        assert {"kline-report-summary", "kline-report-metrics", "kline-report-link", "validation-summary"} <= set(arts)
        assert "persistence" in arts["kline-report-summary"].data
        assert (lake / "reports" / "2024-03-15" / "report.html").is_file()

        fr2, runs2, _ = run_once()
        assert fr2.id != fr.id
        assert len(runs2) == len(runs)
        assert {r.state.name for r in runs2} == {"Cached"}
    finally:
        stop_group(serve, signal.SIGINT)
        log.close()


def test_prefect_yaml_entrypoints_load_and_validate(tmp_path):
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    names = set()
    for dep in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / dep["entrypoint"]))
        params = dict(dep.get("parameters") or {})
        if dep["name"] == "backfill":
            params.update(start="2024-01-01", end="2024-01-31")
        flow.validate_parameters(params)
        names.add(dep["name"])
    assert names == {"daily", "backfill"}
    assert shutil.which("prefect", path=str(BIN))
