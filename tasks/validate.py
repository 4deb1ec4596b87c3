"""Validate stage: one GX run per ingested chunk, then curated / quarantine and artifacts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE

from kline.contracts import ChunkValidationError
from kline.lake import Lake
from kline.serving import link_for, link_note
from kline.validation import failure_table, read_validation_result, summary_markdown, validate_chunk
from tasks import events
from tasks._common import settings_from, use_layers

SUMMARY_KEY = "validation-summary"
FAILURES_KEY = "validation-failures"
DOCS_KEY = "validation-docs"


@task(
    name="validate",
    task_run_name="validate-{chunk[start]}..{chunk[end]}",
    # Deterministic: no retries. The chunk reference carries the raw content hash, so a
    # re-ingested (fixed) chunk gets a new key and is validated again. The alert threshold
    # only decides an event's severity: changing it re-validates nothing.
    cache_policy=(INPUTS - "quarantine_alert_rows" - "calendars") + TASK_SOURCE,
    persist_result=True,
)
def validate_chunk_task(
    lake_root: str,
    settings: dict,
    chunk: dict,
    run_date: str | None = None,
    today: str | None = None,
    quarantine_alert_rows: int | None = None,
    calendars: dict | None = None,
) -> dict[str, Any]:
    """Validate the raw bars of ``chunk`` (an ``ingest_chunk`` reference) and publish the
    summary, failed-expectation and Data Docs artifacts.

    ``settings`` is the validate stage's sub-dict (``tasks._common.stage_settings``);
    ``run_date`` / ``today`` are ISO dates (defaults: the chunk's end / today in Shanghai).
    Quarantined rows emit ``kline.data.quarantined``, an alert from ``quarantine_alert_rows``
    rows on. Returns ``kline.validation.validate_chunk``'s summary: counts per symbol, warnings,
    ``excluded_symbols``, ``curated_fingerprint``, result and docs paths. A schema failure
    raises ``ChunkValidationError`` naming the expectation. ``calendars`` as for
    ``tasks.ingest.ingest_chunk``.
    """
    use_layers(calendars)
    lake = Lake(lake_root)
    try:
        summary = validate_chunk(
            lake, chunk, settings_from(settings),
            run_date=dt.date.fromisoformat(run_date) if run_date else None,
            today=dt.date.fromisoformat(today) if today else None,
        )
    except ChunkValidationError as exc:
        create_markdown_artifact(
            key=SUMMARY_KEY,
            markdown=f"# Validation rejected chunk {chunk['start']} .. {chunk['end']}\n\n{exc}\n",
            description="Whole chunk rejected",
        )
        raise
    if summary.get("rows_quarantined"):
        n = int(summary["rows_quarantined"])
        events.emit(events.QUARANTINED, events.data_resource(lake_root, "quarantine.bars"), "quarantined bars",
                    lake_root, sorted(summary.get("by_symbol") or chunk.get("symbols") or []),
                    {"rows": n, "rows_checked": summary.get("rows_checked"), "start": chunk["start"],
                     "end": chunk["end"], "failed_expectations": summary.get("failed_expectations") or [],
                     "excluded_symbols": summary.get("excluded_symbols") or [],
                     "threshold": quarantine_alert_rows},
                    alert=quarantine_alert_rows is not None and n >= quarantine_alert_rows)
    pages = summary.get("docs_pages") or {}
    docs_target = pages.get("critical") or summary["docs_path"]
    md = summary_markdown(summary)
    if docs_target:
        md += "\nData Docs: " + " · ".join(
            [f"[{sev} checks]({link_for(lake, p)})" for sev, p in sorted(pages.items())]
            + [f"[all validation runs]({link_for(lake, summary['docs_path'])})"]) + "\n"
    create_markdown_artifact(key=SUMMARY_KEY, markdown=md,
                             description=f"Validation {chunk['start']} .. {chunk['end']}")
    rows = failure_table(read_validation_result(lake, summary["run_id"]))
    if rows:
        create_table_artifact(key=FAILURES_KEY, table=rows,
                              description="Failed expectations with example rows")
    if docs_target:
        url = link_for(lake, docs_target)
        create_link_artifact(key=DOCS_KEY, link=url,
                             link_text=f"Data Docs: critical checks {chunk['start']} .. {chunk['end']}",
                             description=f"Great Expectations Data Docs built into the lake ({link_note(url)})")
    return summary
