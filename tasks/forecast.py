"""Forecast stage: the next-session prediction for every symbol of the run, by the champion
or, with none, by persistence, with an interval from the walk-forward residuals."""

from __future__ import annotations

import datetime as dt

from prefect import task

from kline.backtest import residual_quantiles, with_interval
from kline.calendar import A_SHARE_CALENDAR, calendar_info, is_provisional
from kline.features import load_panel
from kline.lake import Lake
from kline.registry import forecast_next_session
from tasks._common import STAGE_CACHE


@task(name="forecast", task_run_name="forecast-{run_date}", cache_policy=STAGE_CACHE, persist_result=True)
def forecast(lake_root: str, run_date: str, symbols: list[str], features_path: str, decision: dict,
             backtest_ref: dict | None = None, interval: list[float] | None = None) -> dict:
    """Predict the session after ``run_date`` (ISO) with the champion as of then, or with
    persistence when there is none (labelled so), and write ``reports/<run_date>/forecast.csv``.
    Given ``backtest_ref``, each row carries the ``interval`` quantiles (default 10th-90th
    percentile) of the forecasting model's walk-forward residuals for its symbol.
    ``decision`` (the promote stage's) keys the cache, since promotion may change the
    champion. Returns the path, the model, version and basis used, and the rows."""
    lake = Lake(lake_root)
    day = dt.date.fromisoformat(run_date)
    levels = (float(interval[0]), float(interval[1])) if interval else (0.1, 0.9)
    panel = load_panel(lake, features_path)
    panel = panel[panel["symbol"].isin(symbols)]
    frame, used = forecast_next_session(lake, panel, day)
    quantiles = {}
    if backtest_ref:
        predictions = lake.read_table(backtest_ref["predictions"]).to_pandas()
        quantiles = residual_quantiles(predictions, used["model"], levels)
    frame = with_interval(frame, quantiles, levels)
    # a target session past the published calendar is an assumption: say so on every row
    frame["provisional"] = [is_provisional(d, A_SHARE_CALENDAR) for d in frame["target_date"]]
    path = lake.paths.forecast(day)
    lake.atomic_write_text(path, frame.to_csv(index=False))
    rows = [{"symbol": r.symbol, "target_date": str(r.target_date), "pred_return": float(r.pred_return),
             "close": float(r.close), "pred_close": float(r.pred_close),
             "pred_close_low": float(r.pred_close_low), "pred_close_high": float(r.pred_close_high),
             "provisional": bool(r.provisional)}
            for r in frame.itertuples()]
    provisional = is_provisional(day, A_SHARE_CALENDAR) or any(r["provisional"] for r in rows)
    return {"path": path, **used, "interval": f"p{levels[0] * 100:g}-p{levels[1] * 100:g}", "rows": rows,
            "provisional": provisional, "calendar": calendar_info(A_SHARE_CALENDAR)}
