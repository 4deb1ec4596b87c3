"""Validate an ingested chunk: curated rows, quarantine, warnings, results with history.

``validate_chunk`` reads the raw bars of one chunk (the reference ``ingest_range`` returns),
runs the suite of ``kline.contracts`` once over the whole chunk with the real GX engine and
writes:

- rows that pass every critical rule to the curated layer (upsert, unique, sorted);
- rows that fail one to ``quarantine/bars/trade_date=<day>/<run_id>.parquet`` with the rules
  they failed (``failed_expectations``, comma separated), a ``reason`` that also names the
  price limit applied and its source (``kline.rules``), and the run that found them;
- the run's result document to ``validation/results/<run_id>.json`` (one file per run: the
  history), and GX Data Docs into ``validation/docs/``.

The quarantine holds the *current* verdict: re-validating a chunk first removes every
quarantined row of its symbols and dates, so rows that now pass are released (and written
to curated), and rows that still fail are quarantined again under the new run. A curated row
that now fails is deleted from curated.

Neighbours of a broken row. Every critical rule judges a row on its own values: the price
limit compares the row's ``close`` with its *own* ``pre_close``. So when the source repeats a
broken close as the next day's ``pre_close`` (a consistent but wrong series), that next row
breaks the limit too and is quarantined with it: it is the only extra row that a broken row
can pull into quarantine. When the next day's ``pre_close`` is right, the neighbour stays in
curated and carries at most the ``pre_close_matches_previous_close`` warning, since the
warning rules compare with the previous row of the chunk (broken or not) or, for a chunk's
first row, with the symbol's last curated bar.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from kline.calendar import sessions_array
from kline.calendar import today as shanghai_today
from kline.config import Settings
from kline.contracts import ChunkValidationError, DocsSite, bar_suite, derive_checks, run_suite
from kline.datadocs import MirroredDocs
from kline.instruments import Instrument, instrument, is_a_share_code
from kline.lake import Lake, content_hash
from kline.rules import describe_limit_sources
from kline.schema import BAR_COLUMNS, BAR_SCHEMA, KEY_COLUMNS

QUARANTINE_SCHEMA = pa.schema(
    [*BAR_SCHEMA, ("failed_expectations", pa.string()), ("reason", pa.string()), ("run_id", pa.string()),
     ("validated_at", pa.timestamp("us", tz="UTC"))]
)
_EXAMPLES = 5  # example rows per failed expectation in the result document


def new_run_id(now: dt.datetime | None = None) -> str:
    """A time-sortable, path-safe validation run id: ``YYYYmmddTHHMMSSffffffZ-<6 hex>``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"


def instrument_for(symbol: str, settings: Settings) -> Instrument:
    """The instrument with its calendar: XSHG for A-share codes, else the file import's
    per-symbol or default calendar (a foreign symbol without one raises SymbolError)."""
    cal = settings.file.calendars.get(symbol)
    if cal is None and not is_a_share_code(symbol):
        cal = settings.file.calendar or None
    return instrument(symbol, calendar=cal)


def previous_curated(lake: Lake, symbols: Iterable[str], before: dt.date, lookback_days: int) -> pd.DataFrame:
    """Per symbol, its last curated bar strictly before ``before`` within ``lookback_days``
    (columns ``symbol, trade_date, close``); symbols without one are absent."""
    df = lake.read_curated_bars(
        symbols=list(symbols), start=before - dt.timedelta(days=lookback_days),
        end=before - dt.timedelta(days=1), columns=["symbol", "trade_date", "close"],
    )
    if df.empty:
        return df
    return df.groupby("symbol", sort=True).tail(1).reset_index(drop=True)


def validate_chunk(
    lake: Lake,
    chunk: Mapping[str, Any],
    settings: Settings,
    run_id: str | None = None,
    run_date: dt.date | None = None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Validate the raw bars of ``chunk`` (``source, start, end, symbols`` as ISO strings /
    a list) in one GX run; write curated and quarantine; return a small summary dict.

    ``run_date`` (default the chunk's end) names the bar whose quarantine excludes a symbol
    downstream; ``today`` (default today in ``settings.timezone``) bounds trade dates.
    Raises ``ChunkValidationError`` naming the rule when the whole chunk fails (schema).
    """
    t0 = time.perf_counter()
    cfg = settings.validation
    source = str(chunk["source"])
    start, end = _as_date(chunk["start"]), _as_date(chunk["end"])
    symbols = list(dict.fromkeys(chunk["symbols"]))
    run_id = run_id or new_run_id()
    run_date = run_date or end
    today = today or shanghai_today(settings.timezone)

    bars = lake.read_raw_bars(start, end, symbols, source)
    present = bars["symbol"].dropna().astype(str).unique().tolist() if "symbol" in bars else []
    instruments = {s: instrument_for(s, settings) for s in dict.fromkeys([*symbols, *present])}
    facts = lake.read_instrument_facts(list(instruments), start, end, source=source)
    frame = derive_checks(bars, instruments, previous_curated(lake, symbols, start, cfg.lookback_days),
                          today, facts)

    docs, mirror = _docs_site(lake, settings, run_date)
    lock = lake.lock("validation-docs") if docs else None
    outcome = run_suite(frame, bar_suite(cfg, today), run_name=run_id, docs=docs,
                        docs_lock=mirror.synced(lock) if mirror else lock,
                        asset_name=asset_name(source, start, end, symbols))
    if mirror and outcome.docs_index:  # name the pages by their place in the lake
        outcome.docs_index = mirror.remote(outcome.docs_index)
        outcome.docs_pages = {k: mirror.remote(v) for k, v in outcome.docs_pages.items()}

    base = {
        "run_id": run_id, "source": source, "start": start.isoformat(), "end": end.isoformat(),
        "run_date": run_date.isoformat(), "today": today.isoformat(), "symbols": symbols,
        "result_path": lake.paths.validation_result(run_id), "docs_path": outcome.docs_index,
        "docs_pages": outcome.docs_pages,
        "validated_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    rejected = outcome.chunk_failures()
    if rejected:
        _write_result(lake, {**base, "status": "rejected", "rows_checked": len(frame),
                             "failed_expectations": rejected, "gx_seconds": round(outcome.seconds, 3)},
                      outcome, frame)
        detail = "; ".join(f"{o.rule}: {o.exception or o.observed}" for o in outcome.outcomes
                           if o.rule in rejected)
        raise ChunkValidationError(rejected, detail)

    critical = [o for o in outcome.outcomes if o.scope == "row" and o.severity == "critical"]
    warnings = [o for o in outcome.outcomes if o.scope == "row" and o.severity == "warning"]
    bad, passed, failed = _row_verdicts(frame, critical)

    curated_years, removed_from_curated, released = _apply_verdicts(lake, passed, failed, run_id,
                                                                    symbols, start, end)

    excluded, no_bar = _run_date_gaps(passed, failed, symbols, run_date)
    summary = {
        **base,
        "status": "passed" if not bad.any() else "quarantined",
        "rows_checked": len(frame),
        "rows_passed": int((~bad).sum()),
        "rows_quarantined": int(bad.sum()),
        "limit_facts": facts.sources(),
        "by_symbol": _per_symbol(frame, bad, warnings, symbols, instruments, start, min(end, today)),
        "failed_expectations": [o.rule for o in critical if not o.success],
        "warning_expectations": [o.rule for o in warnings if not o.success],
        "excluded_symbols": excluded,
        "no_bar_on_run_date": no_bar,
        "curated_fingerprint": content_hash(passed.sort_values(KEY_COLUMNS, kind="stable")),
        "curated_years": curated_years,
        "released_from_quarantine": released,
        "removed_from_curated": removed_from_curated,
        "gx_seconds": round(outcome.seconds, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    _write_result(lake, summary, outcome, frame)
    return summary


def _run_date_gaps(passed: pd.DataFrame, failed: pd.DataFrame, symbols: list[str],
                   run_date: dt.date) -> tuple[list[str], list[str]]:
    """(symbols whose run-date bar is quarantined, symbols with no bar on the run date at all)."""
    on_run_date = pd.to_datetime(failed["trade_date"], errors="coerce").dt.date == run_date
    excluded = sorted(set(failed.loc[on_run_date.to_numpy(), "symbol"].dropna().astype(str)))
    no_bar = sorted(set(symbols) - set(passed.loc[passed["trade_date"] == run_date, "symbol"]) - set(excluded))
    return excluded, no_bar


def _apply_verdicts(lake: Lake, passed: pd.DataFrame, failed: pd.DataFrame, run_id: str,
                    symbols: list[str], start: dt.date, end: dt.date) -> tuple[list[int], int, int]:
    """Write passed rows to curated, take failed keys out of it, and replace the chunk's
    quarantine; returns (curated years written, rows removed from curated, rows released)."""
    curated_years = lake.write_curated_bars(passed)
    keys = failed[KEY_COLUMNS].dropna()
    removed = lake.delete_curated_rows(keys) if not keys.empty else 0
    previously = release_quarantine(lake, symbols, start, end)
    write_quarantine(lake, failed, run_id, pd.Timestamp.now(tz="UTC"), undated=start)
    return curated_years, int(removed), _count_released(previously, failed)


def _docs_site(lake: Lake, settings: Settings, run_date: dt.date) -> tuple[DocsSite | None, MirroredDocs | None]:
    """Where and how GX Data Docs are built for this lake (None when off), and for an object
    store the local mirror they are built in and shared from (``kline.datadocs.MirroredDocs``)."""
    cfg = settings.validation
    if not cfg.data_docs:
        return None, None
    site, results = lake.paths.data_docs_dir(), f"{lake.paths.validation_results_dir()}/gx"
    mirror = MirroredDocs(lake.fs, lake.root, [site, results]) if "://" in lake.root else None
    at = mirror.local if mirror else str
    return DocsSite(site_dir=at(site), results_dir=at(results), history=cfg.docs_history,
                    index_links={"kline reports": at(lake.paths.reports_index())},
                    links={f"kline report {run_date.isoformat()}": at(lake.paths.report_html(run_date)),
                           "all kline reports": at(lake.paths.reports_index())}), mirror


def _row_verdicts(frame: pd.DataFrame, critical: list[Any]) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(bad mask, passed bars, failed bars with failed rule names and a reason) from the
    critical row rules' failed row positions."""
    fails = np.zeros((len(frame), len(critical)), dtype=bool)
    for j, o in enumerate(critical):
        fails[o.failed_rows, j] = True
    bad = fails.any(axis=1)
    passed = frame.loc[~bad, BAR_COLUMNS].reset_index(drop=True)
    failed = frame.loc[bad, BAR_COLUMNS].reset_index(drop=True)
    names = np.array([o.rule for o in critical], dtype=object)
    failed["failed_expectations"] = [",".join(names[row]) for row in fails[bad]]
    checks = frame.loc[bad, ["chk_limit_excess", "chk_limit_price_excess", "chk_limit_rule"]]
    failed["reason"] = [_reason(names[row], r) for row, r in
                        zip(fails[bad], checks.itertuples(index=False), strict=True)]
    return bad, passed, failed


def _write_result(lake: Lake, summary: Mapping[str, Any], outcome: Any, frame: pd.DataFrame) -> None:
    """The run's result document: the summary plus GX statistics and per-expectation details."""
    doc = {**summary, "statistics": outcome.statistics,
           "expectations": [_expectation_doc(o, frame) for o in outcome.outcomes]}
    lake.atomic_write_text(summary["result_path"], json.dumps(doc, indent=1, default=str))


def asset_name(source: str, start: dt.date, end: dt.date, symbols: list[str]) -> str:
    """What the Data Docs call the validated data: source, span and universe of the chunk."""
    shown = ", ".join(symbols[:6]) + (f" and {len(symbols) - 6} more" if len(symbols) > 6 else "")
    return f"raw bars from {source}, {start.isoformat()} .. {end.isoformat()} ({shown})"


def _reason(rules: Iterable[str], check: Any) -> str:
    """The failed rules, the price limit one with the limit applied and its source."""
    out = []
    for r in rules:
        if r == "price_limit":
            r = f"price_limit: {check.chk_limit_excess:+.2%} of pre_close beyond {check.chk_limit_rule}"
        elif r == "exchange_price_limit":
            r = f"exchange_price_limit: close {check.chk_limit_price_excess:.2f} beyond {check.chk_limit_rule}"
        out.append(r)
    return "; ".join(out)


def _as_date(x: Any) -> dt.date:
    return x if isinstance(x, dt.date) else dt.date.fromisoformat(str(x))


def _per_symbol(
    frame: pd.DataFrame,
    bad: np.ndarray,
    warnings: list,
    symbols: list[str],
    instruments: Mapping[str, Instrument],
    start: dt.date,
    end: dt.date,
) -> dict[str, dict[str, Any]]:
    """Per symbol: rows checked / passed / quarantined, warnings on kept rows by rule, and
    calendar sessions in ``[start, end]`` without a kept bar."""
    sym = frame["symbol"].astype(object).where(frame["symbol"].notna(), "<null>").to_numpy()
    checked = pd.Series(sym).value_counts()
    quarantined = pd.Series(sym[bad]).value_counts()
    warn: dict[str, dict[str, int]] = {}
    for o in warnings:
        rows = o.failed_rows[~bad[o.failed_rows]]
        for s, c in pd.Series(sym[rows]).value_counts().items():
            warn.setdefault(s, {})[o.rule] = int(c)
    kept_sessions = pd.Series(sym[~bad & (frame["chk_is_session"] == True).to_numpy()]).value_counts()  # noqa: E712
    out = {}
    for s in dict.fromkeys([*symbols, *checked.index]):
        inst = instruments.get(s)
        expected = len(sessions_array(start, end, inst.calendar)) if inst and start <= end else 0
        out[s] = {
            "checked": int(checked.get(s, 0)),
            "passed": int(checked.get(s, 0) - quarantined.get(s, 0)),
            "quarantined": int(quarantined.get(s, 0)),
            "warnings": warn.get(s, {}),
            "sessions_without_bar": max(expected - int(kept_sessions.get(s, 0)), 0),
        }
    return out


def _expectation_doc(o: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """JSON-able record of one rule's outcome with a few example rows."""
    cols = [c for c in [*KEY_COLUMNS, "open", "high", "low", "close", "pre_close", "volume"] if c in frame]
    examples = frame.iloc[o.failed_rows[:_EXAMPLES]][cols].copy()
    if "trade_date" in examples:
        examples["trade_date"] = [d.isoformat() if isinstance(d, dt.date) else None for d in examples["trade_date"]]
    return {
        "rule": o.rule, "severity": o.severity, "scope": o.scope, "gx_type": o.gx_type,
        "kwargs": {k: v for k, v in o.kwargs.items() if k != "column_set"},
        "description": o.description, "success": o.success,
        "unexpected_count": o.unexpected_count, "observed": o.observed, "exception": o.exception,
        "examples": json.loads(examples.to_json(orient="records")),
    }


# -- quarantine ------------------------------------------------------------------------------


def _quarantine_files(lake: Lake, start: dt.date | None = None, end: dt.date | None = None) -> list[tuple[dt.date, str]]:
    """(trade_date, path) of every quarantine file, optionally within ``[start, end]``."""
    out = []
    root = lake.paths.quarantine_bars_dir()
    for part in lake.listdir(root):
        if not part.startswith("trade_date="):
            continue
        try:
            day = dt.date.fromisoformat(part.removeprefix("trade_date="))
        except ValueError:
            continue
        if (start is not None and day < start) or (end is not None and day > end):
            continue
        for name in lake.listdir(f"{root}/{part}"):
            if name.endswith(".parquet") and ".tmp-" not in name:
                out.append((day, lake.paths.quarantine_bars(day, name.removesuffix(".parquet"))))
    return out


def write_quarantine(
    lake: Lake, rows: pd.DataFrame, run_id: str, validated_at: pd.Timestamp, undated: dt.date
) -> list[str]:
    """Write failed rows (bar columns + ``failed_expectations``) to one file per trade date
    under ``run_id`` (rows without a trade_date under ``undated``); returns the paths."""
    if rows.empty:
        return []
    rows = rows.assign(run_id=run_id, validated_at=validated_at)
    days = pd.to_datetime(rows["trade_date"], errors="coerce").dt.date.fillna(undated)
    paths = []
    for day, part in rows.groupby(days, sort=True):
        path = lake.paths.quarantine_bars(day, run_id)
        table = pa.Table.from_pandas(part[QUARANTINE_SCHEMA.names], schema=QUARANTINE_SCHEMA, preserve_index=False)
        with lake.lock(f"quarantine-{day.isoformat()}"):
            lake.atomic_write_table(path, table)
        paths.append(path)
    return paths


def release_quarantine(lake: Lake, symbols: Iterable[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Remove quarantined rows of ``symbols`` dated in ``[start, end]`` (all runs); returns
    their keys (``symbol, trade_date``). Files left empty are deleted."""
    symbols = set(symbols)
    removed = []
    for day, path in _quarantine_files(lake, start, end):
        with lake.lock(f"quarantine-{day.isoformat()}"):
            table = lake.read_table(path)
            df = table.to_pandas()
            drop = df["symbol"].isin(symbols).to_numpy()
            if not drop.any():
                continue
            removed.append(df.loc[drop, KEY_COLUMNS])
            if drop.all():
                lake.remove(path)
            else:
                lake.atomic_write_table(path, table.filter(pa.array(~drop)))
    if not removed:
        return pd.DataFrame({"symbol": pd.Series(dtype=str), "trade_date": pd.Series(dtype=object)})
    return pd.concat(removed, ignore_index=True)


def _count_released(previously: pd.DataFrame, failed: pd.DataFrame) -> int:
    if previously.empty:
        return 0
    again = pd.MultiIndex.from_frame(previously[KEY_COLUMNS]).isin(pd.MultiIndex.from_frame(failed[KEY_COLUMNS]))
    return int((~again).sum())


def quarantine_counts(lake: Lake) -> dict[str, int]:
    """Quarantined rows per symbol (for ``kline status``); reads only the symbol column and
    never imports Great Expectations."""
    counts: Counter[str] = Counter()
    for _, path in _quarantine_files(lake):
        counts.update(lake.read_table(path, columns=["symbol"]).to_pandas()["symbol"].dropna().astype(str))
    return dict(sorted(counts.items()))


# -- results and rendering -----------------------------------------------------------------


def read_validation_result(lake: Lake, run_id: str) -> dict[str, Any]:
    """The result document a validation run wrote."""
    return json.loads(lake.read_text(lake.paths.validation_result(run_id)))


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """Markdown for the run summary artifact: totals, excluded symbols, per-symbol table."""
    lines = [
        f"# Validation {summary['run_id']}",
        "",
        f"Chunk `{summary['source']}` {summary['start']} .. {summary['end']}, run date "
        f"{summary['run_date']}: **{summary['rows_checked']}** rows checked, "
        f"**{summary['rows_passed']}** passed, **{summary['rows_quarantined']}** quarantined"
        f" ({summary.get('released_from_quarantine', 0)} released from quarantine).",
        "",
    ]
    if summary.get("excluded_symbols"):
        lines += [f"**Left out of downstream stages** (run-date bar quarantined): "
                  f"{', '.join(summary['excluded_symbols'])}", ""]
    if summary.get("no_bar_on_run_date"):
        lines += [f"No bar on the run date (suspended or not yet delivered): "
                  f"{', '.join(summary['no_bar_on_run_date'])}", ""]
    if summary.get("limit_facts") is not None:
        lines += [f"Price limits: {describe_limit_sources(summary['limit_facts'])}.", ""]
    if summary.get("failed_expectations"):
        lines += [f"Failed critical expectations: {', '.join(summary['failed_expectations'])}", ""]
    lines += ["| symbol | checked | passed | quarantined | warnings | sessions without bar |",
              "|---|---:|---:|---:|---|---:|"]
    for s, r in summary["by_symbol"].items():
        w = ", ".join(f"{k} {v}" for k, v in r["warnings"].items()) or "-"
        lines.append(f"| {s} | {r['checked']} | {r['passed']} | {r['quarantined']} | {w} | "
                     f"{r['sessions_without_bar']} |")
    return "\n".join(lines) + "\n"


def failure_table(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for the failed-expectations table artifact, all with the same columns: one per
    example row of each failed rule (a rule without row examples gets one row with detail)."""
    cols = ["symbol", "trade_date", "open", "high", "low", "close", "pre_close", "volume"]
    out = []
    for e in result.get("expectations", []):
        if e["success"]:
            continue
        base = {"expectation": e["rule"], "severity": e["severity"], "failed_rows": e["unexpected_count"]}
        detail = e.get("exception") or ("" if e["examples"] else json.dumps(e.get("observed"), default=str))
        for ex in e["examples"] or [{}]:
            out.append({**base, **{k: ex.get(k) for k in cols}, "detail": detail})
    return out
