"""Forecast stage: the champion's next-session prediction for every symbol of the run."""

from __future__ import annotations

import datetime as dt

from prefect import task

from kline.calendar import A_SHARE_CALENDAR, calendar_info, is_provisional
from kline.features import load_panel
from kline.lake import Lake
from kline.registry import forecast_next_session
from tasks._common import STAGE_CACHE


@task(name="forecast", task_run_name="forecast-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def forecast(lake_root: str, run_date: str, symbols: list[str], features_path: str, decision: dict,
             candidate_version: str | None) -> dict:
    """Predict the session after ``run_date`` (ISO) with the champion as of then (or this
    run's candidate), write ``reports/<run_date>/forecast.csv``; ``decision`` (the promote
    stage's) keys the cache, since promotion may change the champion. Returns the path,
    the version used and the rows as plain records (one per symbol)."""
    lake = Lake(lake_root)
    day = dt.date.fromisoformat(run_date)
    panel = load_panel(lake, features_path)
    panel = panel[panel["symbol"].isin(symbols)]
    frame, used = forecast_next_session(lake, panel, day, candidate_version)
    # a target session past the published calendar is an assumption: say so on every row
    frame["provisional"] = [is_provisional(d, A_SHARE_CALENDAR) for d in frame["target_date"]]
    path = lake.paths.forecast(day)
    lake.atomic_write_text(path, frame.to_csv(index=False))
    rows = [{"symbol": r.symbol, "target_date": str(r.target_date), "pred_return": float(r.pred_return),
             "close": float(r.close), "pred_close": float(r.pred_close), "provisional": bool(r.provisional)}
            for r in frame.itertuples()]
    provisional = is_provisional(day, A_SHARE_CALENDAR) or any(r["provisional"] for r in rows)
    return {"path": path, **used, "rows": rows, "provisional": provisional,
            "calendar": calendar_info(A_SHARE_CALENDAR)}
