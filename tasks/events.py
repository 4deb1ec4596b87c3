"""Domain events on Prefect's event feed: what the pipeline did to the lake and the models.

Each event names its subject as the primary resource (labelled ``kline.severity``: ``alert``
for what someone should look at, else ``info``) and the lake and the symbols as related
resources; inside a run, Prefect adds the flow run, flow, deployment and tags. The
automations ``kline setup`` creates match ``kline.severity=alert``. Emitting never fails
the stage: an event that cannot be sent is logged and dropped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

INGESTED = "kline.data.ingested"
QUARANTINED = "kline.data.quarantined"
TRAINED = "kline.model.trained"
PROMOTED = "kline.model.promoted"
DECAYED = "kline.model.decayed"
RETIRED = "kline.model.retired"  # the champion no longer beats persistence: the forecast is persistence
REPORT_PUBLISHED = "kline.report.published"
RUN_FAILED = "kline.run.failed"

MAX_SYMBOL_RESOURCES = 50  # a big universe is summarised in the payload, not as resources


def lake_id(lake_root: str) -> str:
    """A short stable id of a lake root, for resource ids (``kline.lake.<id>``)."""
    return hashlib.sha256(lake_root.encode()).hexdigest()[:12]


def related_resources(lake_root: str, symbols: Iterable[str]) -> list[dict[str, str]]:
    """The lake and (up to ``MAX_SYMBOL_RESOURCES``) symbols as related resources."""
    out = [{"prefect.resource.id": f"kline.lake.{lake_id(lake_root)}", "prefect.resource.role": "lake",
            "prefect.resource.name": lake_root}]
    for sym in sorted(set(symbols))[:MAX_SYMBOL_RESOURCES]:
        out.append({"prefect.resource.id": f"kline.symbol.{sym}", "prefect.resource.role": "symbol",
                    "prefect.resource.name": sym})
    return out


def emit(event: str, resource_id: str, name: str, lake_root: str, symbols: Iterable[str],
         payload: dict[str, Any], alert: bool = False, extra_related: list[dict[str, str]] | None = None) -> None:
    """Emit ``event`` about ``resource_id`` (named ``name``); never raises."""
    symbols = list(symbols)
    resource = {"prefect.resource.id": resource_id, "prefect.resource.name": name,
                "kline.severity": "alert" if alert else "info", "kline.lake": lake_id(lake_root)}
    _send(event, resource, related_resources(lake_root, symbols) + list(extra_related or []),
          {"symbols": len(symbols), **payload})


def _send(event: str, resource: dict[str, str], related: list[dict[str, str]], payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    try:
        emit_event(event, resource=resource, related=related, payload=payload)
    except Exception as exc:  # noqa: BLE001 - an event is never worth failing a stage for
        log.warning("could not emit %s: %s", event, exc)


def data_resource(lake_root: str, layer: str) -> str:
    return f"kline.lake.{lake_id(lake_root)}.{layer}"


def model_resource(name: str, version: str | None) -> str:
    return f"kline.model.{name}.{version or 'none'}"


def flush(timeout_s: float = 10.0) -> None:
    """Send the events queued by this process now (hooks run just before it may exit)."""
    from prefect.events.worker import EventsWorker

    try:
        EventsWorker.drain_all(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not flush events: %s", exc)


def emit_run_failed(flow_name: str, flow_run: Any, state: Any, where: dict | None, markdown: str) -> None:
    """``kline.run.failed`` about a flow run (from a state hook, outside the run context):
    the run, its flow and deployment as resources, the stage, the error and the
    ``pipeline-failure`` artifact's markdown as payload; sent before returning."""
    where = where or {}
    params = getattr(flow_run, "parameters", None) or {}
    related = [{"prefect.resource.id": f"prefect.flow.{flow_run.flow_id}", "prefect.resource.role": "flow",
                "prefect.resource.name": flow_name}]
    if getattr(flow_run, "deployment_id", None):
        related.append({"prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                        "prefect.resource.role": "deployment"})
    if params.get("lake"):
        related += related_resources(str(params["lake"]), where.get("symbols") or [])
    _send(RUN_FAILED,
          {"prefect.resource.id": f"prefect.flow-run.{flow_run.id}", "prefect.resource.name": flow_run.name,
           "kline.severity": "alert"},
          related,
          {"run_name": flow_run.name, "flow": flow_name, "state": getattr(state, "name", None),
           "stage": where.get("stage", "unknown"), "symbols": where.get("symbols") or [],
           "error": (getattr(state, "message", None) or "")[:2000], "markdown": markdown[:8000]})
    flush()
