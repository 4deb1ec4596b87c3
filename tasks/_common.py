"""What every task shares: where results persist, the cache policy, and settings transport.

Task results (and so the cache) persist inside the lake (``_state/prefect-results``), on local
disk or in the object store: the cache lives and dies with the data it describes, and workers
that share a lake share it, on one machine or many.
Tasks take the settings of *their* stage only (``stage_settings``), so changing a training
parameter never invalidates the ingest cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from kline.calendar import configure
from kline.config import Settings
from kline.lake import LakePaths, storage_options

STAGE_CACHE = INPUTS + TASK_SOURCE

# Which settings each stage reads; the rest never reaches its cache key.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": ("provider", "synthetic_seed", "tushare", "file", "ingest"),
    "validate": ("file", "validation"),
    "features": ("features",),
    "train": ("features", "train"),
    "backtest": ("features", "train", "backtest"),
    "promote": ("features", "train", "backtest", "promotion"),
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


_remote_storage: dict[str, Any] = {}


def result_storage(lake_root: str) -> Path | Any:
    """Where Prefect persists task results for ``lake_root``: ``<lake>/_state/prefect-results``
    as a local ``Path``, or, for an object-store lake, a ``RemoteFileSystem`` block on that
    URL (saved on the server once per process, as Prefect requires of a block).

    The saved block holds the endpoint, region and profile only; credentials given in the
    settings stay in this process's copy, and other processes use their own settings or the
    AWS variables."""
    path = LakePaths(lake_root).prefect_results()
    if "://" not in path:
        return Path(path)
    opts = storage_options(path)
    public = {k: v for k, v in opts.items() if k not in ("key", "secret")}
    name = "kline-results-" + hashlib.sha256(json.dumps([path, public], sort_keys=True).encode()).hexdigest()[:12]
    block = _remote_storage.get(name)
    if block is None:
        from prefect.exceptions import ObjectAlreadyExists
        from prefect.filesystems import RemoteFileSystem

        block = RemoteFileSystem(basepath=path, settings=public)
        try:
            block.save(name, overwrite=True)
        except ObjectAlreadyExists:  # another process saved it first: the same content
            block = RemoteFileSystem.load(name)
        block.settings = opts  # credentials, if any, only in memory
        _remote_storage[name] = block
    return block


def bind(task: Task, lake_root: str, refresh: bool = False, **options: Any) -> Task:
    """``task`` with results persisted in the lake (and the cache refreshed if asked)."""
    options["result_storage"] = result_storage(lake_root)
    return task.with_options(
        persist_result=True,
        refresh_cache=True if refresh else None,
        **options,
    )
