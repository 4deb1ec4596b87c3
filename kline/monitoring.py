"""Health checks on what the pipeline produced, for alerts: model decay and alert settings.

No Prefect here: the tasks decide from these verdicts which domain events to emit.
"""

from __future__ import annotations

import math
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from kline.config import AlertsConfig, ConfigError
from kline.metrics import mase


def rolling_mase(predictions: pd.DataFrame, model: str, sessions: int) -> tuple[float, int, str | None]:
    """MASE of ``model``'s walk-forward predictions over its last ``sessions`` scored
    sessions (every symbol's rows on those dates), with the sessions counted and the last
    one (ISO). ``predictions`` has ``model``, ``trade_date``, ``pred_return``, ``realised``."""
    p = predictions[(predictions["model"] == model)
                    & np.isfinite(predictions["realised"].to_numpy("float64"))
                    & np.isfinite(predictions["pred_return"].to_numpy("float64"))]
    if p.empty:
        return math.nan, 0, None
    dates = sorted(pd.to_datetime(p["trade_date"]).dt.date.unique())[-sessions:]
    recent = p[pd.to_datetime(p["trade_date"]).dt.date.isin(dates)]
    return mase(recent["realised"].to_numpy(), recent["pred_return"].to_numpy()), len(dates), dates[-1].isoformat()


def decay_verdict(predictions: pd.DataFrame, model: str, cfg: AlertsConfig) -> dict:
    """``{"decayed", "mase", "threshold", "sessions", "last_session"}``: decayed when the
    rolling MASE over ``cfg.decay_sessions`` is above ``cfg.decay_mase`` (NaN never is)."""
    value, n, last = rolling_mase(predictions, model, cfg.decay_sessions)
    return {"decayed": bool(n and math.isfinite(value) and value > cfg.decay_mase),
            "mase": None if not math.isfinite(value) else round(float(value), 6),
            "threshold": cfg.decay_mase, "sessions": n, "last_session": last, "model": model}


def check_alerts(cfg: AlertsConfig) -> None:
    """Raise ``ConfigError`` naming the first ``[alerts]`` setting that cannot work."""
    for name in ("webhook_url", "slack_webhook_url"):
        url = getattr(cfg, name)
        if url and (urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc):
            raise ConfigError(f"alerts.{name}: not an http(s) URL: {url!r}")
    minimums = {"decay_sessions": (1, ""), "quarantine_rows": (1, ""),
                # Prefect refuses proactive triggers shorter than 10 s
                "late_after_s": (10, " (seconds)"), "running_after_s": (10, " (seconds)"),
                "daily_timeout_s": (0, " (0 = no timeout)"), "backfill_timeout_s": (0, " (0 = no timeout)")}
    for name, (low, unit) in minimums.items():
        if getattr(cfg, name) < low:
            raise ConfigError(f"alerts.{name} must be >= {low}{unit}, got {getattr(cfg, name)}")
