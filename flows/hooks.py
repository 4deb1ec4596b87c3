"""Flow state hooks. They run outside the run context, so they talk to the API directly.

The flows record which stage they are in (and for which symbols) in ``CURRENT_STAGE``; the
failure hook, which runs in the same process, reads it back together with the failed task
runs' own error messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

FAILURE_KEY = "pipeline-failure"
CURRENT_STAGE: dict[str, dict] = {}  # flow run id -> {"stage", "symbols"}


@contextlib.contextmanager
def stage(name: str, symbols: list[str]) -> Iterator[None]:
    """Mark the running flow as being in stage ``name`` for ``symbols``."""
    from prefect.runtime import flow_run

    run_id = str(flow_run.id)
    CURRENT_STAGE[run_id] = {"stage": name, "symbols": list(symbols)}
    yield
    # only a failure leaves the entry for the hook; success clears it (kline serve runs for days)
    CURRENT_STAGE.pop(run_id, None)


def failure_markdown(flow_run_name: str, message: str, where: dict | None, failed_tasks: list[dict]) -> str:
    """Which stage failed, for which symbols, and why — a markdown artifact body."""
    where = where or {}
    lines = [
        f"# {flow_run_name} failed",
        "",
        f"- **stage:** {where.get('stage', 'unknown (before the first stage)')}",
        f"- **symbols:** {', '.join(where.get('symbols') or []) or 'n/a'}",
        f"- **why:** {message}",
        "",
    ]
    if failed_tasks:
        lines += ["| task run | state | error |", "|---|---|---|"]
        for t in failed_tasks:
            err = (t["message"] or "").replace("|", "\\|").replace("\n", " ")[:500]
            lines.append(f"| {t['name']} | {t['state']} | {err} |")
    return "\n".join(lines) + "\n"


def publish_failure(flow, flow_run, state) -> None:
    """``on_failure`` / ``on_crashed`` hook: a markdown artifact (key ``pipeline-failure``) on
    the flow run, then a ``kline.run.failed`` event carrying it (what the failure alert sends)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tasks.events import emit_run_failed

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        failed = [
            {"name": tr.name, "state": tr.state.name, "message": tr.state.message}
            for tr in runs
            if tr.state is not None and tr.state.is_failed()
        ]
        # where the flow said it was, else the stage of its first failed task run
        where = CURRENT_STAGE.pop(str(flow_run.id), None) or (
            {"stage": failed[0]["name"].split("-")[0], "symbols": []} if failed else None)
        md = failure_markdown(flow_run.name, state.message or state.name, where, failed)
        client.create_artifact(ArtifactCreate(key=FAILURE_KEY, type="markdown", data=md,
                                              description=f"{flow_run.name} failed",
                                              flow_run_id=flow_run.id))
    # after the artifact: the alert carries the same text, so it never races the artifact
    emit_run_failed(flow.name, flow_run, state, where, md)
