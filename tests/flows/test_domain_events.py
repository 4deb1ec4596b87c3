"""Domain events from a real daily run under the session's Prefect test server: quarantined
rows above the alert threshold are flagged for the quarantine automation, below it they are
only reported; events carry the lake and the symbols as related resources."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pandas as pd
import pytest
from helpers_pipeline import fast_config
from helpers_validation import MAIN_BOARD, OTHER, corrupted_import

import kline.providers as providers
from flows.daily import daily_flow
from kline.providers.synthetic import SyntheticProvider
from tasks.events import lake_id

pytestmark = pytest.mark.usefixtures("prefect_harness")


class CorruptFebruary:
    """Synthetic bars with a corrupted February (duplicates, high < low, a NaN close, ...)."""

    name = "corrupt-feb"

    def fetch(self, symbols, start, end):
        clean = SyntheticProvider().fetch(symbols, start, end)
        feb = clean[(clean["trade_date"] >= dt.date(2024, 2, 1)) & (clean["trade_date"] <= dt.date(2024, 2, 29))]
        if feb.empty:
            return clean
        broken = corrupted_import(feb.reset_index(drop=True))
        return pd.concat([clean.drop(feb.index), broken.frame], ignore_index=True)


def quarantine_events(lake_root: str, timeout: float = 30) -> list[dict]:
    """This lake's ``kline.data.quarantined`` events, read back through the API."""
    from prefect.settings import get_current_settings

    url = str(get_current_settings().api.url)
    body = {"filter": {"event": {"name": ["kline.data.quarantined"]},
                       "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
    deadline = time.monotonic() + timeout
    while True:  # events reach the server asynchronously
        r = httpx.post(f"{url}/events/filter", json=body, timeout=10)
        r.raise_for_status()
        mine = [e for e in r.json()["events"] if e["resource"].get("kline.lake") == lake_id(lake_root)]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.5)


@pytest.mark.parametrize(("threshold", "severity"), [(1, "alert"), (10_000, "info")])
def test_quarantined_rows_emit_an_event_flagged_by_the_threshold(tmp_path, monkeypatch, threshold, severity):
    monkeypatch.setitem(providers.PROVIDERS, "corrupt-feb", lambda settings: CorruptFebruary())
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config((MAIN_BOARD, OTHER), "corrupt-feb") + f"[alerts]\nquarantine_rows = {threshold}\n")
    lake_root = str(tmp_path / "lake")
    state = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=str(cfg), return_state=True)
    assert state.is_completed(), state.message
    (event,) = quarantine_events(lake_root)
    assert event["resource"]["kline.severity"] == severity
    assert event["payload"]["rows"] >= 6 and event["payload"]["threshold"] == threshold
    assert {"high_ge_low", "unique_symbol_trade_date", "not_null_close"} <= set(event["payload"]["failed_expectations"])
    assert event["payload"]["rows_checked"] > event["payload"]["rows"]
    related = {(r["prefect.resource.role"], r.get("prefect.resource.name")) for r in event["related"]}
    assert {("lake", lake_root), ("symbol", MAIN_BOARD), ("symbol", OTHER)} <= related
    assert any(role == "flow-run" for role, _ in related)
