"""The reports / Data Docs server: a real ThreadingHTTPServer on loopback, a temporary lake."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kline.lake import Lake
from kline.serving import (
    DocsServer,
    DocsServerError,
    announced,
    link_for,
    resolve,
    write_reports_index,
)


@pytest.fixture
def served_lake(lake) -> Lake:
    root = Path(lake.root)
    for rel, text in {
        "reports/2024-03-15/report.html": "<html>report 2024-03-15</html>",
        "reports/2024-03-15/data.png": "png",
        "reports/2024-03-14/report.html": "<html>report 2024-03-14</html>",
        "validation/docs/index.html": "<html>docs index</html>",
        "validation/docs/static/vendor/x.woff2": "font",
        "validation/results/run.json": "{}",
        "_state/secret.txt": "not for the browser",
        "curated/bars/year=2024/part.parquet": "bars",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "reports" / "escape").symlink_to(root / "_state")
    return lake


def _get(server: DocsServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    # http.client sends the path as given: no client-side normalisation of ".."
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type") or "", body


def test_resolve_keeps_requests_inside_reports_and_data_docs(served_lake):
    root = served_lake.root
    assert resolve(root, "/reports/2024-03-15/report.html") == Path(root, "reports/2024-03-15/report.html")
    assert resolve(root, "/validation/docs/") == Path(root, "validation/docs/index.html")
    for bad in ["/reports/../_state/secret.txt", "/reports/%2e%2e/_state/secret.txt", "/validation/docs/../results/run.json",
                "/validation/results/run.json", "/_state/secret.txt", "/curated/bars/year=2024/part.parquet",
                "/reports/escape/secret.txt", "/reports/./2024-03-15/report.html", "/reports/..%2f_state/secret.txt",
                "/reports/2024-03-15/missing.html", "reports/2024-03-15/report.html"]:
        assert resolve(root, bad) is None, bad


def test_server_answers_files_and_404_for_everything_else(served_lake):
    server = DocsServer(served_lake.root, port=0).start()
    try:
        status, ctype, body = _get(server, "/reports/2024-03-15/report.html")
        assert (status, ctype, body) == (200, "text/html; charset=utf-8", b"<html>report 2024-03-15</html>")
        assert _get(server, "/validation/docs/static/vendor/x.woff2")[:2] == (200, "font/woff2")
        assert _get(server, "/validation/docs/index.html")[2] == b"<html>docs index</html>"
        for bad in ["/reports/../_state/secret.txt", "/validation/docs/../../_state/secret.txt",
                    "/reports/%2E%2E/_state/secret.txt", "/reports/escape/secret.txt", "/_state/secret.txt"]:
            status, _, body = _get(server, bad)
            assert status == 404 and b"not for the browser" not in body, bad
        listing = _get(server, "/reports/")[2].decode()  # no index.html yet: listed
        assert listing.index("2024-03-15/report.html") < listing.index("2024-03-14/report.html")
        assert _get(server, "/reports/2024-03-15/report.html", "HEAD")[:2] == (200, "text/html; charset=utf-8")
        assert _get(server, "/reports/2024-03-15/report.html", "POST")[0] == 405
        assert _get(server, "/reports/2024-03-15/report.html", "DELETE")[0] == 405
        assert Path(served_lake.root, "reports/2024-03-15/report.html").is_file()
    finally:
        server.close()


def test_announcement_drives_the_links_and_is_withdrawn(served_lake):
    html = f"{served_lake.root}/reports/2024-03-15/report.html"
    assert link_for(served_lake, html) == f"file://{html}"
    server = DocsServer(served_lake.root, port=0).start()
    try:
        assert announced(served_lake)["url"] == f"http://127.0.0.1:{server.port}"
        assert link_for(served_lake, html) == f"http://127.0.0.1:{server.port}/reports/2024-03-15/report.html"
        # a file the server would not serve keeps its path
        secret = f"{served_lake.root}/_state/secret.txt"
        assert link_for(served_lake, secret) == f"file://{secret}"
    finally:
        server.close()
    assert announced(served_lake) is None and link_for(served_lake, html) == f"file://{html}"


def test_public_url_and_a_dead_servers_announcement(served_lake):
    server = DocsServer(served_lake.root, port=0, public_url="https://proxy.example/kline/").start()
    html = f"{served_lake.root}/reports/2024-03-15/report.html"
    try:
        assert link_for(served_lake, html) == "https://proxy.example/kline/reports/2024-03-15/report.html"
    finally:
        server.close()
    # a server killed without cleaning up: its announcement names a dead pid on this host
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    info = {"url": "http://127.0.0.1:1", "pid": int(dead.stdout), "host": os.uname().nodename}
    served_lake.atomic_write_text(served_lake.paths.docs_server(), json.dumps(info))
    assert announced(served_lake) is None and link_for(served_lake, html) == f"file://{html}"


def test_a_busy_port_is_one_clear_error(served_lake):
    first = DocsServer(served_lake.root, port=0)
    try:
        with pytest.raises(DocsServerError, match=f"127.0.0.1:{first.port}"):
            DocsServer(served_lake.root, port=first.port)
    finally:
        first.close()


def test_an_object_store_lake_is_not_served():
    with pytest.raises(DocsServerError, match="object-store"):
        DocsServer("s3://bucket/lake", port=0)


def test_reports_index_lists_finished_reports_newest_first(served_lake):
    Path(served_lake.root, "reports/2024-03-16").mkdir()  # no report.html: not listed
    page = Path(write_reports_index(served_lake)).read_text()
    assert page.index("2024-03-15/report.html") < page.index("2024-03-14/report.html")
    assert "2024-03-16" not in page and "../validation/docs/index.html" in page


def test_kline_docs_refuses_a_bad_port(served_lake, isolated_cwd):
    from flows.cli import main

    assert main(["docs", "--lake", served_lake.root, "--port", "70000"]) == 2
    busy = DocsServer(served_lake.root, port=0)
    try:
        assert main(["docs", "--lake", served_lake.root, "--port", str(busy.port)]) == 2
    finally:
        busy.close()
