"""The model lifecycle through the daily flow under the session's Prefect test server: a
champion that no longer beats persistence on the sessions it never saw is retired, the
event says so on the feed, and the forecast falls back to persistence, labelled."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from helpers_pipeline import fast_config

from flows.daily import daily_flow
from kline import registry
from kline.lake import Lake
from tasks.events import RETIRED, lake_id

pytestmark = pytest.mark.usefixtures("prefect_harness")


def feed(lake_root: str, name: str, timeout: float = 30) -> list[dict]:
    """This lake's ``name`` events, read back through the API (they arrive asynchronously)."""
    from prefect.settings import get_current_settings

    url = str(get_current_settings().api.url)
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.post(f"{url}/events/filter", json=body, timeout=10)
        r.raise_for_status()
        mine = [e for e in r.json()["events"] if e["resource"].get("kline.lake") == lake_id(lake_root)]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.5)


def test_a_champion_without_skill_on_its_newest_sessions_is_retired(tmp_path, lake_root):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(("000001.SH", "600519.SH")))
    lake = Lake(lake_root)
    first = daily_flow(run_date="2024-01-31", lake=lake_root, config_file=str(cfg))
    assert first["promoted"] is False and registry.get_champion(lake, "lstm") is None
    # made champion by hand (no evidence would have made it): the next run must re-judge it
    old = first["model_version"]
    registry.set_champion(lake, "lstm", old, {"rule": "set by hand for the test"})

    out = daily_flow(run_date="2024-03-15", lake=lake_root, config_file=str(cfg))
    (path,) = Path(lake_root, "backtests").glob("2024-03-15-*/decision.json")
    decision = json.loads(path.read_text())
    verdict = decision["verdict"]
    assert verdict["sessions"] >= 20 and verdict["retire"] is True, verdict
    assert verdict["champion_value"] >= verdict["persistence_value"]
    assert registry.get_champion(lake, "lstm") is None
    assert json.loads(lake.read_text(lake.paths.champion("lstm")))["retired"] == old

    (event,) = feed(lake_root, RETIRED)
    assert event["resource"]["prefect.resource.id"] == f"kline.model.lstm.{old}"
    assert event["resource"]["kline.severity"] == "alert"
    assert event["payload"]["run_date"] == "2024-03-15" and "no longer beats persistence" in event["payload"]["reason"]

    fc = pd.read_csv(Path(lake_root) / "reports" / "2024-03-15" / "forecast.csv")
    assert set(fc["model"]) == {"persistence"} and (fc["pred_close"] == fc["close"]).all()
    assert f"champion {old} was retired" in out["summary"]
    assert "the next-session forecast is persistence" in out["summary"]
    # the new production model carries the walk-forward evidence that judged it
    card = registry.read_card(lake, "lstm", out["model_version"])
    assert card["train_end"] == "2024-03-15" and card["evidence"]["run_date"] == "2024-03-15"
    assert card["evidence"]["metrics"]["n"] > 0 and card["evidence"]["promote"] is False
