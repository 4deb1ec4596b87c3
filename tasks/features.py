"""Features stage: curated bars (point in time) -> the feature panel in the lake.

The panel is built per coarse symbol batch (``build_features_task``, one task run per batch
of ``run.batch_symbols``, fanned out on the run's task runner) and the batches are
concatenated into one panel (``combine_features_task``). Every feature but the
cross-sectional ``rank_*`` reads one symbol's own bars (and the market index's), so a batched
panel equals the one built over the whole universe at once; with a ``rank_*`` feature the
universe is one batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from kline.calendar import A_SHARE_CALENDAR
from kline.calendar import fingerprint as calendar_fingerprint
from kline.config import FeatureConfig
from kline.features import MARKET_INDEX, build_features, feature_fingerprint, save_panel
from kline.ingestion import symbol_batches
from kline.lake import Lake, content_hash
from tasks._common import STAGE_CACHE, settings_from, use_layers


def feature_batches(symbols: list[str], cfg: FeatureConfig, batch_symbols: int) -> list[tuple[list[str], list[str]]]:
    """``(batch, context)`` per features task run: the symbols whose rows a run builds, and
    the ones it also reads but leaves out of its rows (the market index for
    ``market_return``). One batch when a feature is cross-sectional (``rank_*``)."""
    names = list(cfg.features)
    if any(n.startswith("rank_") for n in names):
        return [(list(symbols), [])]
    market = [MARKET_INDEX] if "market_return" in names and MARKET_INDEX in symbols else []
    return [(batch, [m for m in market if m not in batch]) for batch in symbol_batches(list(symbols), batch_symbols)]


@task(name="features", task_run_name="features-{run_date}", cache_policy=(INPUTS - "calendars") + TASK_SOURCE,
      persist_result=True)
def build_features_task(
    lake_root: str, settings: dict, run_date: str, symbols: list[str], upstream: str = "",
    context_symbols: list[str] | None = None, calendars: dict | None = None,
) -> dict:
    """Build the panel of ``symbols`` from curated bars and adj factors dated ``<= run_date``;
    ``context_symbols`` are read too (the market index of ``market_return``) but their rows
    are left out of the panel.

    ``settings`` is the features stage sub-dict; ``upstream`` is the validate stage's
    fingerprint (it only keys the cache); ``calendars`` (``kline.calendar.layers_snapshot``)
    re-establishes the run's calendar layers where the task runs. Returns ``{path,
    fingerprint, data_fingerprint, rows, symbols, start, end}``.
    """
    use_layers(calendars)
    lake = Lake(lake_root)
    cfg = settings_from(settings).features
    end = dt.date.fromisoformat(run_date)
    context = [s for s in (context_symbols or []) if s not in symbols]
    read = [*symbols, *context]
    bars = lake.read_curated_bars(read, end=end)
    if bars.empty:
        raise ValueError(f"no curated bars for {len(symbols)} symbol(s) up to {run_date}")
    adj = lake.read_adj_factor(read, end=end)
    panel = build_features(bars, cfg, adj)
    if context:
        panel = panel[~panel["symbol"].isin(context)].reset_index(drop=True)
    data_fp = content_hash(bars, ["symbol", "trade_date", "open", "high", "low", "close", "volume"])
    adj_fp = content_hash(adj) if not adj.empty else "none"
    # the calendar names each row's target session (the last row's may be provisional)
    cal_fp = calendar_fingerprint(A_SHARE_CALENDAR, end)
    fp = hashlib.sha256(f"{feature_fingerprint(cfg)}|{data_fp}|{adj_fp}|{cal_fp}".encode()).hexdigest()[:16]
    path = save_panel(lake, panel, fp)
    return _ref(path, fp, f"{data_fp}-{adj_fp[:8]}", panel)


def _ref(path: str, fp: str, data_fp: str, panel: pd.DataFrame) -> dict:
    return {
        "path": path,
        "fingerprint": fp,
        "data_fingerprint": data_fp,
        "rows": len(panel),
        "symbols": sorted(set(panel["symbol"])),
        "start": min(panel["trade_date"]).isoformat(),
        "end": max(panel["trade_date"]).isoformat(),
    }


@task(name="features-combine", task_run_name="features-combine-{run_date}", cache_policy=STAGE_CACHE,
      persist_result=True)
def combine_features_task(lake_root: str, settings: dict, run_date: str, parts: list[dict]) -> dict:
    """One panel from the batch panels ``parts`` (``build_features_task`` references, in
    batch order), sorted by (symbol, trade_date) as a panel built at once; its fingerprints
    hash the parts' in order. Returns the same reference as ``build_features_task``."""
    if len(parts) == 1:
        return parts[0]
    lake = Lake(lake_root)
    cfg = settings_from(settings).features
    panel = pd.concat([lake.read_table(p["path"]).to_pandas() for p in parts], ignore_index=True)
    panel = panel.sort_values(["symbol", "trade_date"], kind="stable").reset_index(drop=True)
    fp = hashlib.sha256("|".join([feature_fingerprint(cfg), *(p["fingerprint"] for p in parts)]).encode()
                        ).hexdigest()[:16]
    data_fp = hashlib.sha256("|".join(p["data_fingerprint"] for p in parts).encode()).hexdigest()[:16]
    path = save_panel(lake, panel, fp)
    return _ref(path, fp, data_fp, panel)
