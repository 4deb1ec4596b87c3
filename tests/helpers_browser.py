"""Headless Chromium for the e2e tests: found (or installed with apt-get as root), run with
every host but 127.0.0.1 unresolvable, with a net log to count requests that leave the
machine. Pages are inspected through a same-origin harness page (an iframe), written into
the served lake by the test itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-features=AutofillServerCommunication", "--virtual-time-budget=15000",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# Loaded in an iframe; reports what the framed page got once it has loaded.
HARNESS = """<!DOCTYPE html><html><body><iframe id="f" style="width:1400px;height:900px"></iframe>
<script>
const f = document.getElementById('f');
f.addEventListener('load', () => setTimeout(() => {
  const d = f.contentDocument, w = f.contentWindow;
  const sheets = [...d.querySelectorAll('link[rel=stylesheet]')];
  const styled = sheets.filter(l => { try { return l.sheet && l.sheet.cssRules.length > 0 } catch (e) { return false } });
  const imgs = [...d.images];
  const m = d.body.innerText.match(/Status:\\s*(Succeeded|Failed)/);
  document.body.setAttribute('data-check', JSON.stringify({
    title: d.title,
    runs: d.querySelectorAll('table.ge-index-page-validation-results-table tbody tr[data-index]').length,
    stylesheets: sheets.length, styled: styled.length,
    scripts: typeof w.jQuery === 'function' && typeof w.jQuery.fn.bootstrapTable === 'function',
    images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    fonts: [...d.fonts].filter(x => x.status === 'loaded').map(x => x.family),
    status: m ? m[1] : '', links: [...d.querySelectorAll('a')].map(a => a.getAttribute('href')),
  }));
}, 1500));
f.src = new URLSearchParams(location.search).get('page');
</script></body></html>"""


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def find_or_install_chromium() -> str:
    """Chromium's path; installs Debian's package as root, else skips the test."""
    path = _find_chromium()
    if path:
        return path
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired):
            break
        path = _find_chromium()
        if path:
            return path
    pytest.skip("chromium could not be installed with apt-get (no package source reachable?)")


def inspect_page(chromium: str, harness_url: str, page_path: str, workdir: Path) -> tuple[dict, list[str]]:
    """Open ``page_path`` (same origin as ``harness_url``) through the harness; returns what
    the harness saw and the URLs of requests the pages made to any host but 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    netlog = workdir / "netlog.json"
    url = f"{harness_url}?page={urllib.parse.quote(page_path)}"
    out = subprocess.run([chromium, *FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--log-net-log={netlog}",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120)
    m = re.search(r'data-check="([^"]*)"', out.stdout)
    assert m, f"chromium produced no marked DOM (rc={out.returncode}): {out.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(m.group(1))), external_requests(netlog, harness_url)


def external_requests(netlog: Path, harness_url: str) -> list[str]:
    """URLs of requests that pages from the harness's origin started towards any other host
    (Chromium's own background traffic has no page initiator and is not counted)."""
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # cut short at exit: close the event list
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(harness_url))
    out = []
    for e in log["events"]:
        p = e.get("params") or {}
        if names.get(e["type"]) != "URL_REQUEST_START_JOB" or p.get("initiator") != origin:
            continue
        host = urllib.parse.urlsplit(p["url"]).hostname
        if p["url"].startswith(("http:", "https:", "ws:", "wss:")) and host != "127.0.0.1":
            out.append(p["url"])
    return out
