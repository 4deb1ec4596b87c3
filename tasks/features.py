"""Features stage: curated bars (point in time) -> the feature panel in the lake."""

from __future__ import annotations

import datetime as dt
import hashlib

from prefect import task

from kline.calendar import A_SHARE_CALENDAR
from kline.calendar import fingerprint as calendar_fingerprint
from kline.features import build_features, feature_fingerprint, save_panel
from kline.lake import Lake, content_hash
from tasks._common import STAGE_CACHE, settings_from


@task(name="features", task_run_name="features-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def build_features_task(
    lake_root: str, settings: dict, run_date: str, symbols: list[str], upstream: str = ""
) -> dict:
    """Build the panel from curated bars and adj factors dated ``<= run_date`` for ``symbols``.

    ``settings`` is the features stage sub-dict; ``upstream`` is the validate stage's
    fingerprint (it only keys the cache). Returns ``{path, fingerprint, data_fingerprint,
    rows, symbols, start, end}``.
    """
    lake = Lake(lake_root)
    cfg = settings_from(settings).features
    end = dt.date.fromisoformat(run_date)
    bars = lake.read_curated_bars(symbols, end=end)
    if bars.empty:
        raise ValueError(f"no curated bars for {len(symbols)} symbol(s) up to {run_date}")
    adj = lake.read_adj_factor(symbols, end=end)
    panel = build_features(bars, cfg, adj)
    data_fp = content_hash(bars, ["symbol", "trade_date", "open", "high", "low", "close", "volume"])
    adj_fp = content_hash(adj) if not adj.empty else "none"
    # the calendar names each row's target session (the last row's may be provisional)
    cal_fp = calendar_fingerprint(A_SHARE_CALENDAR, end)
    fp = hashlib.sha256(f"{feature_fingerprint(cfg)}|{data_fp}|{adj_fp}|{cal_fp}".encode()).hexdigest()[:16]
    path = save_panel(lake, panel, fp)
    return {
        "path": path,
        "fingerprint": fp,
        "data_fingerprint": f"{data_fp}-{adj_fp[:8]}",
        "rows": len(panel),
        "symbols": sorted(set(panel["symbol"])),
        "start": min(panel["trade_date"]).isoformat(),
        "end": max(panel["trade_date"]).isoformat(),
    }
