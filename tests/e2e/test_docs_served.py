"""From the Prefect UI to the report and the Data Docs: a real `prefect server`, `kline serve`
(which also serves the lake's reports and Data Docs), a daily run; the link artifacts read
back through the API answer 200 over HTTP, the report's figures decode in headless Chromium
with no request leaving the machine, and `..` answers 404."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import urllib.parse

import helpers_server
import httpx
import pytest
from helpers_browser import HARNESS, find_or_install_chromium, inspect_page
from helpers_pipeline import fast_config
from helpers_server import BIN, free_port, stop_group, wait_until

pytestmark = pytest.mark.e2e
prefect_server = helpers_server.prefect_server  # a module-scoped server of this module's own



def _link(artifact) -> str:
    return artifact.data[artifact.data.rindex("](") + 2:-1]


def test_link_artifacts_open_the_served_report_and_data_docs(prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    chromium = find_or_install_chromium()
    docs_port = free_port()
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config() + f"[serve]\nport = {docs_port}\n")
    lake = tmp_path / "lake"
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    serve = subprocess.Popen([str(BIN / "kline"), "serve", "--lake", str(lake), "--config", str(cfg)],
                             env=prefect_server["env"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    base = f"http://127.0.0.1:{docs_port}"
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
            def served() -> bool:
                with get_client(sync_client=True) as client:
                    try:
                        client.read_deployment_by_name("kline-daily/daily")
                        return serve.poll() is None
                    except Exception:  # noqa: BLE001 - not registered yet
                        return False

            wait_until(served, 120, "kline serve to register its deployments")
            fr = run_deployment("kline-daily/daily", parameters={"run_date": "2024-03-15"}, timeout=600)
            assert fr.state.is_completed(), (fr.state.message, (tmp_path / "serve.log").read_text()[-3000:])
            with get_client(sync_client=True) as client:
                arts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fr.id])))
        arts = {a.key: a for a in arts if a.key}

        report_url = _link(arts["kline-report-link"])
        docs_url = _link(arts["validation-docs"])
        assert report_url == f"{base}/reports/2024-03-15/report.html"
        assert docs_url.startswith(f"{base}/validation/docs/validations/curated_bars_critical/")
        summary = arts["kline-report-summary"].data
        assert f"({report_url})" in summary and f"({base}/validation/docs/index.html)" in summary

        r = httpx.get(report_url, timeout=10)
        assert r.status_code == 200 and "kline daily report — 2024-03-15" in r.text
        assert r.text.count("src='data:image/png;base64,") >= 6
        d = httpx.get(docs_url, timeout=10)
        assert d.status_code == 200 and "Status:" in d.text and "static/vendor/" in d.text
        hrefs = re.findall(r"href='([^']*validation/docs[^']*)'", r.text)  # report -> Data Docs
        assert len(hrefs) == 3  # critical page, warning page, index
        for href in hrefs:
            assert httpx.get(urllib.parse.urljoin(report_url, href), timeout=10).status_code == 200, href

        conn = http.client.HTTPConnection("127.0.0.1", docs_port, timeout=10)
        for bad in ["/reports/../kline.toml", "/reports/2024-03-15/../../_state/docs-server.json",
                    "/validation/docs/%2e%2e/results/", "/curated/bars/"]:
            conn.request("GET", bad)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 404, bad
        conn.close()

        (lake / "reports" / "kline-check.html").write_text(HARNESS)
        seen, external = inspect_page(chromium, f"{base}/reports/kline-check.html",
                                      "/reports/2024-03-15/report.html", tmp_path / "chromium")
        assert external == []
        assert seen["images"] == seen["decoded"] >= 6
    finally:
        stop_group(serve, signal.SIGINT)
        log.close()
    # stopped: the announcement is withdrawn, later runs link to files again
    assert not (lake / "_state" / "docs-server.json").exists()
