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


def _keys(lake: Lake) -> pa.Table:
    """(symbol, trade_date) of every curated row, of raw while nothing is curated yet (raw may
    repeat a key: deduplicated), rows with a null key left out."""
    # the symbol column as Parquet stores it, dictionary-encoded: not 10 M Python-sized strings
    tables = [pq.read_table(lake._strip(lake.paths.curated_bars(y)), filesystem=lake.fs,
                            columns=["symbol", "trade_date"], read_dictionary=["symbol"])
              for y in lake.curated_years()]
    t = pa.concat_tables(tables).unify_dictionaries() if tables else None
    raw = t is None or t.num_rows == 0
    if raw:
        tables = lake.raw.table.read(columns=["symbol", "trade_date"])
        if not tables:
            return pa.table({"symbol": pa.array([], pa.string()), "trade_date": pa.array([], pa.date32())})
        t = pa.concat_tables(tables)
    t = t.filter(pc.and_(pc.is_valid(t.column("symbol")), pc.is_valid(t.column("trade_date"))))
    return t.group_by(["symbol", "trade_date"]).aggregate([]) if raw else t


def lake_status(lake: Lake, settings: Settings) -> list[dict]:
    """Per symbol: first/last date and rows of validated bars, sessions missing between them
    against its calendar, quarantined rows and the last ingestion time (UTC ISO)."""
    # one pass over the key columns (curated keys are unique), no Python loop over rows
    keys = _keys(lake)
    sym = keys.column("symbol")
    enc = (sym if pa.types.is_dictionary(sym.type) else pc.dictionary_encode(sym)).combine_chunks()
    names = np.array(enc.dictionary.to_pylist(), dtype=object)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    days = keys.column("trade_date").combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    n = len(names)
    count = np.bincount(codes, minlength=n)
    first = np.full(n, np.iinfo(np.int32).max, np.int32)
    last = np.full(n, np.iinfo(np.int32).min, np.int32)
    np.minimum.at(first, codes, days)
    np.maximum.at(last, codes, days)
    missing: list[int | None] = [None] * n
    by_calendar: dict[str, list[int]] = {}
    for i, sym in enumerate(names):
        try:
            by_calendar.setdefault(instrument_for(sym, settings).calendar, []).append(i)
        except SymbolError:  # a foreign symbol without a calendar: missing stays None
            pass
    for cal, members in by_calendar.items():
        idx = np.array(members)
        lo, hi = (to_date(np.datetime64(int(first[idx].min()), "D")), to_date(np.datetime64(int(last[idx].max()), "D")))
        sess = sessions_array(lo, hi, cal).astype("datetime64[D]").astype(np.int32)
        member = np.zeros(n, bool)
        member[idx] = True
        mine = member[codes]
        d = days[mine] if len(idx) < n else days
        pos = np.searchsorted(sess, d)
        hit = (pos < len(sess)) & (sess[np.minimum(pos, len(sess) - 1)] == d)
        present = np.bincount((codes[mine] if len(idx) < n else codes)[hit], minlength=n)
        expected = np.searchsorted(sess, last[idx], "right") - np.searchsorted(sess, first[idx], "left")
        for i, e in zip(members, expected - present[idx], strict=True):
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
