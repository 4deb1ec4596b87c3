"""What the lake holds, per symbol (``kline status``). Reads the key columns of the curated
layer (of raw while nothing is curated yet), the ingestion log and the quarantine index;
never imports Prefect or GX."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kline.calendar import sessions_array, to_date
from kline.config import Settings
from kline.instruments import SymbolError
from kline.lake import Lake
from kline.validation import instrument_for, quarantine_counts


def _key_tables(lake: Lake) -> list[pa.Table]:
    """(symbol, trade_date) of the curated rows, one table per year file; of raw while nothing
    is curated yet (raw may repeat a key: deduplicated). Rows with a null key left out."""
    # the symbol column as Parquet stores it, dictionary-encoded: not 10 M Python-sized strings
    tables = [pq.read_table(lake._strip(lake.paths.curated_bars(y)), filesystem=lake.fs,
                            columns=["symbol", "trade_date"], read_dictionary=["symbol"])
              for y in lake.curated_years()]
    raw = not any(t.num_rows for t in tables)
    if raw:
        found = lake.raw.table.read(columns=["symbol", "trade_date"])
        tables = [pa.concat_tables(found).group_by(["symbol", "trade_date"]).aggregate([])] if found else []
    return [t.filter(pc.and_(pc.is_valid(t.column("symbol")), pc.is_valid(t.column("trade_date"))))
            for t in tables]


def _codes(tables: list[pa.Table]) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """Symbol names and, per table, (symbol index, trade date as days since 1970) as int32."""
    ids: dict[str, int] = {}
    parts = []
    for t in tables:
        sym = t.column("symbol")
        for chunk, day in zip(sym.chunks, t.column("trade_date").chunks, strict=True):
            enc = chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk)
            to_id = np.array([ids.setdefault(x, len(ids)) for x in enc.dictionary.to_pylist()], np.int32)
            parts.append((to_id[enc.indices.to_numpy(zero_copy_only=False)],
                          day.cast(pa.int32()).to_numpy(zero_copy_only=False)))
    return list(ids), parts


def lake_status(lake: Lake, settings: Settings) -> list[dict]:
    """Per symbol: first/last date and rows of validated bars, sessions missing between them
    against its calendar, quarantined rows and the last ingestion time (UTC ISO)."""
    # vectorised over the key columns a year file at a time (curated keys are unique), with one
    # session lookup per calendar, no Python loop over rows
    names, parts = _codes(_key_tables(lake))
    n = len(names)
    count = np.zeros(n, np.int64)
    first = np.full(n, np.iinfo(np.int32).max, np.int32)
    last = np.full(n, np.iinfo(np.int32).min, np.int32)
    for codes, days in parts:
        count += np.bincount(codes, minlength=n)
        np.minimum.at(first, codes, days)
        np.maximum.at(last, codes, days)
    missing: list[int | None] = [None] * n
    calendar_of = np.full(n, -1, np.int32)
    calendars: dict[str, int] = {}
    for i, sym in enumerate(names):
        try:
            calendar_of[i] = calendars.setdefault(instrument_for(sym, settings).calendar, len(calendars))
        except SymbolError:  # a foreign symbol without a calendar: missing stays None
            pass
    for cal, k in calendars.items():
        idx = np.flatnonzero(calendar_of == k)
        lo, hi = to_date(np.datetime64(int(first[idx].min()), "D")), to_date(np.datetime64(int(last[idx].max()), "D"))
        sess = sessions_array(lo, hi, cal).astype("datetime64[D]").astype(np.int32)
        present = np.zeros(n, np.int64)
        for codes, days in parts if len(sess) else []:
            if len(idx) < n:
                mine = calendar_of[codes] == k
                codes, days = codes[mine], days[mine]
            pos = np.minimum(np.searchsorted(sess, days), len(sess) - 1)
            present += np.bincount(codes[sess[pos] == days], minlength=n)
        expected = np.searchsorted(sess, last[idx], "right") - np.searchsorted(sess, first[idx], "left")
        for i, e in zip(idx, expected - present[idx], strict=True):
            missing[i] = int(e)
    quarantined = quarantine_counts(lake)
    last_ingested: dict[str, str] = {}
    for e in lake.read_ingest_log():
        for s in e.get("symbols", []):
            last_ingested[s] = max(last_ingested.get(s, ""), e["fetched_at"])
    iso = lambda d: np.datetime_as_string(d.astype("datetime64[D]"), unit="D")  # noqa: E731
    firsts, lasts = iso(first), iso(last)
    rows = [{"symbol": sym, "first": str(firsts[i]), "last": str(lasts[i]), "rows": int(count[i]),
             "missing": missing[i], "quarantined": int(quarantined.get(sym, 0)),
             "last_ingested": last_ingested.get(sym, "")[:19]}
            for i, sym in sorted(enumerate(names), key=lambda x: x[1])]
    seen = {r["symbol"] for r in rows}  # the others have quarantined rows only
    rows += [{"symbol": sym, "first": "", "last": "", "rows": 0, "missing": None, "quarantined": n,
              "last_ingested": ""} for sym, n in quarantined.items() if sym not in seen]
    return rows


def calendar_lines(infos: list[dict]) -> list[str]:
    """One line per calendar (``kline.calendar.calendar_info``) for the terminal."""
    out = []
    for i in infos:
        layers = "; ".join(f"{x['source']} through {x['through']}" for x in i["layers"])
        line = f"calendar {i['calendar']}: known through {i['known_through']} ({layers}); provisional from {i['provisional_from']}"
        if i["provisional_closures"]:
            line += f"; no bars, treated as closed: {', '.join(i['provisional_closures'])}"
        out.append(line)
        out.extend(f"  note: {d}" for d in i["disagreements"])
    return out
