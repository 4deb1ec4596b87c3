"""What every task shares: where results persist, the cache policy, and settings transport.

Task results (and so the cache) persist inside the lake (``_state/prefect-results``): the
cache lives and dies with the data it describes, and workers that share a lake share it.
Tasks take the settings of *their* stage only (``stage_settings``), so changing a training
parameter never invalidates the ingest cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from kline.calendar import configure
from kline.config import Settings
from kline.lake import LakePaths

STAGE_CACHE = INPUTS + TASK_SOURCE

# Which settings each stage reads; the rest never reaches its cache key.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("provider", "synthetic_seed", "tushare", "file", "ingest"),
    "validate": ("file", "validation"),
    "features": ("features",),
    "train": ("features", "train"),
    "backtest": ("features", "train", "backtest"),
}


def stage_settings(settings: Settings, stage: str) -> dict[str, Any]:
    """The JSON-able part of ``settings`` that ``stage`` depends on."""
    d = settings.to_dict()
    return {k: d[k] for k in STAGE_SECTIONS[stage]}


def settings_from(sub: dict[str, Any]) -> Settings:
    """Rebuild full settings from a stage's sub-dict (other fields keep their defaults)."""
    return Settings().replace(**sub)


def use_layers(calendars: dict | None) -> None:
    """Set the calendar layers a flow passed along (``kline.calendar.layers_snapshot``) in
    this task's context; None keeps the context's own (a thread copies the flow's)."""
    if calendars is not None:
        configure(calendars)


def result_storage(lake_root: str) -> Path | None:
    """Prefect result storage inside a local lake. Prefect only takes an unsaved storage as a
    local ``Path``; for an object-store lake, results stay in Prefect's default storage."""
    path = LakePaths(lake_root).prefect_results()
    return None if "://" in path else Path(path)


def bind(task: Task, lake_root: str, refresh: bool = False, **options: Any) -> Task:
    """``task`` with results persisted in the lake (and the cache refreshed if asked)."""
    storage = result_storage(lake_root)
    if storage is not None:
        options["result_storage"] = storage
    return task.with_options(
        persist_result=True,
        refresh_cache=True if refresh else None,
        **options,
    )
