from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kline.config import AlertsConfig, ConfigError
from kline.monitoring import check_alerts, decay_verdict, rolling_mase


def predictions(n_days: int = 100, noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2024-01-01", periods=n_days).date
    rows = []
    for sym in ("A", "B"):
        y = rng.normal(0, 0.01, n_days)
        for d, r in zip(days, y, strict=True):
            rows.append({"model": "lstm", "symbol": sym, "trade_date": d, "pred_return": r + noise * rng.normal(),
                         "realised": r})
            rows.append({"model": "persistence", "symbol": sym, "trade_date": d, "pred_return": 0.0, "realised": r})
    return pd.DataFrame(rows)


def test_rolling_mase_takes_the_last_sessions_only():
    p = predictions(100)
    # make the first 40 sessions terrible: the last 60 must not see them
    early = pd.to_datetime(p["trade_date"]).dt.date < sorted(set(p["trade_date"]))[40]
    p.loc[early & (p["model"] == "lstm"), "pred_return"] = 1.0
    value, n, last = rolling_mase(p, "lstm", 60)
    assert n == 60 and value == pytest.approx(0.0) and last == max(p["trade_date"]).isoformat()
    assert rolling_mase(p, "lstm", 100)[0] > 10
    assert rolling_mase(p, "persistence", 60)[0] == pytest.approx(1.0)


def test_unknown_outcomes_are_not_scored():
    p = predictions(10)
    last = max(p["trade_date"])
    p.loc[p["trade_date"] == last, "realised"] = float("nan")  # the run date's target is unknown
    value, n, got_last = rolling_mase(p, "lstm", 60)
    assert n == 9 and got_last == (last - dt.timedelta(days=1)).isoformat() and math.isfinite(value)


def test_decay_verdict_against_the_threshold():
    noisy = predictions(80, noise=0.02)
    assert decay_verdict(noisy, "lstm", AlertsConfig())["decayed"] is True
    assert decay_verdict(predictions(80), "lstm", AlertsConfig())["decayed"] is False
    v = decay_verdict(noisy, "missing-model", AlertsConfig())
    assert v["decayed"] is False and v["mase"] is None and v["sessions"] == 0


@pytest.mark.parametrize(("field", "value", "words"), [
    ("webhook_url", "hooks.example/x", "alerts.webhook_url"),
    ("slack_webhook_url", "ftp://x/y", "alerts.slack_webhook_url"),
    ("decay_sessions", 0, "alerts.decay_sessions"),
    ("late_after_s", 5, "alerts.late_after_s"),
    ("daily_timeout_s", -1, "alerts.daily_timeout_s"),
])
def test_check_alerts_names_the_bad_setting(field, value, words):
    with pytest.raises(ConfigError, match=words):
        check_alerts(AlertsConfig(**{field: value}))
    check_alerts(AlertsConfig())


def test_monitoring_does_not_import_prefect():
    code = "import sys, kline.monitoring, kline.providers.tushare; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
