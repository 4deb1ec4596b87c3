"""Serve the lake's reports and Data Docs over HTTP, read-only, and build the links to them.

A browser refuses ``file://`` links from an ``http://`` page such as the Prefect UI, so
``kline docs`` and ``kline serve`` run ``DocsServer``: it answers GET/HEAD for files under
``<lake>/reports/`` and ``<lake>/validation/docs/`` only, at the same relative paths
(``/reports/<run_date>/report.html``, ``/validation/docs/index.html``), so the relative
links between reports and Data Docs work both from the file system and over HTTP. A path
with ``..`` or ``.`` segments, a symlink out of those folders, or anything else answers 404.

A running server announces its public URL in ``<lake>/_state/docs-server.json``;
``link_for`` turns a lake path into that server's URL, into a presigned URL on an object
store, or else into today's ``file://`` path.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import mimetypes
import os
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kline.lake import Lake

SERVED = ("reports", "validation/docs")  # lake folders the server exposes, as URL prefixes
PRESIGN_EXPIRY = dt.timedelta(days=7)  # the longest an S3 (SigV4) presigned URL may live
mimetypes.add_type("font/woff2", ".woff2")
mimetypes.add_type("text/markdown", ".md")


class DocsServerError(RuntimeError):
    """The server cannot start (port in use, an object-store lake); the message says why."""


def resolve(lake_root: str, url_path: str) -> Path | None:
    """The local file a request path names, or None (404). Directories give their
    ``index.html``; ``/reports/`` without one gives None (the handler lists it)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    segments = path.split("/")
    if not path.startswith("/") or any(s in (".", "..") or "\\" in s or "\0" in s for s in segments):
        return None
    parts = [s for s in segments if s]
    root = Path(lake_root)
    for prefix in SERVED:
        head = prefix.split("/")
        if parts[: len(head)] == head:
            base = root.joinpath(*head).resolve()
            break
    else:
        return None
    target = root.joinpath(*parts).resolve()
    if target != base and not target.is_relative_to(base):  # a symlink pointing out
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def reports_listing(lake: Lake) -> list[str]:
    """Run dates (ISO, newest first) that have a finished report."""
    days = [p.parent.name for p in Path(lake.paths.reports_dir()).glob("*/report.html") if p.is_file()]
    return sorted((d for d in days if _is_iso_date(d)), reverse=True)


def _is_iso_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def reports_index_html(days: list[str], docs_href: str = "../validation/docs/index.html") -> str:
    """The reports index page (``reports/index.html``): one link per run date, newest first,
    and the Data Docs; every link relative, so it works from disk and over HTTP."""
    items = "".join(f"<li><a href='{html.escape(d)}/report.html'>{html.escape(d)}</a></li>" for d in days)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>kline reports</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:50em;margin:2em auto;padding:0 1em}</style>"
            f"</head><body><h1>kline reports</h1><p><a href='{html.escape(docs_href)}'>Data Docs "
            f"(Great Expectations validation runs)</a></p><ul>{items or '<li>no report yet</li>'}</ul></body></html>")


def write_reports_index(lake: Lake) -> str:
    """Rewrite ``reports/index.html`` from the reports on disk (local lakes); returns its path."""
    path = lake.paths.reports_index()
    with lake.lock("reports-index"):
        lake.atomic_write_text(path, reports_index_html(reports_listing(lake)))
    return path


class _Handler(BaseHTTPRequestHandler):
    server_version = "kline-docs"
    lake_root = ""  # set per server class

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path in ("", "/"):
            return self._send(HTTPStatus.OK, _LANDING_HTML.encode(), "text/html; charset=utf-8", body)
        target = resolve(self.lake_root, self.path)
        if target is None and path.rstrip("/") == "/reports" and ".." not in path:
            page = reports_index_html(reports_listing(Lake(self.lake_root)))
            return self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", body)
        if target is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", body)
        try:
            data = target.read_bytes()
        except OSError:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", body)
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, data, ctype, body)

    def _send(self, status: HTTPStatus, data: bytes, ctype: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")  # reports and docs change in place
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", "text/plain; charset=utf-8", True)

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request is noise next to the scheduler's log


_LANDING_HTML = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>kline</title></head>"
                 "<body style='font-family:system-ui,sans-serif'><h1>kline</h1><ul>"
                 "<li><a href='/reports/'>Reports</a></li>"
                 "<li><a href='/validation/docs/index.html'>Data Docs</a></li></ul></body></html>")


class DocsServer:
    """A threaded, read-only HTTP server for one local lake's reports and Data Docs."""

    def __init__(self, lake_root: str, host: str = "127.0.0.1", port: int = 0, public_url: str = ""):
        if "://" in str(lake_root):
            raise DocsServerError(f"cannot serve an object-store lake ({lake_root}); "
                                  "its link artifacts are presigned URLs")
        self.lake = Lake(lake_root)
        handler = type("Handler", (_Handler,), {"lake_root": self.lake.root})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise DocsServerError(f"cannot serve reports on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{shown}:{self.port}"
        self.public_url = (public_url or self.url).rstrip("/")
        self._thread: threading.Thread | None = None

    def start(self) -> DocsServer:
        """Serve in a background thread and announce the public URL in the lake."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="kline-docs", daemon=True)
        self._thread.start()
        self.announce()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread (until interrupted), announced in the lake."""
        self.announce()
        try:
            self.httpd.serve_forever()
        finally:
            self.close()

    def announce(self) -> None:
        info = {"url": self.public_url, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": dt.datetime.now(dt.UTC).isoformat()}
        self.lake.atomic_write_text(self.lake.paths.docs_server(), json.dumps(info))

    def close(self) -> None:
        """Stop serving and withdraw the announcement if it is still this server's."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()
        info = announced(self.lake, check_alive=False)
        if info and info.get("pid") == os.getpid() and info.get("url") == self.public_url:
            Path(self.lake.paths.docs_server()).unlink(missing_ok=True)


def announced(lake: Lake, check_alive: bool = True) -> dict[str, Any] | None:
    """The announcement of the server for ``lake``, or None; with ``check_alive`` an
    announcement left by a dead process on this host is ignored."""
    path = lake.paths.docs_server()
    try:
        info = json.loads(lake.read_text(path))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not info.get("url"):
        return None
    if check_alive and info.get("host") == socket.gethostname() and not _alive(int(info.get("pid") or 0)):
        return None
    return info


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def link_for(lake: Lake, path: str) -> str:
    """What a link artifact should point at for the lake file ``path``: the announced
    server's URL when ``path`` is served, a presigned URL (``PRESIGN_EXPIRY``) on an object
    store, else ``file://path``."""
    info = announced(lake)
    rel = _served_relpath(lake, path)
    if info and rel is not None:
        return f"{info['url'].rstrip('/')}/{urllib.parse.quote(rel)}"
    if "://" in path:
        try:
            return lake.fs.sign(lake._strip(path), expiration=int(PRESIGN_EXPIRY.total_seconds()))
        except (NotImplementedError, AttributeError):
            return path
    return f"file://{path}"


def link_note(url: str) -> str:
    """A short sentence on how long ``url`` stays valid, for artifact descriptions."""
    if url.startswith("file://"):
        return "a local file: open it on the machine that holds the lake (run `kline docs` to serve it)"
    if "X-Amz-Expires=" in url or "Signature=" in url:
        return f"presigned, valid for {PRESIGN_EXPIRY.days} days from the run"
    return "served by `kline docs` / `kline serve`"


def _served_relpath(lake: Lake, path: str) -> str | None:
    """``path`` relative to the lake root if it lies in a served folder, else None."""
    root = lake.root.rstrip("/")
    if not path.startswith(root + "/"):
        return None
    rel = path[len(root) + 1:]
    if any(s in (".", "..") for s in rel.split("/")):
        return None
    return rel if any(rel == p or rel.startswith(p + "/") for p in SERVED) else None
