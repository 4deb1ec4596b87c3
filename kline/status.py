"""What the lake holds, per symbol (``kline status``). Reads the key columns of the curated
layer (of raw while nothing is curated yet), the ingestion log and the quarantine index;
never imports Prefect or GX."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kline.calendar import sessions_array, to_date
from kline.config import Settings
from kline.instruments import SymbolError
from kline.lake import Lake
from kline.validation import instrument_for, quarantine_counts


def lake_status(lake: Lake, settings: Settings) -> list[dict]:
    """Per symbol: first/last date and rows of validated bars, sessions missing between them
    against its calendar, quarantined rows and the last ingestion time (UTC ISO)."""
    # the curated layer is a few year files; raw is one file per day (read only if no curated yet)
    keys = lake.read_curated_bars(columns=["symbol", "trade_date"])
    if keys.empty:
        keys = lake.read_raw_bars(columns=["symbol", "trade_date"])
    keys = keys.drop_duplicates()
    quarantined = quarantine_counts(lake)
    last_ingested: dict[str, str] = {}
    for e in lake.read_ingest_log():
        for s in e.get("symbols", []):
            last_ingested[s] = max(last_ingested.get(s, ""), e["fetched_at"])
    rows = []
    for sym, g in keys.groupby("symbol", sort=True) if not keys.empty else []:
        dates = np.sort(pd.to_datetime(g["trade_date"]).to_numpy().astype("datetime64[D]"))
        first, last = to_date(dates[0]), to_date(dates[-1])
        try:
            expected = sessions_array(first, last, instrument_for(sym, settings).calendar)
            missing = int(len(np.setdiff1d(expected, dates)))
        except SymbolError:  # a foreign symbol without a calendar
            missing = None
        rows.append({"symbol": sym, "first": first.isoformat(), "last": last.isoformat(), "rows": int(len(dates)),
                     "missing": missing, "quarantined": int(quarantined.get(sym, 0)),
                     "last_ingested": last_ingested.get(sym, "")[:19]})
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
