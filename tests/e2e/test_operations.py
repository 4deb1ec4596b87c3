"""Operations against a real `prefect server start` on loopback: `kline setup`, alerts through
a webhook receiver in this process, domain events read back through the API, the shared
tushare budget across processes, one daily run at a time, and a served schedule that
survives a restart."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import helpers_server
import httpx
import pytest
from helpers_pipeline import fast_config
from helpers_server import BIN, free_port, stop_group, wait_until

pytestmark = pytest.mark.e2e
prefect_server = helpers_server.prefect_server  # a module-scoped server of this module's own

REPO = Path(__file__).resolve().parents[2]


class Receiver:
    """A webhook endpoint on loopback that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("content-length") or 0)
                received.append(json.loads(self.rfile.read(n) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def matching(self, *words: str) -> list[dict]:
        return [b for b in self.bodies if all(w in b.get("subject", "") for w in words)]

    def wait_for(self, *words: str, timeout: float = 60) -> dict:
        wait_until(lambda: self.matching(*words), timeout, f"a notification with {words}")
        return self.matching(*words)[0]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()


def write_config(tmp_path: Path, receiver: Receiver | None, name: str = "kline.toml", **alerts) -> Path:
    text = fast_config()
    lines = [f'webhook_url = "{receiver.url}"'] if receiver else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in alerts.items()]
    path = tmp_path / name
    path.write_text(text + "[alerts]\n" + "\n".join(lines) + "\n")
    return path


def kline(prefect_server, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "kline"), *args], env=prefect_server["env"], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def setup(prefect_server, cfg: Path) -> str:
    out = kline(prefect_server, "setup", "--config", str(cfg), cwd=cfg.parent, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture
def client(prefect_server):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        with get_client(sync_client=True) as c:
            yield c


def read_events(prefect_server, name: str) -> list[dict]:
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
    r = httpx.post(f"{prefect_server['url']}/events/filter", json=body, timeout=10)
    r.raise_for_status()
    return r.json()["events"]


def test_setup_twice_changes_nothing_and_check_reports_drift(prefect_server, receiver, tmp_path, client):
    cfg = write_config(tmp_path, receiver)
    setup(prefect_server, cfg)
    second = setup(prefect_server, cfg).splitlines()
    assert len(second) == 10 and all(line.endswith(": unchanged") for line in second), second
    check = kline(prefect_server, "setup", "--check", "--config", str(cfg), cwd=tmp_path)
    assert (check.returncode, check.stdout.strip()) == (0, "no drift")

    other = write_config(tmp_path, None, name="other.toml", webhook_url="http://127.0.0.1:9/elsewhere")
    other.write_text(other.read_text() + "[tushare]\ncalls_per_minute = 100\n")
    before = client.read_global_concurrency_limit_by_name("kline-tushare")
    check = kline(prefect_server, "setup", "--check", "--config", str(other), cwd=tmp_path)
    assert check.returncode == 1
    assert "drift: concurrency limit kline-tushare: differs" in check.stdout
    assert "drift: block custom-webhook/kline-alerts: differs" in check.stdout
    after = client.read_global_concurrency_limit_by_name("kline-tushare")
    assert (after.limit, after.slot_decay_per_second) == (before.limit, before.slot_decay_per_second)  # unchanged

    bad = kline(prefect_server, "setup", "--config", str(write_config(tmp_path, None, "bad.toml", webhook_url="nope")),
                cwd=tmp_path)
    assert bad.returncode == 2 and "alerts.webhook_url" in bad.stderr


def test_a_run_failing_at_train_sends_one_notification_naming_the_stage(prefect_server, receiver, tmp_path):
    cfg = write_config(tmp_path, receiver)
    setup(prefect_server, cfg)
    # a device torch does not know: the settings pass preflight, the LSTM cannot be placed
    cfg.write_text(cfg.read_text().replace("hidden = 8", 'hidden = 8\ndevice = "no-such-device"'))
    t0 = time.monotonic()
    run = kline(prefect_server, "run", "--date", "2024-03-13", "--lake", str(tmp_path / "lake"), "--config", str(cfg),
                cwd=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    note = receiver.wait_for("daily-2024-03-13", "at stage train", timeout=60)
    assert time.monotonic() - t0 < 60 + 30  # the run itself takes seconds
    assert "Invalid device string" in note["body"]
    assert "**stage:** train" in note["body"]  # the pipeline-failure artifact's text
    time.sleep(5)  # a second notification for the same failure would have come by now
    assert len(receiver.matching("daily-2024-03-13")) == 1


def test_forced_decay_emits_an_event_and_a_notification(prefect_server, receiver, tmp_path):
    cfg = write_config(tmp_path, receiver, decay_mase=0.01)  # any real model is "worse" than this
    setup(prefect_server, cfg)
    lake = tmp_path / "lake"
    # only evidence makes a champion, and this tiny LSTM has none: the day before's is made
    # champion by hand, so that there is a champion to decay
    first = kline(prefect_server, "run", "--date", "2024-03-11", "--lake", str(lake), "--config", str(cfg), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    from kline import registry
    from kline.lake import Lake

    (version,) = registry.list_versions(Lake(str(lake)), "lstm")
    registry.set_champion(Lake(str(lake)), "lstm", version, {"rule": "set by hand for the test"})
    run = kline(prefect_server, "run", "--date", "2024-03-12", "--lake", str(lake), "--config", str(cfg), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    note = receiver.wait_for("has decayed", timeout=60)
    assert "threshold 0.01" in note["body"]

    from tasks.events import lake_id

    def ours() -> list[dict]:
        return [e for e in read_events(prefect_server, "kline.model.decayed")
                if e["resource"].get("kline.lake") == lake_id(str(lake))]

    wait_until(ours, 30, "the decayed event")
    (event,) = ours()
    assert event["resource"]["prefect.resource.id"] == f"kline.model.lstm.{version}"
    assert event["resource"]["kline.severity"] == "alert"
    assert event["payload"]["mase"] > 0.01 and event["payload"]["sessions"] == 40  # test_sessions in the config
    roles = {}
    for r in event["related"]:
        roles.setdefault(r["prefect.resource.role"], set()).add(r.get("prefect.resource.name") or r["prefect.resource.id"])
    assert roles["lake"] == {str(lake)}
    assert roles["symbol"] == {"000001.SH", "600519.SH"}
    assert roles["flow"] == {"kline-daily"} and "flow-run" in roles

    # the runs' other domain events are on the feed too, about the same lake, one per run (the
    # server stores events in batches: wait for them)
    def mine(name: str) -> list[dict]:
        return [e for e in read_events(prefect_server, name) if e["resource"].get("kline.lake") == lake_id(str(lake))]

    for name in ("kline.data.ingested", "kline.model.trained", "kline.report.published"):
        wait_until(lambda name=name: len(mine(name)) == 2, 30, name)
        assert {e["resource"]["kline.severity"] for e in mine(name)} == {"info"}, name
    paths = {e["payload"]["path"] for e in mine("kline.report.published")}
    assert paths == {str(lake / "reports" / d / "report.html") for d in ("2024-03-11", "2024-03-12")}


def test_a_scheduled_run_nobody_picks_up_turns_late_and_notifies(prefect_server, receiver, tmp_path, client):
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    from flows.daily import daily_flow

    cfg = write_config(tmp_path, receiver, late_after_s=10)
    setup(prefect_server, cfg)
    # a deployment of the daily flow that no runner serves
    dep_id = daily_flow.to_deployment(name="late-probe", parameters={"lake": str(tmp_path / "lake")}).apply()
    run = client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=dt.datetime.now(dt.UTC)))
    try:
        note = receiver.wait_for(run.name, "has not started", timeout=120)
        assert client.read_flow_run(run.id).state.name == "Late"
        assert client.read_flow_run(run.id).state.type == StateType.SCHEDULED
        assert "kline serve" in note["body"]
    finally:
        client.delete_flow_run(run.id)
        client.delete_deployment(dep_id)


def test_a_daily_run_running_too_long_notifies(prefect_server, receiver, tmp_path, client):
    """The run's states are set through the API (a run that hangs, without waiting for one)."""
    from prefect.states import Cancelled, Pending, Running

    from flows.daily import daily_flow

    setup(prefect_server, write_config(tmp_path, receiver, running_after_s=10))
    run = client.create_flow_run(daily_flow, name="daily-hanging-probe", parameters={"lake": str(tmp_path / "lake")},
                                 state=Pending())
    try:
        client.set_flow_run_state(run.id, Running(), force=True)
        t0 = time.monotonic()
        note = receiver.wait_for("daily-hanging-probe", "is still running", timeout=90)
        assert time.monotonic() - t0 >= 10 - 1  # not before running_after_s
        assert "Running for 10 s" in note["body"]
    finally:
        client.set_flow_run_state(run.id, Cancelled(), force=True)
        client.delete_flow_run(run.id)


BUDGET_WORKER = """
import json, sys, time
from kline.providers.tushare import RateLimiter
from tasks import budget
budget.install()
calls, period, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
limiter = RateLimiter(calls, period)
print("ready", flush=True)
start = float(sys.stdin.readline())
time.sleep(max(0.0, start - time.time()))
stamps = []
while time.time() < start + seconds:
    limiter.acquire()
    stamps.append(time.time())
print(json.dumps(stamps), flush=True)
"""


def test_processes_share_one_tushare_budget(prefect_server, receiver, tmp_path, client):
    """Three processes draw on one budget through the real limiter and the server's limit.

    Scaled down: 30 calls per 15 s instead of per 60 s, for 60 s (four windows) instead of
    two minutes. ``RateLimiter.shared_bucket`` takes the window as a parameter and the limit
    arithmetic (burst b = calls // 10, refill (calls - b) / window per second, b + refill *
    window = calls) is the same at any window length; what matters is that the budget
    binds (three unthrottled processes would make thousands of calls).
    """
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from kline.providers.tushare import RateLimiter

    calls, period, seconds, procs = 30, 15.0, 60.0, 3
    setup(prefect_server, write_config(tmp_path, receiver))  # creates kline-tushare; rescaled below
    limit, decay, _ = RateLimiter.shared_bucket(calls, period)
    client.update_global_concurrency_limit("kline-tushare", GlobalConcurrencyLimitUpdate(
        limit=limit, slot_decay_per_second=decay, active=True, active_slots=0))
    workers = [subprocess.Popen([sys.executable, "-c", BUDGET_WORKER, "1000", str(period), str(seconds)],
                                env={**prefect_server["env"], "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    try:
        for w in workers:  # each process's own limiter allows 1000: only the shared one binds
            assert w.stdout.readline().strip() == "ready"
        start = time.time() + 1.0
        for w in workers:
            w.stdin.write(f"{start}\n")
            w.stdin.flush()
        stamps = sorted(s for w in workers for s in json.loads(w.communicate(timeout=seconds + 60)[0].splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    busiest = max(sum(1 for t in stamps if s <= t < s + period) for s in stamps)
    budget = calls * seconds / period
    assert busiest <= calls, busiest
    assert len(stamps) >= 0.8 * budget, (len(stamps), budget)
    print(f"{len(stamps)} calls in {seconds:.0f} s (budget {budget:.0f}); busiest {period:.0f} s window: {busiest}")


def _start_serve(prefect_server, cfg: Path, lake: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "kline"), "serve", "--lake", str(lake), "--config", str(cfg), *extra],
                            env=prefect_server["env"], cwd=cfg.parent, stdout=open(log, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


def test_daily_runs_queue_one_at_a_time_and_a_restarted_serve_keeps_the_schedule(prefect_server, receiver, tmp_path,
                                                                                    client):
    from prefect.deployments import run_deployment

    cfg = write_config(tmp_path, receiver)
    lake, log = tmp_path / "lake", tmp_path / "serve.log"
    serve = _start_serve(prefect_server, cfg, lake, log)
    try:
        def registered() -> bool:
            assert serve.poll() is None, log.read_text()[-3000:]
            return "serving deployments" in log.read_text() and _deployment(client) is not None

        wait_until(registered, 120, "kline serve to register its deployments")
        first = run_deployment("kline-daily/daily", parameters={"run_date": "2024-03-14"}, timeout=0)
        second = run_deployment("kline-daily/daily", parameters={"run_date": "2024-03-15"}, timeout=0)

        def finished() -> bool:
            return all(client.read_flow_run(r.id).state.is_final() for r in (first, second))

        wait_until(finished, 300, "both daily runs to finish")
        runs = [client.read_flow_run(r.id) for r in (first, second)]
        assert all(r.state.is_completed() for r in runs), [(r.name, r.state.message) for r in runs]
        a, b = sorted(runs, key=lambda r: r.start_time)
        assert a.end_time <= b.start_time  # no overlap
        waited = {s.name for s in client.read_flow_run_states(b.id)}
        assert "AwaitingConcurrencySlot" in waited, waited
    finally:
        stop_group(serve, signal.SIGINT)

    dep = _deployment(client)
    assert not dep.paused and all(s.active for s in dep.schedules) and dep.schedules
    serve = _start_serve(prefect_server, cfg, lake, log, "--no-setup")
    try:
        wait_until(lambda: log.read_text().count("serving deployments") == 2, 120, "the restarted kline serve")
        time.sleep(3)
        dep = _deployment(client)
        assert serve.poll() is None and not dep.paused and all(s.active for s in dep.schedules)
    finally:
        stop_group(serve, signal.SIGINT)
    dep = _deployment(client)
    assert not dep.paused and all(s.active for s in dep.schedules)
    assert dep.global_concurrency_limit.limit == 1
    assert dep.concurrency_options.collision_strategy.value == "ENQUEUE"


def _deployment(client):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name("kline-daily/daily")
    except ObjectNotFound:
        return None


def test_deployments_run_one_daily_at_a_time_with_the_timeouts_of_the_settings():
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    from flows.deployments import timed_flows
    from kline.config import Settings

    settings = Settings().replace(alerts={"daily_timeout_s": 600, "backfill_timeout_s": 0})
    daily, backfill = timed_flows(settings)
    assert (daily.name, daily.timeout_seconds) == ("kline-daily", 600)
    assert (backfill.name, backfill.timeout_seconds) == ("kline-backfill", None)
    assert daily.on_failure_hooks and daily.on_crashed_hooks  # the failure alert survives with_options

    spec = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    assert spec["daily"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert "concurrency_limit" not in spec["backfill"]
    flow = load_flow_from_entrypoint(str(REPO / spec["daily"]["entrypoint"]))
    assert (flow.name, flow.timeout_seconds) == ("kline-daily", Settings().alerts.daily_timeout_s)


def test_setup_refuses_without_a_server(monkeypatch, capsys):
    from flows.cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["setup"]) == 2
    assert "PREFECT_API_URL" in capsys.readouterr().err
