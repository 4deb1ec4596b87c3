import datetime as dt
import json

import pytest

from kline.config import Settings
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.report import FIGURES
from tasks._common import stage_settings
from tasks.backtest import backtest
from tasks.report import LINK_KEY, METRICS_KEY, SUMMARY_KEY, report

SYMBOLS = ["000001.SH", "600519.SH"]
FAST = {
    "features": {"features": ["log_return", "hl_range", "volatility_5"], "window": 5},
    "train": {"test_sessions": 30},
    "backtest": {"retrain_every": 15, "models": ["persistence", "rolling_mean", "ridge"]},
}
DECISION = {"promote": False, "metric": "mase", "candidate": "ridge", "candidate_version": "v1",
            "reason": "ridge mase 1.03 does not beat persistence 1.00", "champion_version": None}


def backtested(lake_root: str, run: str) -> dict:
    lake = Lake(lake_root)
    if not lake.curated_years():
        lake.write_curated_bars(SyntheticProvider(seed=3).fetch(SYMBOLS, dt.date(2022, 7, 1), dt.date(2023, 7, 31)))
    return backtest.fn(lake_root, stage_settings(Settings().replace(**FAST), "backtest"), run, SYMBOLS, "fp")


def test_report_task_saves_the_report_files(lake_root):
    ref = backtested(lake_root, "2023-06-30")
    out = report.fn(lake_root, "2023-06-30", SYMBOLS, ref, DECISION, candidate="ridge",
                    model_card={"name": "ridge"}, validation={"success": True})
    lake = Lake(lake_root)
    folder = f"{lake.root}/reports/2023-06-30"
    assert out["dir"] == folder
    assert set(lake.listdir(folder)) == {"report.html", "metrics.json", "summary.md", *(f"{f}.png" for f in FIGURES)}
    for f in FIGURES:
        assert lake.read_bytes(f"{folder}/{f}.png")[:4] == b"\x89PNG"
    metrics = json.loads(lake.read_text(f"{folder}/metrics.json"))
    assert metrics["decision"]["promote"] is False
    assert metrics["fingerprint"] == "fp"
    html = lake.read_text(f"{folder}/report.html")
    assert "it was not promoted" in out["summary"] and html.count("data:image/png;base64,") == len(FIGURES)
    assert out["artifacts"] == []  # outside a Prefect run nothing is published


def test_metrics_history_grows_by_date_and_rerun_replaces(lake_root):
    lake = Lake(lake_root)
    for run in ("2023-06-29", "2023-06-30", "2023-06-30"):
        out = report.fn(lake_root, run, SYMBOLS, backtested(lake_root, run), None, candidate="ridge")
    hist = lake.read_table(lake.paths.metrics_history()).to_pandas()
    assert out["history_rows"] == len(hist) == 2 * 3  # two dates x three models
    assert sorted({str(d) for d in hist["run_date"]}) == ["2023-06-29", "2023-06-30"]


def test_report_task_publishes_artifacts_in_a_flow(lake_root, prefect_harness):
    from prefect import flow
    from prefect.artifacts import Artifact

    ref = backtested(lake_root, "2023-06-30")

    @flow
    def f():
        return report(lake_root, "2023-06-30", SYMBOLS, ref, DECISION, candidate="ridge")

    out = f()
    assert out["artifacts"] == [SUMMARY_KEY, METRICS_KEY, LINK_KEY]
    md = Artifact.get(SUMMARY_KEY)
    assert md.type == "markdown" and out["summary"] in md.data
    table = Artifact.get(METRICS_KEY)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["model"] for r in rows} == {"persistence", "ridge", "rolling_mean", "buy_and_hold"}
    link = Artifact.get(LINK_KEY)
    assert "file://" in link.data and "reports/2023-06-30/report.html" in link.data  # stored as markdown


def test_report_fails_clearly_without_a_backtest(lake_root):
    with pytest.raises(FileNotFoundError):
        report.fn(lake_root, "2023-06-30", SYMBOLS, {"summary": f"{lake_root}/backtests/none/summary.json",
                                           "predictions": "", "equity": ""})
