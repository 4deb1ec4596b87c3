"""The Prefect API going away mid-run: recognise it, and keep what the console shows short.

When the server dies, every state change, log batch and event the run still sends fails with
a connection error. Prefect's console handler would print each with its traceback (and each
queued event with its whole repr); ``quiet_console`` turns those records into one line each,
so the run ends with the CLI's own message instead of a wall of tracebacks.
"""

from __future__ import annotations

import logging

import httpx

_EVENT_FAILED = " failed to process item "


def api_lost(exc: BaseException | None) -> BaseException | None:
    """The connection error to the API behind ``exc`` (along its cause chain), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, httpx.TransportError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class _OneLine(logging.Filter):
    """Drops the traceback of a record caused by a lost API, and the payload of an event the
    events worker could not send."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and api_lost(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        if record.name.startswith("prefect._internal.concurrency"):
            msg = record.getMessage()
            if _EVENT_FAILED in msg:
                record.msg, record.args = msg.split(_EVENT_FAILED)[0] + " could not send an event", ()
                record.exc_info, record.exc_text = None, None
        return True


def quiet_console() -> None:
    """Add the one-line filter to every stream handler Prefect's logging set up (idempotent)."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not any(isinstance(f, _OneLine) for f in h.filters):
                h.addFilter(_OneLine())
