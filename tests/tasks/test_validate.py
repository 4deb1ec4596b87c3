import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from helpers_validation import (
    FEB_2024,
    MAIN_BOARD,
    chunk_ref,
    clean_bars,
    corrupted_import,
    write_raw_frame,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from kline.config import Settings
from kline.contracts import ChunkValidationError
from kline.lake import Lake
from kline.schema import to_table
from kline.validation import quarantine_counts
from tasks._common import stage_settings
from tasks.ingest import ingest_chunk
from tasks.validate import DOCS_KEY, FAILURES_KEY, SUMMARY_KEY, validate_chunk_task

SUB = stage_settings(Settings(), "validate")


def _latest(key: str):
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                     sort=ArtifactSort.CREATED_DESC, limit=1)
    return arts[0] if arts else None


def _link(artifact) -> str:
    """The URL of a link artifact (its data is ``[text](url)``)."""
    return artifact.data[artifact.data.rindex("](") + 2:-1]


def test_validate_task_returns_a_small_reference(lake_root, prefect_harness):
    ref = ingest_chunk.fn(lake_root, stage_settings(Settings(), "ingest"), ["600519.SH", "000001.SH"],
                          "2024-01-01", "2024-01-31")
    out = validate_chunk_task.fn(lake_root, SUB, ref, today="2024-06-03")
    assert out["rows_checked"] == out["rows_passed"] == ref["rows"]
    assert out["excluded_symbols"] == [] and out["run_date"] == "2024-01-31"
    assert len(json.dumps(out)) < 5000  # a reference, not data
    assert len(Lake(lake_root).read_curated_bars()) == ref["rows"]
    assert out["run_id"] in _latest(SUMMARY_KEY).data
    # no docs server announced for this lake: links stay file paths, to this run's critical page
    assert _link(_latest(DOCS_KEY)) == f"file://{out['docs_pages']['critical']}"
    assert out["docs_pages"]["critical"].startswith(f"{lake_root}/validation/docs/validations/curated_bars_critical/")
    assert f"file://{lake_root}/validation/docs/index.html" in _latest(SUMMARY_KEY).data


def test_validate_task_links_to_the_announced_docs_server(lake_root, prefect_harness):
    from kline.serving import DocsServer

    server = DocsServer(lake_root, port=0, public_url="https://kline.example.internal/lake").start()
    try:
        ref = ingest_chunk.fn(lake_root, stage_settings(Settings(), "ingest"), ["600519.SH"],
                              "2024-01-01", "2024-01-31")
        out = validate_chunk_task.fn(lake_root, SUB, ref, today="2024-06-03")
    finally:
        server.close()
    rel = out["docs_pages"]["critical"].removeprefix(f"{lake_root}/")
    assert _link(_latest(DOCS_KEY)) == f"https://kline.example.internal/lake/{rel}"
    assert "https://kline.example.internal/lake/validation/docs/index.html" in _latest(SUMMARY_KEY).data


def test_validate_task_publishes_failures_and_excluded_symbols(lake_root, prefect_harness):
    lake = Lake(lake_root)
    bad = corrupted_import(clean_bars())
    write_raw_frame(lake, bad.frame)
    jump_day = bad.broken["jump_50pct"][1]
    out = validate_chunk_task.fn(lake_root, SUB, chunk_ref(bad.frame, *FEB_2024),
                                 run_date=jump_day.isoformat(), today="2024-06-03")
    assert out["excluded_symbols"] == [MAIN_BOARD]
    assert quarantine_counts(lake) == {MAIN_BOARD: 4, "600519.SH": 3}
    summary = _latest(SUMMARY_KEY).data
    assert out["run_id"] in summary and "Left out of downstream stages" in summary
    table = json.loads(_latest(FAILURES_KEY).data)
    assert {"price_limit", "trading_session", "unique_symbol_trade_date"} <= {r["expectation"] for r in table}


def test_schema_failure_fails_the_task_naming_the_expectation(lake_root, prefect_harness):
    lake = Lake(lake_root)
    clean = clean_bars()
    table = to_table(clean).append_column("turnover", pa.array(np.ones(len(clean))))
    for day in clean["trade_date"].unique():
        lake.atomic_write_table(lake.paths.raw_bars(day, "synthetic"), table.filter((clean["trade_date"] == day).to_numpy()))
    with pytest.raises(ChunkValidationError, match="schema_columns"):
        validate_chunk_task.fn(lake_root, SUB, chunk_ref(clean, *FEB_2024), today=dt.date(2024, 6, 3).isoformat())
    assert "schema_columns" in _latest(SUMMARY_KEY).data
