"""``kline setup``: what a Prefect server needs to run kline, created or updated idempotently.

On the server named by ``PREFECT_API_URL``:

- the process work pool ``kline`` (for ``prefect.yaml`` and a worker);
- the global concurrency limit ``kline-tushare``, used as a rate limit by every tushare call
  (``tasks.budget``), sized from ``tushare.calls_per_minute``;
- the notification block ``kline-alerts`` (``[alerts] webhook_url``: a JSON POST of
  ``{"subject", "body"}``; else ``slack_webhook_url``; neither: no block, and the
  automations only record their firing in the UI);
- the automations in ``desired_automations``.

``apply`` changes only what differs from the wanted state; ``drift`` reports it without
changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kline.config import Settings
from kline.providers.tushare import RateLimiter
from tasks import events
from tasks.budget import TUSHARE_LIMIT

WORK_POOL = "kline"
BLOCK_NAME = "kline-alerts"
DAILY_FLOW, BACKFILL_FLOW = "kline-daily", "kline-backfill"
AUTOMATION_PREFIX = "kline-"

TERMINAL = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Crashed",
            "prefect.flow-run.Cancelled", "prefect.flow-run.TimedOut"}


@dataclass(frozen=True)
class Change:
    """One object of the wanted state and what ``apply`` did (or ``drift`` would do) to it."""

    kind: str  # "work pool", "concurrency limit", "block", "automation"
    name: str
    action: str  # "created", "updated", "deleted", "unchanged" (apply); "missing", "differs", "extra" (drift)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.action}"


def _flows(*names: str) -> dict[str, Any]:
    return {"prefect.resource.role": "flow", "prefect.resource.name": list(names)}


def desired_automations(settings: Settings) -> dict[str, dict[str, Any]]:
    """Automation name -> ``{"description", "trigger", "subject", "body"}``."""
    from prefect.automations import EventTrigger, Posture

    a = settings.alerts
    run = {"prefect.resource.id": "prefect.flow-run.*"}
    alert = {"kline.severity": "alert"}
    return {
        "kline-run-failed": {
            "description": "A daily or backfill run Failed, Crashed or TimedOut: the stage and the error "
                           "(the pipeline-failure artifact).",
            "trigger": EventTrigger(expect={events.RUN_FAILED}, match=run,
                                    match_related=_flows(DAILY_FLOW, BACKFILL_FLOW), posture=Posture.Reactive,
                                    threshold=1),
            "subject": "kline: {{ event.payload.run_name }} {{ event.payload.state }} at stage "
                       "{{ event.payload.stage }}",
            "body": "{{ event.payload.markdown }}",
        },
        "kline-daily-late": {
            "description": f"A scheduled daily run still Late {a.late_after_s} s after turning Late "
                           "(no runner or worker picked it up).",
            "trigger": EventTrigger(after={"prefect.flow-run.Late"},
                                    expect={"prefect.flow-run.Pending", "prefect.flow-run.Running", *TERMINAL},
                                    for_each={"prefect.resource.id"}, match=run, match_related=_flows(DAILY_FLOW),
                                    posture=Posture.Proactive, threshold=1, within=timedelta(seconds=a.late_after_s)),
            "subject": "kline: {{ flow_run.name }} has not started",
            "body": "Flow run {{ flow_run.name }} was scheduled for {{ flow_run.expected_start_time }} and is "
                    f"still Late {a.late_after_s} s later: is `kline serve` (or the worker) running?",
        },
        "kline-daily-running-long": {
            "description": f"A daily run Running for {a.running_after_s} s without finishing.",
            "trigger": EventTrigger(after={"prefect.flow-run.Running"}, expect=set(TERMINAL),
                                    for_each={"prefect.resource.id"}, match=run, match_related=_flows(DAILY_FLOW),
                                    posture=Posture.Proactive, threshold=1,
                                    within=timedelta(seconds=a.running_after_s)),
            "subject": "kline: {{ flow_run.name }} is still running",
            "body": f"Flow run {{{{ flow_run.name }}}} has been Running for {a.running_after_s} s.",
        },
        "kline-data-quarantined": {
            "description": f"At least {a.quarantine_rows} rows of one validated chunk quarantined.",
            "trigger": EventTrigger(expect={events.QUARANTINED}, match=alert, posture=Posture.Reactive, threshold=1),
            "subject": "kline: {{ event.payload.rows }} rows quarantined ({{ event.payload.start }} .. "
                       "{{ event.payload.end }})",
            "body": "{{ event.payload.rows }} of {{ event.payload.rows_checked }} rows failed validation "
                    "({{ event.payload.failed_expectations | join(', ') }}); left out of modelling: "
                    "{{ event.payload.excluded_symbols | join(', ') or 'none' }}.",
        },
        "kline-model-promoted": {
            "description": "A new model version became champion.",
            "trigger": EventTrigger(expect={events.PROMOTED}, match=alert, posture=Posture.Reactive, threshold=1),
            "subject": "kline: {{ event.payload.model }} {{ event.payload.version }} promoted",
            "body": "As of {{ event.payload.run_date }}: {{ event.payload.metric }} "
                    "{{ event.payload.candidate_value }} ({{ event.payload.rule }}).",
        },
        "kline-model-retired": {
            "description": "The champion no longer beats persistence on its newest sessions: retired.",
            "trigger": EventTrigger(expect={events.RETIRED}, match=alert, posture=Posture.Reactive, threshold=1),
            "subject": "kline: champion {{ event.payload.model }} {{ event.payload.version }} retired",
            "body": "As of {{ event.payload.run_date }}: {{ event.payload.reason }}. Until a candidate is "
                    "promoted on evidence the next-session forecast is persistence.",
        },
        "kline-model-decayed": {
            "description": f"The champion's walk-forward MASE over the last {a.decay_sessions} sessions is above "
                           f"{a.decay_mase}.",
            "trigger": EventTrigger(expect={events.DECAYED}, match=alert, posture=Posture.Reactive, threshold=1),
            "subject": "kline: champion {{ event.payload.model }} {{ event.payload.champion_version }} has decayed",
            "body": "As of {{ event.payload.run_date }} its MASE over the last {{ event.payload.sessions }} "
                    "sessions is {{ event.payload.mase }} (threshold {{ event.payload.threshold }}; 1 = no better "
                    "than tomorrow = today).",
        },
    }


def desired_block(settings: Settings):
    """The notification block wanted (unsaved), or None when no URL is configured."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    a = settings.alerts
    if a.webhook_url:
        return CustomWebhookNotificationBlock(name="kline", url=a.webhook_url, method="POST",
                                              json_data={"subject": "{{subject}}", "body": "{{body}}"})
    if a.slack_webhook_url:
        return SlackWebhook(url=a.slack_webhook_url)
    return None


def _block_fields(block) -> dict[str, Any]:
    # fields starting with "_" are the saved document's id and name
    return {k: v.get_secret_value() if hasattr(v, "get_secret_value") else v
            for k, v in block.model_dump().items() if not k.startswith("_")}


def _strip(value: Any) -> Any:
    """A JSON dump without ids, string lists sorted (they are sets: ``expect``, ``after``,
    resource names), for comparing automations."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list | tuple):
        items = [_strip(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def _automation(name: str, spec: dict, block_id) -> Any:
    from prefect.automations import AutomationCore, DoNothing, SendNotification

    actions = ([SendNotification(block_document_id=block_id, subject=spec["subject"], body=spec["body"])]
               if block_id else [DoNothing()])
    return AutomationCore(name=name, description=spec["description"], enabled=True, tags=["kline"],
                          trigger=spec["trigger"], actions=actions)


def _same(a, b) -> bool:
    return _strip(a.model_dump(mode="json")) == _strip(b.model_dump(mode="json"))


def _read(read, name: str, missing: tuple[type[Exception], ...] = ()) -> Any:
    """``read(name)``, or None when the server has no such object (ObjectNotFound or ``missing``)."""
    from prefect.exceptions import ObjectNotFound

    try:
        return read(name)
    except (ObjectNotFound, *missing):
        return None


def _state(have: Any, same: bool) -> str | None:
    """``missing``, ``differs`` or None (as wanted) for an object read from the server."""
    return "missing" if have is None else (None if same else "differs")


def _plan(settings: Settings, client, write: bool) -> list[Change]:
    """Compare the server with the wanted state; with ``write``, make it so."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
        WorkPoolCreate,
    )

    out: list[Change] = []

    pool = _read(client.read_work_pool, WORK_POOL)
    state = _state(pool, pool is not None and pool.type == "process")
    if state and write:
        if state == "differs":  # a pool's type cannot be changed in place
            client.delete_work_pool(WORK_POOL)
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    out.append(Change("work pool", WORK_POOL, _verb(state, write)))

    limit, decay, _ = RateLimiter.shared_bucket(settings.tushare.calls_per_minute)
    gcl = _read(client.read_global_concurrency_limit_by_name, TUSHARE_LIMIT)
    state = _state(gcl, gcl is not None and gcl.limit == limit and gcl.active
                   and abs(gcl.slot_decay_per_second - decay) < 1e-9)
    if state and write:
        if state == "missing":
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                name=TUSHARE_LIMIT, limit=limit, slot_decay_per_second=decay, active=True))
        else:
            client.update_global_concurrency_limit(TUSHARE_LIMIT, GlobalConcurrencyLimitUpdate(
                limit=limit, slot_decay_per_second=decay, active=True))
    out.append(Change("concurrency limit", TUSHARE_LIMIT, _verb(state, write)))

    block_id = None
    block = desired_block(settings)
    if block is not None:
        saved = _read(type(block).load, BLOCK_NAME, missing=(ValueError,))  # Block.load: ValueError
        state = _state(saved, saved is not None and _block_fields(saved) == _block_fields(block))
        if state and write:
            block_id = block.save(BLOCK_NAME, overwrite=True)
        elif saved is not None:
            block_id = saved._block_document_id
        out.append(Change("block", f"{block.get_block_type_slug()}/{BLOCK_NAME}", _verb(state, write)))

    wanted = desired_automations(settings)
    existing: dict[str, list] = {}
    for a in client.read_automations():
        if a.name.startswith(AUTOMATION_PREFIX) and "kline" in (a.tags or []):
            existing.setdefault(a.name, []).append(a)
    for name, spec in wanted.items():
        want = _automation(name, spec, block_id)
        have = existing.pop(name, [])
        keep, extra = (have[0], have[1:]) if have else (None, [])
        same = keep is not None and _same(want, keep)
        state = _state(keep, same and not extra)
        if write:
            for a in extra:
                client.delete_automation(a.id)
            if keep is None:
                client.create_automation(want)
            elif not same:
                client.update_automation(keep.id, want)
        out.append(Change("automation", name, _verb(state, write)))
    for name, have in existing.items():  # kline automations this version no longer wants
        if write:
            for a in have:
                client.delete_automation(a.id)
        out.append(Change("automation", name, "deleted" if write else "extra"))
    return out


def _verb(state: str | None, write: bool) -> str:
    if state is None:
        return "unchanged"
    if not write:
        return state
    return "created" if state == "missing" else "updated"


def apply(settings: Settings) -> list[Change]:
    """Create or update everything kline needs on the current Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return _plan(settings, client, write=True)


def drift(settings: Settings) -> list[Change]:
    """What ``apply`` would change (objects whose action is not ``unchanged``)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [c for c in _plan(settings, client, write=False) if c.action != "unchanged"]
