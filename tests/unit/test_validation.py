"""validate_chunk on a temporary lake: curated vs quarantine, release, history, Data Docs."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers_validation import (
    FEB_2024,
    MAIN_BOARD,
    OTHER,
    chunk_ref,
    clean_bars,
    corrupted_import,
    read_quarantine,
    validation_history,
    write_raw_frame,
)

from kline.calendar import sessions_in_range
from kline.config import Settings
from kline.contracts import ChunkValidationError
from kline.ingestion import ingest_range
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.schema import to_table
from kline.validation import (
    failure_table,
    quarantine_counts,
    read_validation_result,
    summary_markdown,
    validate_chunk,
)

TODAY = dt.date(2024, 6, 3)
SETTINGS = Settings()


def _keys(df: pd.DataFrame) -> set[tuple[str, dt.date]]:
    return set(zip(df["symbol"], df["trade_date"], strict=True))


def _validate(lake: Lake, frame: pd.DataFrame, **kw) -> dict:
    return validate_chunk(lake, chunk_ref(frame, *FEB_2024), SETTINGS, today=TODAY, **kw)


def test_clean_chunk_goes_to_curated(lake, isolated_cwd):
    clean = clean_bars()
    write_raw_frame(lake, clean)
    out = _validate(lake, clean)
    assert out["rows_checked"] == out["rows_passed"] == len(clean)
    assert out["rows_quarantined"] == 0 and out["failed_expectations"] == [] and out["excluded_symbols"] == []
    curated = lake.read_curated_bars()
    assert _keys(curated) == _keys(clean) and len(curated) == len(clean)
    assert quarantine_counts(lake) == {}
    # Results and Data Docs live in the lake; GX wrote nothing into the working directory.
    assert out["result_path"] == f"{lake.root}/validation/results/{out['run_id']}.json"
    assert out["docs_path"] == f"{lake.root}/validation/docs/index.html" and os.path.isfile(out["docs_path"])
    assert os.listdir(isolated_cwd) == []


def test_corrupted_import_splits_into_curated_and_quarantine(lake):
    clean = clean_bars()
    bad = corrupted_import(clean)
    write_raw_frame(lake, bad.frame)
    out = _validate(lake, bad.frame)

    q = read_quarantine(lake)
    assert _keys(q) == bad.keys() and len(q) == bad.rows == out["rows_quarantined"]
    curated = lake.read_curated_bars()
    assert _keys(curated) == _keys(bad.frame) - bad.keys()
    assert len(curated) + len(q) == len(bad.frame)
    reasons = dict(zip(zip(q["symbol"], q["trade_date"], strict=True), q["failed_expectations"], strict=True))
    assert "high_ge_low" in reasons[bad.broken["high_lt_low"]]
    assert reasons[bad.broken["nan_close"]] == "not_null_close"
    assert "positive_open" in reasons[bad.broken["negative_price"]]
    assert reasons[bad.broken["jump_50pct"]] == "price_limit"
    assert reasons[bad.broken["weekend"]] == "trading_session"
    assert reasons[bad.broken["duplicate"]] == "unique_symbol_trade_date"
    assert set(q["run_id"]) == {out["run_id"]}
    assert quarantine_counts(lake) == {MAIN_BOARD: 4, OTHER: 3}
    # The jump's neighbour has a correct pre_close: kept, with a warning only.
    assert out["by_symbol"][MAIN_BOARD]["warnings"].get("pre_close_matches_previous_close") == 1
    n_main = int((clean["symbol"] == MAIN_BOARD).sum())
    sessions = len(sessions_in_range(*FEB_2024))
    assert out["by_symbol"][MAIN_BOARD] | {"warnings": None} == {
        "checked": n_main + 1, "passed": n_main - 3, "quarantined": 4, "warnings": None,
        "sessions_without_bar": sessions - (n_main - 3)}
    assert set(out["failed_expectations"]) >= {"price_limit", "trading_session", "not_null_close"}


def test_a_jump_carried_into_the_next_pre_close_quarantines_that_neighbour(lake):
    bad = corrupted_import(clean_bars(), carry_jump=True)
    write_raw_frame(lake, bad.frame)
    _validate(lake, bad.frame)
    q = read_quarantine(lake)
    assert _keys(q) == bad.keys()
    assert q.set_index(["symbol", "trade_date"]).loc[bad.broken["jump_neighbour"], "failed_expectations"] == "price_limit"


def test_fixing_the_source_releases_rows_from_quarantine(lake):
    clean = clean_bars()
    bad = corrupted_import(clean)
    write_raw_frame(lake, bad.frame)
    first = _validate(lake, bad.frame)
    # The source is fixed: the raw layer now holds the clean chunk (the weekend file goes).
    lake.fs.rm(lake.paths.raw_bars(bad.broken["weekend"][1], "synthetic"))
    write_raw_frame(lake, clean)
    again = _validate(lake, clean)
    assert again["rows_quarantined"] == 0
    assert again["released_from_quarantine"] == bad.rows  # the weekend row is judged gone too
    assert quarantine_counts(lake) == {} and read_quarantine(lake).empty
    curated = lake.read_curated_bars()
    assert _keys(curated) == _keys(clean) and len(curated) == len(clean)
    assert again["curated_fingerprint"] != first["curated_fingerprint"]


def test_a_curated_row_that_now_fails_leaves_curated(lake):
    clean = clean_bars()
    write_raw_frame(lake, clean)
    _validate(lake, clean)
    broken = clean.copy()
    i = broken.index[broken["symbol"] == OTHER][3]
    broken.loc[i, "close"] = -1.0
    write_raw_frame(lake, broken)
    out = _validate(lake, broken)
    key = (OTHER, broken.at[i, "trade_date"])
    assert out["removed_from_curated"] == 1
    assert key not in _keys(lake.read_curated_bars()) and _keys(read_quarantine(lake)) == {key}


def test_run_date_bar_in_quarantine_excludes_the_symbol(lake):
    clean = clean_bars()
    last = clean.index[clean["symbol"] == OTHER][-1]
    clean.loc[last, "high"] = clean.at[last, "low"] - 1.0
    write_raw_frame(lake, clean)
    out = _validate(lake, clean, run_date=FEB_2024[1])
    assert out["excluded_symbols"] == [OTHER]
    assert "Left out of downstream stages" in summary_markdown(out) and OTHER in summary_markdown(out)


def test_revalidating_is_idempotent(lake):
    bad = corrupted_import(clean_bars())
    write_raw_frame(lake, bad.frame)
    a = _validate(lake, bad.frame)
    b = _validate(lake, bad.frame)
    assert a["curated_fingerprint"] == b["curated_fingerprint"]
    assert len(read_quarantine(lake)) == bad.rows and set(read_quarantine(lake)["run_id"]) == {b["run_id"]}
    assert b["released_from_quarantine"] == 0
    assert [h["run_id"] for h in validation_history(lake)] == sorted([a["run_id"], b["run_id"]], reverse=True)


def test_chunk_boundary_is_not_a_false_warning(lake):
    provider = SyntheticProvider()
    syms = [MAIN_BOARD, OTHER, "000001.SH"]
    whole = validate_chunk(lake, ingest_range(provider, lake, syms, dt.date(2024, 1, 2), dt.date(2024, 2, 29)),
                           SETTINGS, today=TODAY)
    other = Lake(lake.root + "-split")
    jan = validate_chunk(other, ingest_range(provider, other, syms, dt.date(2024, 1, 2), dt.date(2024, 1, 31)),
                         SETTINGS, today=TODAY)
    feb = validate_chunk(other, ingest_range(provider, other, syms, dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
                         SETTINGS, today=TODAY)
    for s in syms:
        split = {k: jan["by_symbol"][s]["warnings"].get(k, 0) + feb["by_symbol"][s]["warnings"].get(k, 0)
                 for k in whole["by_symbol"][s]["warnings"] | jan["by_symbol"][s]["warnings"] | feb["by_symbol"][s]["warnings"]}
        assert {k: v for k, v in split.items() if v} == whole["by_symbol"][s]["warnings"]


def test_schema_failure_rejects_the_chunk_and_keeps_a_result(lake):
    clean = clean_bars()
    table = to_table(clean).append_column("turnover", pa.array(np.ones(len(clean))))
    for day in clean["trade_date"].unique():
        mask = (clean["trade_date"] == day).to_numpy()
        lake.atomic_write_table(lake.paths.raw_bars(day, "synthetic"), table.filter(mask))
    with pytest.raises(ChunkValidationError, match="schema_columns"):
        _validate(lake, clean, run_id="rejected-run")
    doc = read_validation_result(lake, "rejected-run")
    assert doc["status"] == "rejected" and doc["failed_expectations"] == ["schema_columns"]
    assert lake.read_curated_bars().empty and quarantine_counts(lake) == {}


def test_result_document_feeds_the_failure_table(lake):
    bad = corrupted_import(clean_bars())
    write_raw_frame(lake, bad.frame)
    out = _validate(lake, bad.frame)
    doc = read_validation_result(lake, out["run_id"])
    rows = failure_table(doc)
    assert {r["expectation"] for r in rows} == set(out["failed_expectations"]) | set(out["warning_expectations"])
    assert len({tuple(sorted(r)) for r in rows}) == 1  # one set of columns for a table artifact
    jump = next(r for r in rows if r["expectation"] == "price_limit")
    assert (jump["symbol"], jump["trade_date"]) == (bad.broken["jump_50pct"][0], bad.broken["jump_50pct"][1].isoformat())
    json.dumps(doc)


def test_quarantine_counts_do_not_import_great_expectations(lake):
    bad = corrupted_import(clean_bars())
    write_raw_frame(lake, bad.frame)
    _validate(lake, bad.frame)
    code = ("import sys, json; from kline.lake import Lake; from kline.validation import quarantine_counts; "
            f"c = quarantine_counts(Lake({lake.root!r})); "
            "assert 'great_expectations' not in sys.modules, 'GX imported'; print(json.dumps(c))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {MAIN_BOARD: 4, OTHER: 3}


def _status(page: str) -> str:
    m = re.search(r"Status:</span>\s*<i[^>]*></i>\s*(Succeeded|Failed)", open(page, encoding="utf-8").read())
    assert m, page
    return m.group(1)


def test_warning_only_failures_leave_the_critical_suite_passing_in_the_data_docs(lake):
    clean = clean_bars()
    i = clean.index[clean["symbol"] == OTHER][5]
    clean.loc[i, "volume"] = 0.0  # a warning (volume_not_zero), nothing critical
    write_raw_frame(lake, clean)
    out = _validate(lake, clean)
    assert out["rows_quarantined"] == 0 and out["failed_expectations"] == []
    assert out["warning_expectations"] == ["volume_not_zero"]
    pages = out["docs_pages"]
    assert set(pages) == {"critical", "warning"}
    assert "/validations/curated_bars_critical/" in pages["critical"]
    assert _status(pages["critical"]) == "Succeeded" and _status(pages["warning"]) == "Failed"
    for page in pages.values():
        text = open(page, encoding="utf-8").read()
        assert "Data asset: raw bars from synthetic, 2024-02-01 .. 2024-02-29 (" in text
        assert "reports/2024-02-29/report.html" in text  # links to the run date's report
        assert re.search(r"<(script|link|img)\b[^>]*(src|href)=\"https?://", text) is None


def test_a_critical_failure_fails_only_the_critical_page(lake):
    bad = corrupted_import(clean_bars())
    write_raw_frame(lake, bad.frame)
    out = _validate(lake, bad.frame)
    assert _status(out["docs_pages"]["critical"]) == "Failed"
