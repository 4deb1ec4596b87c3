"""Orchestration benchmark: a daily run for the default universe, then the same date again
with nothing changed. Every task must come back Cached, and the second flow run should take
under 3 s (server start-up not counted). Usage: python benchmarks/bench_rerun.py"""

from __future__ import annotations

import collections
import tempfile
import time

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from flows.daily import daily_flow

RUN_DATE = "2026-11-27"


def states(flow_run_id) -> collections.Counter:
    time.sleep(2)  # task run states arrive through the events pipeline
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return collections.Counter(r.state.name for r in runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as lake, prefect_test_harness():
        t0 = time.perf_counter()
        first = daily_flow(run_date=RUN_DATE, lake=lake, return_state=True)
        t1 = time.perf_counter()
        second = daily_flow(run_date=RUN_DATE, lake=lake, return_state=True)
        t2 = time.perf_counter()
        third = daily_flow(run_date=RUN_DATE, lake=lake, return_state=True)
        t3 = time.perf_counter()
        print(f"first run  {t1 - t0:6.1f} s  {dict(states(first.state_details.flow_run_id))}")
        print(f"re-run     {t2 - t1:6.1f} s  {dict(states(second.state_details.flow_run_id))}")
        print(f"re-run 2   {t3 - t2:6.1f} s  {dict(states(third.state_details.flow_run_id))}")


if __name__ == "__main__":
    main()
