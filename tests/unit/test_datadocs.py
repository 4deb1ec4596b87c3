"""Offline Data Docs: the vendored assets and the page rewriting (no GX run here)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from kline.datadocs import (
    ASSETS_DIR,
    CDN_MAP,
    LOADED_URL,
    ExternalAssetError,
    add_navigation,
    install_vendor_assets,
    localize_html,
    localize_site,
)

GX_TEMPLATES = Path(str(importlib.resources.files("great_expectations"))) / "render" / "view" / "templates"


def test_every_cdn_file_of_the_installed_gx_templates_is_vendored():
    # The URLs GX's templates load today; a GX upgrade that adds one fails here, not offline.
    text = "".join(p.read_text() for p in GX_TEMPLATES.glob("*.j2"))
    loaded = {m.group(0) for m in LOADED_URL.finditer(text)}
    assert loaded, "the pattern finds GX's CDN tags"
    for tag in loaded:
        assert any(url in tag for url in CDN_MAP) or "great-expectations-web-assets" in tag, tag
    for local in CDN_MAP.values():
        assert (ASSETS_DIR / local).is_file(), local


def test_every_vendored_package_ships_its_licence():
    for folder in (p for p in ASSETS_DIR.iterdir() if p.is_dir()):
        assert list(folder.glob("LICENSE*")), folder.name
        assert folder.name in (ASSETS_DIR / "README.md").read_text()


def test_localize_points_every_cdn_tag_at_the_local_copy():
    page = ('<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
            '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
            '<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" '
            'integrity="sha384-x" crossorigin="anonymous"></script>'
            '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
            "<style>a{background:url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png')}</style>"
            '<a href="https://greatexpectations.io">a link is not a load</a>')
    out = localize_html(page, "../../")
    assert 'href="../../static/vendor/bootstrap-4.3.1/css/bootstrap.min.css"' in out
    assert 'src="../../static/vendor/jquery-3.7.1/jquery.min.js"' in out
    assert 'src="../../static/vendor/popper.js-1.12.9/popper.min.js"></script>' in out
    assert 'src="../../static/images/logo-long.png"' in out and "url('../../static/images/logo-long.png')" in out
    assert LOADED_URL.search(out) is None and 'href="https://greatexpectations.io"' in out


def test_an_unknown_external_file_is_refused():
    with pytest.raises(ExternalAssetError, match="cdn.example.com"):
        localize_html('<script src="https://cdn.example.com/new.js"></script>', "")
    with pytest.raises(ExternalAssetError):
        localize_html('<link rel="stylesheet" href="//cdn.example.com/x.css">', "")


def test_navigation_is_added_once(tmp_path):
    page = "<body><nav><div><nav>brand</nav></div></nav><p>x</p></body>"
    once = add_navigation(page, {"report": "../r.html"})
    assert add_navigation(once, {"report": "../r.html"}) == once
    assert once.count('href="../r.html"') == 1 and once.index("kline-nav") > once.index("brand")


def test_site_install_is_idempotent_and_rewrites_only_named_pages(tmp_path):
    site = tmp_path / "docs"
    (site / "validations" / "a").mkdir(parents=True)
    gx = '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
    (site / "index.html").write_text(gx)
    (site / "validations" / "a" / "new.html").write_text(gx)
    (site / "validations" / "a" / "old.html").write_text("already rewritten")
    done = localize_site(str(site), [str(site / "validations" / "a" / "new.html")])
    assert sorted(Path(p).name for p in done) == ["index.html", "new.html"]
    assert 'src="../../static/vendor/jquery-3.7.1/jquery.min.js"' in (site / "validations/a/new.html").read_text()
    assert 'src="static/vendor/jquery-3.7.1/jquery.min.js"' in (site / "index.html").read_text()
    vendored = site / "static" / "vendor" / "jquery-3.7.1" / "jquery.min.js"
    assert vendored.read_bytes() == (ASSETS_DIR / "jquery-3.7.1" / "jquery.min.js").read_bytes()
    mtime = vendored.stat().st_mtime_ns
    install_vendor_assets(str(site))
    assert vendored.stat().st_mtime_ns == mtime  # current copy: not copied again
