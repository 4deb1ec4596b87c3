"""Where a flow's fan-out of coarse task runs executes, chosen by ``[run] task_runner``:
``threads`` (a thread pool of ``max_concurrency`` workers) or ``dask`` (``prefect-dask``'s
``DaskTaskRunner`` on the scheduler at ``run.dask_address``, or on a local cluster of
``run.dask_workers`` worker processes started for the run).

The flows submit one task run per (chunk, symbol batch); results come back in submission
order, so a run's outcome does not depend on which runner ran it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from prefect import Task
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from kline.config import Settings


def make_task_runner(settings: Settings) -> TaskRunner:
    """An unstarted task runner for ``settings.run``."""
    run = settings.run
    if run.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if run.dask_address:
            return DaskTaskRunner(address=run.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, run.dask_workers), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=max(1, settings.max_concurrency))


@contextlib.contextmanager
def task_runner(settings: Settings) -> Iterator[TaskRunner]:
    """A started task runner for ``settings`` (a local Dask cluster lives as long as this)."""
    with make_task_runner(settings) as runner:
        yield runner


def fan_out(runner: TaskRunner, task: Task, calls: Sequence[dict[str, Any]]) -> list[Any]:
    """Run ``task`` once per keyword dict in ``calls`` on ``runner``; results in call order.
    Every call is waited for before the first failure is raised, so a failed batch never
    leaves siblings running behind the flow's back."""
    futures = [runner.submit(task, parameters=dict(kw)) for kw in calls]
    for f in futures:
        f.wait()
    return [f.result() for f in futures]
