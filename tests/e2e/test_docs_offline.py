"""Data Docs offline: headless Chromium, every host but 127.0.0.1 unresolvable, opens the
Data Docs index and a validation page served by `kline docs` (DocsServer) from a lake that
real GX runs built; the index lists the runs, the styles, scripts, fonts and images load,
and no request leaves the machine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers_browser import HARNESS, find_or_install_chromium, inspect_page
from helpers_validation import (
    FEB_2024,
    OTHER,
    chunk_ref,
    clean_bars,
    corrupted_import,
    write_raw_frame,
)

from kline.config import Settings
from kline.lake import Lake
from kline.serving import DocsServer
from kline.validation import validate_chunk

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_or_install_chromium()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two validation runs (warning-only, then a critical failure) and a server for them."""
    lake = Lake(tmp_path_factory.mktemp("docs") / "lake")
    clean = clean_bars()
    clean.loc[clean.index[clean["symbol"] == OTHER][5], "volume"] = 0.0
    write_raw_frame(lake, clean)
    warned = validate_chunk(lake, chunk_ref(clean, *FEB_2024), Settings(), today=dt.date(2024, 6, 3))
    bad = corrupted_import(clean_bars())
    write_raw_frame(lake, bad.frame)
    failed = validate_chunk(lake, chunk_ref(bad.frame, *FEB_2024), Settings(), today=dt.date(2024, 6, 3))
    docs = Path(lake.paths.data_docs_dir())
    (docs / "kline-check.html").write_text(HARNESS)
    server = DocsServer(lake.root, port=0).start()
    try:
        yield {"lake": lake, "docs": docs, "warned": warned, "failed": failed, "server": server,
               "harness": f"{server.url}/validation/docs/kline-check.html"}
    finally:
        server.close()


def _path(site, page: str) -> str:
    return "/" + str(Path(page).relative_to(site["lake"].root))


def test_index_lists_the_runs_styled_with_no_request_leaving_the_machine(chromium, site, tmp_path):
    seen, external = inspect_page(chromium, site["harness"], "/validation/docs/index.html", tmp_path)
    assert external == []
    assert seen["runs"] == 4  # two runs, each a critical and a warning suite
    assert seen["stylesheets"] == seen["styled"] == 6 and seen["scripts"]
    assert seen["images"] == seen["decoded"] >= 1
    assert "Font Awesome 6 Free" in seen["fonts"]
    assert "../../reports/index.html" in seen["links"]


def test_validation_pages_say_failed_only_for_critical_failures(chromium, site, tmp_path):
    expected = [(site["warned"], "critical", "Succeeded"), (site["warned"], "warning", "Failed"),
                (site["failed"], "critical", "Failed")]
    for i, (run, severity, status) in enumerate(expected):
        seen, external = inspect_page(chromium, site["harness"], _path(site, run["docs_pages"][severity]),
                                      tmp_path / str(i))
        assert external == [], severity
        assert seen["status"] == status, (severity, seen)
        assert seen["stylesheets"] == seen["styled"] == 6 and seen["scripts"]
        assert seen["images"] == seen["decoded"] >= 1
        assert any(h.endswith("reports/2024-02-29/report.html") for h in seen["links"])


def test_the_counter_sees_a_page_that_loads_from_a_cdn(chromium, site, tmp_path):
    # The same page with GX's original jQuery tag: the request is counted (and fails offline).
    page = Path(site["warned"]["docs_pages"]["critical"])
    cdn = page.with_name("cdn-copy.html")
    cdn.write_text(page.read_text().replace(
        'src="../../../../static/vendor/jquery-3.7.1/jquery.min.js"', 'src="https://code.jquery.com/jquery-3.7.1.min.js"'))
    seen, external = inspect_page(chromium, site["harness"], _path(site, str(cdn)), tmp_path)
    assert external == ["https://code.jquery.com/jquery-3.7.1.min.js"]
    assert not seen["scripts"]
