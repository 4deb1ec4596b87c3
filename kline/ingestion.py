"""Ingestion planning and execution (domain side; the Prefect task is a thin shell).

``plan_ingest`` decides which (symbols, date range) chunks a run must fetch;
``ingest_range`` fetches one chunk through a provider and writes it to the raw layer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from kline.config import Settings
from kline.lake import Lake, content_hash
from kline.providers.base import AdjFactorProvider, InstrumentFactsProvider, Provider
from kline.schema import to_canonical


@dataclass(frozen=True)
class Chunk:
    """Symbols to fetch over ``[start, end]`` (inclusive calendar dates)."""

    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def source_fingerprint(settings: Settings) -> str:
    """For file imports, a hash of the source files' names, sizes and modification times, so a
    fixed vendor file is fetched (and validated) again instead of answered from the cache;
    empty for API providers, whose answers a re-run cannot see change."""
    if settings.provider != "file" or not settings.file.source:
        return ""
    import fsspec

    fs, root = fsspec.core.url_to_fs(settings.file.source)
    if not fs.exists(root):
        return ""
    infos = [fs.info(root)] if fs.isfile(root) else [i for i in fs.ls(root, detail=True) if i["type"] == "file"]
    blob = json.dumps(sorted((i["name"], i.get("size"), str(i.get("mtime", i.get("LastModified", ""))))
                             for i in infos))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def month_chunks(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """Split ``[start, end]`` at calendar-month boundaries (first chunk may be partial)."""
    if start > end:
        return []
    out = []
    cur = start
    while cur <= end:
        nxt = dt.date(cur.year + (cur.month == 12), cur.month % 12 + 1, 1)
        out.append((cur, min(end, nxt - dt.timedelta(days=1))))
        cur = nxt
    return out


def row_chunks(
    start: dt.date, end: dt.date, sessions: Sequence[dt.date], symbols: int, target_rows: int
) -> list[tuple[dt.date, dt.date]]:
    """Split ``[start, end]`` into contiguous, gap-free calendar spans each holding about
    ``target_rows`` bars: ``target_rows // symbols`` of ``sessions`` (at least one). The first
    span starts at ``start``, the last ends at ``end``; no sessions in range: one span."""
    if start > end:
        return []
    days = [d for d in sessions if start <= d <= end]
    per = max(1, target_rows // max(1, symbols))
    cuts = days[per - 1::per]  # the last session of each full span
    out, cur = [], start
    for last in cuts:
        if last == days[-1]:  # the rest of the range holds no session: it joins this span
            break
        out.append((cur, last))
        cur = last + dt.timedelta(days=1)
    out.append((cur, end))
    return out


def symbol_batches(symbols: Sequence[str], size: int) -> list[list[str]]:
    """``symbols`` in order, cut into consecutive batches of at most ``size`` (0: one batch)."""
    syms = list(symbols)
    if not syms:
        return []
    size = len(syms) if size <= 0 else size
    return [syms[i:i + size] for i in range(0, len(syms), size)]


def history_start(run_date: dt.date, years: int) -> dt.date:
    """The first date of a ``years``-long history ending at ``run_date``."""
    try:
        return run_date.replace(year=run_date.year - years) + dt.timedelta(days=1)
    except ValueError:  # 29 February
        return run_date.replace(year=run_date.year - years, day=28) + dt.timedelta(days=1)


PUBLISH_LAG_DAYS = 7  # calendar days within which a missing latest bar may still be published


def covered_through(log: list[dict], symbols: Sequence[str], source: str, run_date: dt.date) -> dict[str, dt.date | None]:
    """Per symbol, the last date before ``run_date`` that runs *as of an earlier date* fetched
    from ``source`` (None: never). Entries written by runs as of ``run_date`` or later are
    ignored, so re-running a date plans the same chunks (and hits the same caches)."""
    out: dict[str, dt.date | None] = {s: None for s in symbols}
    last_day = run_date - dt.timedelta(days=1)
    for e in log:
        if e.get("source") != source or dt.date.fromisoformat(e.get("as_of", e["end"])) >= run_date:
            continue
        start, end = dt.date.fromisoformat(e["start"]), min(dt.date.fromisoformat(e["end"]), last_day)
        if start > end:
            continue
        last_rows = e.get("last_rows")
        for s in e.get("symbols", []):
            if s not in out:
                continue
            cover = end
            if last_rows is not None:
                # A symbol's latest days may simply not be published yet (one API updated,
                # another not): within the lag, cover only through its last row, so the next
                # run asks again. Older gaps are suspensions or delistings, and covered.
                last = dt.date.fromisoformat(last_rows[s]) if s in last_rows else None
                if last is None and (end - start).days < PUBLISH_LAG_DAYS:
                    continue
                if last is not None and (end - last).days <= PUBLISH_LAG_DAYS:
                    cover = min(end, last)
            if out[s] is None or cover > out[s]:
                out[s] = cover
    return out


def _coverage(lake: Lake, symbols: Sequence[str], source: str, run_date: dt.date) -> dict[str, dt.date | None]:
    """``covered_through`` reading log months newest first, stopping once older months cannot
    matter: an entry's end never exceeds its as-of date, so a month older than every symbol's
    coverage adds nothing."""
    months = [m for m in lake.ingest_log.months() if m <= run_date.isoformat()[:7]]
    cover: dict[str, dt.date | None] = {s: None for s in symbols}
    for m in reversed(months):
        found = covered_through(lake.read_ingest_log([m]), symbols, source, run_date)
        for s, d in found.items():
            if d is not None and (cover[s] is None or d > cover[s]):
                cover[s] = d
        month_start = dt.date.fromisoformat(f"{m}-01")
        if all(d is not None and d >= month_start for d in cover.values()):
            break
    return cover


def plan_ingest(lake: Lake, settings: Settings, run_date: dt.date, by_month: bool = False) -> list[Chunk]:
    """Chunks that bring every symbol up to ``run_date``: from the day after what earlier runs
    fetched (catching up missed days), or the configured history when nothing was.
    Symbols sharing a start date are fetched together: one chunk per group (a daily run's
    catch-up stays one task run), or one per calendar month with ``by_month``."""
    last = _coverage(lake, settings.symbols, settings.provider, run_date)
    by_start: dict[dt.date, list[str]] = {}
    for sym in settings.symbols:
        done = last[sym]
        start = history_start(run_date, settings.ingest.history_years) if done is None else done + dt.timedelta(days=1)
        if start <= run_date:
            by_start.setdefault(start, []).append(sym)
    chunks = []
    for start, syms in sorted(by_start.items()):
        for a, b in month_chunks(start, run_date) if by_month else [(start, run_date)]:
            chunks.append(Chunk(tuple(syms), a, b))
    return chunks


def ingest_range(
    provider: Provider,
    lake: Lake,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    as_of: dt.date | None = None,
    layout: str = "day",
) -> dict:
    """Fetch ``symbols`` over ``[start, end]``, merge into the raw layer, log it.

    ``as_of`` is the run date of the run that asked (default ``end``), kept in the log for
    planning. ``layout``: ``"day"`` files (daily runs) or ``"month"`` files (backfills) for
    the bars, adjustment factors and limit prices (``kline.lake.partitions``).
    Returns a small reference: source, range, partitions, row count, content hash.
    """
    t0 = time.perf_counter()
    # fetch everything before writing anything: a failed call retries the chunk from scratch
    bars = to_canonical(provider.fetch(list(symbols), start, end), provider.name)
    factors = provider.fetch_adj_factor(list(symbols), start, end) if isinstance(provider, AdjFactorProvider) else None
    facts = (provider.fetch_instrument_facts(list(symbols), start, end)
             if isinstance(provider, InstrumentFactsProvider) else None)
    written = lake.write_raw_bars(bars, provider.name, symbols=symbols, start=start, end=end, layout=layout)
    adj_rows = (lake.reference.write_adj_factor(factors, provider.name, layout).rows
                if factors is not None else 0)
    facts_rows: dict[str, int] = {}
    if facts is not None:
        facts_rows["stk_limit"] = lake.reference.write_stk_limit(facts.stk_limit, provider.name, layout).rows
        # an empty table is a fact not fetched (disabled, not permitted, no side file): keep
        # what is stored rather than replace it with nothing
        for table in ("listings", "st_periods"):
            rows = getattr(facts, table)
            if len(rows):
                facts_rows[table] = lake.reference.write(table, rows, provider.name, symbols)
    report = getattr(provider, "last_fetch_report", None)
    entry = {
        "source": provider.name,
        "symbols": list(symbols),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "as_of": (as_of or end).isoformat(),
        "rows": written.rows,
        "adj_factor_rows": adj_rows,
        "facts_rows": facts_rows,
        "partitions": len(written.partitions),
        "content_hash": written.content_hash,
        "last_rows": {str(k): v.isoformat() for k, v in bars.groupby("symbol")["trade_date"].max().items()}
        if not bars.empty else {},
        "fetched_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    lake.ingest_log.append(entry)
    per_symbol = bars.groupby("symbol").size().to_dict() if not bars.empty else {}
    return {
        "source": provider.name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "symbols": list(symbols),
        "rows": written.rows,
        "rows_by_symbol": {k: int(v) for k, v in per_symbol.items()},
        "facts_rows": facts_rows,
        "provider_notes": _notes(report),
        "partitions": written.partitions,
        "content_hash": written.content_hash,
    }


def _notes(report: object) -> dict:
    """Per-symbol row-level notes of a file import (dropped, collapsed, quarantine-bound
    rows), for the run summary; empty for providers without them."""
    if not isinstance(report, dict):
        return {}
    keys = ("dropped_null_rows_off_session", "duplicate_rows_collapsed", "duplicate_dates",
            "rows_without_close", "first_row_without_pre_close")
    return {str(s): {k: r[k] for k in keys if r.get(k)} for s, r in report.items()
            if isinstance(r, dict) and any(r.get(k) for k in keys)}


__all__ = ["Chunk", "history_start", "ingest_range", "month_chunks", "plan_ingest", "row_chunks", "symbol_batches",
           "content_hash"]
