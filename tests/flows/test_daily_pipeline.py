"""The daily flow end to end under the session's Prefect test server: stages, caching,
quarantine through the real flow, retries and the failure artifact, replay."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers_pipeline import STAGES as PIPELINE_STAGES
from helpers_pipeline import fast_config
from helpers_validation import MAIN_BOARD, OTHER, corrupted_import, read_quarantine
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
)

import kline.providers as providers
from flows.backfill import backfill_flow
from flows.daily import daily_flow
from flows.hooks import FAILURE_KEY
from kline.lake import Lake
from kline.providers import FatalProviderError, TransientProviderError
from kline.providers.synthetic import SyntheticProvider

pytestmark = pytest.mark.usefixtures("prefect_harness")

STAGES = list(PIPELINE_STAGES)


def config(tmp_path, symbols=("000001.SH", "600519.SH"), provider="synthetic", extra: str = "") -> str:
    p = tmp_path / "kline.toml"
    p.write_text(fast_config(symbols, provider) + extra)
    return str(p)


def task_runs(flow_run_id, expected: int | None = None, timeout: float = 30.0) -> list:
    """Task runs of a flow run. Task run states reach the server through the events
    pipeline, asynchronously: poll until ``expected`` runs (or a stable count) are final."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        final = all(r.state is not None and r.state.is_final() for r in runs)
        done = len(runs) >= expected if expected is not None else (last == len(runs))
        if (final and done) or time.monotonic() > deadline:
            return runs
        last = len(runs)
        time.sleep(0.5)


def artifacts(flow_run_id) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in arts if a.key}


def test_every_stage_runs_then_a_rerun_is_all_cached(tmp_path, lake_root):
    cfg = config(tmp_path)
    state = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=cfg, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["report"].endswith("reports/2024-03-15/report.html")
    runs = task_runs(state.state_details.flow_run_id)
    assert {r.name.split("-")[0] for r in runs} == set(STAGES)
    assert all(r.state.is_completed() for r in runs)
    assert all({"provider:synthetic", "universe:000001.SH,600519.SH"} <= set(r.tags) for r in runs)
    arts = artifacts(state.state_details.flow_run_id)
    assert {"validation-summary", "kline-report-summary", "kline-report-metrics", "kline-report-link"} <= set(arts)
    # a 3-epoch LSTM shows no skill over persistence: no champion, and the forecast says so
    from kline.registry import PERSISTENCE_BASIS, get_champion

    assert out["promoted"] is False and get_champion(Lake(lake_root), "lstm") is None
    fc = pd.read_csv(Path(lake_root) / "reports" / "2024-03-15" / "forecast.csv")
    assert set(fc["model"]) == {"persistence"} and set(fc["basis"]) == {PERSISTENCE_BASIS}
    assert (fc["pred_close"] == fc["close"]).all()
    assert (fc["pred_close_low"] < fc["close"]).all() and (fc["close"] < fc["pred_close_high"]).all()
    assert "the next-session forecast is persistence" in out["summary"] and "beats persistence" not in out["summary"]

    again = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=cfg, return_state=True)
    reruns = task_runs(again.state_details.flow_run_id, expected=len(runs))
    assert len(reruns) == len(runs)
    assert {r.state.name for r in reruns} == {"Cached"}

    # a training parameter re-runs train and what follows it, not what precedes it
    cfg2 = config(tmp_path, extra="")
    text = open(cfg2).read().replace("epochs = 3", "epochs = 4")
    open(cfg2, "w").write(text)
    changed = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=cfg2, return_state=True)
    states = {r.name.split("-")[0]: r.state.name for r in task_runs(changed.state_details.flow_run_id, len(runs))}
    assert states["ingest"] == states["validate"] == states["features"] == "Cached"
    assert states["train"] == states["backtest"] == states["report"] == "Completed"


class CorruptProvider:
    """The synthetic market with the six corruptions of a bad vendor file."""

    name = "corrupt"

    def fetch(self, symbols, start, end):
        clean = SyntheticProvider().fetch(symbols, start, end)
        feb = clean[(clean["trade_date"] >= dt.date(2024, 2, 1)) & (clean["trade_date"] <= dt.date(2024, 2, 29))]
        if feb.empty:  # only the February chunk comes from the broken file
            return clean
        rest = clean.drop(feb.index)
        broken = corrupted_import(feb.reset_index(drop=True))
        CorruptProvider.expected = broken.keys()
        return pd.concat([rest, broken.frame], ignore_index=True)


def test_corrupted_import_ends_in_quarantine_through_the_flow(tmp_path, lake_root, monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "corrupt", lambda settings: CorruptProvider())
    cfg = config(tmp_path, symbols=(MAIN_BOARD, OTHER, "000001.SH"), provider="corrupt")
    out = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=cfg)
    lake = Lake(lake_root)
    q = read_quarantine(lake)
    got = set(zip(q["symbol"], q["trade_date"], strict=True))
    assert got == CorruptProvider.expected
    curated = lake.read_curated_bars()
    assert not curated.duplicated(["symbol", "trade_date"]).any()
    assert not set(zip(curated["symbol"], curated["trade_date"], strict=True)) & got
    raw = lake.read_raw_bars()
    assert len(curated) + len(q) == len(raw)  # every raw row is either curated or quarantined
    assert out["excluded_symbols"] == []  # the run date's bars were clean
    assert out["report"]


class FlakyProvider:
    """Fails twice with a transient error, then answers."""

    name = "synthetic"
    calls = 0

    def fetch(self, symbols, start, end):
        FlakyProvider.calls += 1
        if FlakyProvider.calls <= 2:
            raise TransientProviderError("rate limit: 抱歉，您每分钟最多访问该接口200次")
        return SyntheticProvider().fetch(symbols, start, end)


def test_transient_errors_are_retried(tmp_path, lake_root, monkeypatch):
    FlakyProvider.calls = 0
    monkeypatch.setitem(providers.PROVIDERS, "flaky", lambda settings: FlakyProvider())
    cfg = config(tmp_path, provider="flaky")
    state = daily_flow(run_date="2024-01-31", lake=lake_root, config_file=cfg, return_state=True)
    assert state.is_completed(), state.message
    ingest_runs = [r for r in task_runs(state.state_details.flow_run_id) if r.name.startswith("ingest")]
    assert max(r.run_count for r in ingest_runs) == 3  # two failures, then success
    assert FlakyProvider.calls == len(ingest_runs) + 2


class BrokenProvider:
    name = "synthetic"

    def fetch(self, symbols, start, end):
        raise FatalProviderError("您的token不对，请确认。 (bad token: check TUSHARE_TOKEN)")


def test_a_permanent_error_fails_the_run_with_a_failure_artifact(tmp_path, lake_root, monkeypatch):
    monkeypatch.setitem(providers.PROVIDERS, "broken", lambda settings: BrokenProvider())
    cfg = config(tmp_path, provider="broken")
    state = daily_flow(run_date="2024-01-31", lake=lake_root, config_file=cfg, return_state=True)
    assert state.is_failed()
    runs = [r for r in task_runs(state.state_details.flow_run_id) if r.name.startswith("ingest")]
    assert runs and all(r.run_count == 1 for r in runs)  # deterministic: not retried
    art = artifacts(state.state_details.flow_run_id)[FAILURE_KEY]
    assert "**stage:** ingest" in art.data and "000001.SH, 600519.SH" in art.data and "bad token" in art.data


def test_three_session_replay(tmp_path, lake_root):
    cfg = config(tmp_path, symbols=("000001.SH",))
    out = backfill_flow(start="2024-03-13", end="2024-03-15", lake=lake_root, config_file=cfg, replay=True)
    assert out["replayed"] == ["2024-03-13", "2024-03-14", "2024-03-15"]
    lake = Lake(lake_root)
    assert [n for n in lake.listdir(lake.paths.reports_dir()) if n.startswith("2024")] == out["replayed"]
    history = lake.read_table(lake.paths.metrics_history()).to_pandas()
    assert sorted(pd.to_datetime(history["run_date"]).dt.date.astype(str).unique()) == out["replayed"]
    def replay_runs() -> list:  # this test's runs only: other tests share the server
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"daily-{d}" for d in out["replayed"]])))
        return [r for r in runs if r.parameters.get("lake") == lake.root]

    assert {r.name for r in replay_runs()} == {f"daily-{d}" for d in out["replayed"]}

    before = len(lake.read_ingest_log())
    backfill_flow(start="2024-03-13", end="2024-03-15", lake=lake_root, config_file=cfg, replay=True)
    assert len(lake.read_ingest_log()) == before  # nothing re-fetched
    runs = replay_runs()
    latest = {}
    for r in sorted(runs, key=lambda r: r.created):
        latest[r.name] = r
    assert len(runs) == 6 and len(latest) == 3
    for r in latest.values():  # the re-run did no stage work
        assert {t.state.name for t in task_runs(r.id, expected=len(STAGES))} == {"Cached"}


def test_a_failed_run_rerun_after_the_fix_resumes_from_the_failed_stage(tmp_path, lake_root):
    cfg = config(tmp_path)
    blocker = Path(lake_root) / "reports" / "2024-03-15"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the report folder should be")  # e.g. a broken mount
    failed = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=cfg, return_state=True)
    assert failed.is_failed()
    art = artifacts(failed.state_details.flow_run_id)[FAILURE_KEY]
    assert "**stage:** forecast" in art.data and "000001.SH, 600519.SH" in art.data  # first to write there

    blocker.unlink()  # the cause is fixed
    fixed = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=cfg, return_state=True)
    assert fixed.is_completed()
    states = {r.name.split("-")[0]: r.state.name for r in task_runs(fixed.state_details.flow_run_id, len(STAGES))}
    failed_at = STAGES.index("forecast")
    assert {states[s] for s in STAGES[:failed_at]} == {"Cached"}  # everything before the failed stage
    assert states["forecast"] == states["report"] == "Completed"
    assert (blocker / "report.html").is_file()
