"""Report stage: render the run date's report, save it under ``reports/<run_date>/`` and
publish Prefect artifacts with stable keys (summary markdown, metrics table, report link).

Cached like every stage: a re-run of the same date with nothing changed keeps the report,
the metrics history and the artifacts the first run published. The report shows the metrics
history up to its own run date only.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext

from kline.datadocs import relative_url
from kline.jsonable import jsonable
from kline.lake import Lake
from kline.report import (
    FIGURES,
    Report,
    ReportInputs,
    history_rows,
    loss_history_from_fits,
    merge_history,
    metrics_rows,
    render_report,
)
from kline.serving import link_for, link_note, write_reports_index
from tasks import events
from tasks._common import STAGE_CACHE

SUMMARY_KEY = "kline-report-summary"
METRICS_KEY = "kline-report-metrics"
LINK_KEY = "kline-report-link"
TABLE_COLUMNS = ["model", "n", "mase", "rmse", "directional_accuracy", "da_pvalue", "ic", "r2_oos",
                 "dm_pvalue", "cagr", "sharpe", "max_drawdown", "costs"]


def _registry_card(lake: Lake, name: str, version: str) -> dict | None:
    """The registered card without its fitted state (scalers are long and say little)."""
    from kline import registry

    try:
        card = registry.read_card(lake, name, version)
    except FileNotFoundError:
        return None
    return {k: v for k, v in card.items() if k != "state"}


def data_docs_pages(validation: dict | None) -> dict[str, str]:
    """Label -> local path of the run's Data Docs pages (critical, warning suites; index)."""
    v = validation or {}
    pages = v.get("docs_pages") or {}
    out = {f"Data Docs: {sev} checks": path for sev, path in sorted(pages.items())}
    if v.get("docs_path"):
        out["Data Docs: all validation runs"] = v["docs_path"]
    return out


def publish_artifacts(
    lake: Lake, run_date: str, summary_md: str, rows: list[dict], html_path: str, sentence: str,
    docs: dict[str, str] | None = None,
) -> list[str]:
    """Markdown summary (with links to the report and the Data Docs), metrics table and a
    link to report.html, under stable keys; links go through ``kline.serving.link_for``."""
    report_url = link_for(lake, html_path)
    links = [f"- [Report {run_date}]({report_url})"]
    links += [f"- [{label}]({link_for(lake, path)})" for label, path in (docs or {}).items()]
    summary_md = f"{summary_md.rstrip()}\n\n## Links\n\n" + "\n".join(links) + f"\n\n({link_note(report_url)})\n"
    create_markdown_artifact(markdown=summary_md, key=SUMMARY_KEY, description=f"kline report {run_date}")
    table = [{k: r.get(k) for k in TABLE_COLUMNS} for r in jsonable(rows)]
    create_table_artifact(table=table, key=METRICS_KEY, description=f"held-out metrics {run_date}")
    create_link_artifact(link=report_url, link_text=f"report {run_date}", key=LINK_KEY,
                         description=f"{sentence} ({link_note(report_url)})")
    return [SUMMARY_KEY, METRICS_KEY, LINK_KEY]


def _metrics(summary: dict, part: str) -> dict[str, dict[str, float]]:
    """Model -> metric -> value of the backtest summary's ``part``; JSON nulls read back as NaN."""
    return {m: {k: math.nan if v is None else v for k, v in f.items()} for m, f in summary[part].items()}


def _update_history(lake: Lake, day: dt.date, forecast: dict, strategy: dict) -> pd.DataFrame:
    """The metrics history with ``day``'s rows merged in (replacing a re-run's), saved under its lock."""
    with lake.lock("metrics-history"):
        hpath = lake.paths.metrics_history()
        old = lake.read_table(hpath).to_pandas() if lake.exists(hpath) else None
        if old is not None:
            old["run_date"] = pd.to_datetime(old["run_date"]).dt.date
        history = merge_history(old, history_rows(day, forecast, strategy))
        lake.atomic_write_table(hpath, pa.Table.from_pandas(history, preserve_index=False))
    return history


def _save_report(lake: Lake, folder: str, rep: Report) -> dict[str, str]:
    """Write the PNGs, metrics.json, summary.md and report.html; returns file name -> path."""
    files = {f"{name}.png": f"{folder}/{name}.png" for name in FIGURES}
    files |= {name: f"{folder}/{name}" for name in ("metrics.json", "summary.md", "report.html")}
    for name in FIGURES:
        lake.atomic_write_bytes(files[f"{name}.png"], rep.pngs[name])
    lake.atomic_write_text(files["metrics.json"], json.dumps(rep.metrics, indent=1, allow_nan=False))
    lake.atomic_write_text(files["summary.md"], rep.summary_markdown)
    lake.atomic_write_text(files["report.html"], rep.html)  # last: its presence means the report is whole
    return files


@task(name="report", task_run_name="report-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def report(lake_root: str, run_date: str, symbols: list[str], backtest_ref: dict, decision: dict | None = None,
           candidate: str = "lstm", candidate_version: str | None = None, model_card: dict | None = None,
           validation: dict | None = None, next_session: dict | None = None) -> dict:
    """Render and save ``report.html``, the PNGs and ``metrics.json`` for ``run_date`` (ISO)
    from the backtest stage's files; append the run to the metrics history; publish the
    artifacts when run inside Prefect. The model card is ``model_card`` or, given
    ``candidate_version``, the registry's. Returns the folder, file paths and the sentence."""
    lake = Lake(lake_root)
    if model_card is None and candidate_version:
        model_card = _registry_card(lake, candidate, candidate_version)
    day = dt.date.fromisoformat(run_date)
    summary = json.loads(lake.read_text(backtest_ref["summary"]))
    predictions = lake.read_table(backtest_ref["predictions"]).to_pandas()
    equity = lake.read_table(backtest_ref["equity"]).to_pandas().set_index("trade_date")
    bars = lake.read_curated_bars(symbols, end=day, columns=["symbol", "trade_date", "close"])
    forecast, strategy = _metrics(summary, "forecast"), _metrics(summary, "strategy")
    history = _update_history(lake, day, forecast, strategy)

    folder = lake.paths.report_dir(day)
    local = "://" not in lake.root  # the docs and the reports index are built for local lakes
    docs = data_docs_pages(validation) if local else {}
    links = {label: relative_url(folder, path) for label, path in docs.items()}
    if local:
        links["all reports"] = "../index.html"
    rep = render_report(ReportInputs(
        run_date=day, candidate=candidate, bars=bars, predictions=predictions, forecast=forecast,
        strategy=strategy, equity=equity, loss_history=loss_history_from_fits(summary.get("fits", []), candidate),
        decision=decision, model_card=model_card, validation=validation,
        fingerprint=summary.get("data_fingerprint", ""),
        history=history[pd.to_datetime(history["run_date"]).dt.date <= day],  # point in time
        next_session=next_session, links=links, cross_section=summary.get("cross_section"),
    ))
    files = _save_report(lake, folder, rep)
    if local:
        files["index.html"] = write_reports_index(lake)
    events.emit(events.REPORT_PUBLISHED, f"kline.report.{events.lake_id(lake_root)}.{run_date}", f"report {run_date}",
                lake_root, symbols, {"run_date": run_date, "path": files["report.html"], "summary": rep.summary})
    artifacts = []
    if TaskRunContext.get() is not None:  # publish only inside a Prefect run
        artifacts = publish_artifacts(lake, run_date, rep.summary_markdown, metrics_rows(forecast, strategy),
                                      files["report.html"], rep.summary, docs)
    return {"dir": folder, "files": files, "summary": rep.summary, "artifacts": artifacts,
            "history_rows": len(history)}
