"""Make the Great Expectations Data Docs work offline and link them to kline's reports.

GX's site builder writes pages that load Bootstrap, jQuery, bootstrap-table, Font Awesome,
Vega and a logo from public CDNs. ``localize_site`` copies the vendored copies of those files
(``kline/docs_assets``, from the npm registry, with their licences) into the site's
``static/vendor/`` and rewrites the pages just built to reference them by relative path, so
a page opens styled and working from the file system or from ``kline docs`` without internet.
Only the pages named are rewritten (plus the index and the shared stylesheet): the cost of a
build does not grow with the number of past runs.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

ASSETS_DIR = Path(__file__).with_name("docs_assets")
VENDOR = "static/vendor"  # inside the Data Docs site

# Every external URL GX 1.24's templates reference -> the vendored file (under VENDOR).
CDN_MAP: dict[str, str] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}
# GX's navbar logo (and its dark-mode background) come from GX's S3 bucket; the site's own
# static/images holds the same logo.
_GX_IMAGES = re.compile(r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/[\w.-]+(\?[^\"')\s]*)?")
_LOGO = "static/images/logo-long.png"
_FAVICON = re.compile(r'(<link rel="shortcut icon" href=")[^"]*(")')
# Integrity hashes name the CDN's bytes; the local copies are the same files but an
# attribute left over from a CDN tag is noise, and crossorigin on a same-origin file is moot.
_SRI = re.compile(r'\s+(integrity="[^"]*"|crossorigin="[^"]*")')
# Any URL the browser would fetch by itself: src/href of script, link, img; CSS url(...).
LOADED_URL = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=[\"'](https?:)?//[^\"']+[\"']|url\(\s*[\"']?(https?:)?//",
                        re.IGNORECASE)

KLINE_NAV_MARK = "<!-- kline-nav -->"


class ExternalAssetError(RuntimeError):
    """A Data Docs page still references a file outside the site (GX changed its templates)."""


def vendor_fingerprint() -> str:
    """Short content hash of the vendored assets (decides whether a site's copy is current)."""
    h = hashlib.sha256()
    for p in sorted(ASSETS_DIR.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(ASSETS_DIR).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def install_vendor_assets(site_dir: str) -> str:
    """Copy the vendored assets into ``<site_dir>/static/vendor`` unless an identical copy is
    there (a ``.fingerprint`` file says which); returns the folder."""
    target = Path(site_dir) / VENDOR
    stamp = target / ".fingerprint"
    fp = vendor_fingerprint()
    if stamp.is_file() and stamp.read_text().strip() == fp:
        return str(target)
    tmp = target.with_name(f".vendor-tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ASSETS_DIR, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (tmp / ".fingerprint").write_text(fp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return str(target)


def _root_prefix(site_dir: str, page: str) -> str:
    """Relative URL prefix from ``page`` to the site root ("" for the index, "../../" ...)."""
    rel = os.path.relpath(os.path.dirname(os.path.abspath(page)), os.path.abspath(site_dir))
    depth = 0 if rel == "." else len(Path(rel).parts)
    return "../" * depth


def localize_html(html: str, root_prefix: str) -> str:
    """``html`` with every CDN reference replaced by ``root_prefix + static/vendor/...`` and
    GX's remote logo by the site's own; raises ExternalAssetError if one is left."""
    for url, local in CDN_MAP.items():
        html = html.replace(f'"{url}"', f'"{root_prefix}{VENDOR}/{local}"')
    html = _GX_IMAGES.sub(root_prefix + _LOGO, html)
    # GX 1.24 puts validation pages' favicon one folder too high (outside the site).
    html = _FAVICON.sub(lambda m: m.group(1) + root_prefix + "static/images/favicon.ico" + m.group(2), html)
    html = re.sub(r"<(script|link)\b[^>]*>", lambda m: _SRI.sub("", m.group(0)), html)
    left = LOADED_URL.search(html)
    if left:
        raise ExternalAssetError(f"Data Docs page still loads an external file: {left.group(0)[:200]}")
    return html


def add_navigation(html: str, links: Mapping[str, str]) -> str:
    """``html`` with a line of links (label -> relative URL) under the GX navbar; replaces the
    line an earlier call added."""
    import html as html_lib

    html = re.sub(re.escape(KLINE_NAV_MARK) + r".*?" + re.escape(KLINE_NAV_MARK), "", html, flags=re.S)
    if not links:
        return html
    items = " · ".join(f'<a href="{html_lib.escape(url)}">{html_lib.escape(label)}</a>' for label, url in links.items())
    bar = (f'{KLINE_NAV_MARK}<div class="container-fluid pl-5 pr-5 pt-2 small" id="kline-nav">'
           f"{items}</div>{KLINE_NAV_MARK}")
    m = re.search(r"</nav>\s*</div>\s*</nav>", html)  # the end of GX's top navbar
    if m:
        return html[: m.end()] + bar + html[m.end():]
    return re.sub(r"(<body[^>]*>)", lambda b: b.group(1) + bar, html, count=1)


def localize_site(site_dir: str, pages: Iterable[str], nav: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Install the vendored assets into ``site_dir`` and rewrite ``pages`` (paths of HTML files
    in the site), the index and the shared stylesheet to use them. ``nav`` maps a page path to
    extra links (label -> URL relative to that page). Returns the files rewritten."""
    install_vendor_assets(site_dir)
    nav = nav or {}

    def page(path: str, text: str) -> str:
        text = localize_html(text, _root_prefix(site_dir, path))
        return add_navigation(text, nav[path]) if path in nav else text

    edits: dict[str, Callable[[str, str], str]] = {p: page for p in [*pages, os.path.join(site_dir, "index.html")]}
    css = os.path.join(site_dir, "static", "styles", "data_docs_default_styles.css")
    edits[css] = lambda _, text: _GX_IMAGES.sub("../images/logo-long.png", text)
    return [path for path, edit in edits.items() if _rewrite(path, edit)]


def relative_url(from_dir: str, to_path: str) -> str:
    """URL of ``to_path`` relative to the folder ``from_dir`` (both local paths)."""
    rel = os.path.relpath(os.path.abspath(to_path), os.path.abspath(from_dir))
    return posixpath.join(*Path(rel).parts)


def _rewrite(path: str, edit: Callable[[str, str], str]) -> bool:
    """Replace the text file ``path`` (if there is one) by ``edit(path, text)``, atomically and
    only if that changes it; True if it did."""
    if not os.path.isfile(path):
        return False
    text = Path(path).read_text(encoding="utf-8")
    new = edit(path, text)
    if new != text:
        tmp = f"{path}.tmp-{os.getpid()}"
        Path(tmp).write_text(new, encoding="utf-8")
        os.replace(tmp, path)
    return new != text


class MirroredDocs:
    """Data Docs of an object-store lake. GX writes its results and site on local disk only,
    so they are built in a local mirror of the lake's layout (``local(path)`` maps a lake path
    into it, relative links stay right) and ``synced`` shares them through the bucket: under
    the lake's Data Docs lock it fetches the GX results other machines stored there (the index
    lists every run, wherever it was validated), lets the build run, then uploads this
    machine's new results and every site file the build wrote or changed, one whole object
    each (a reader sees an old page or the new one, never a part).

    ``fs`` is the lake's fsspec filesystem, ``root`` the lake root URL, ``folders`` the lake
    paths to mirror (the GX results and the site)."""

    def __init__(self, fs, root: str, folders: Iterable[str], local_root: str | None = None) -> None:
        import tempfile

        self.fs, self.root = fs, root.rstrip("/")
        self.folders = [f.rstrip("/") for f in folders]
        name = "kline-docs-" + hashlib.sha256(self.root.encode()).hexdigest()[:12]
        self.local_root = local_root or os.path.join(tempfile.gettempdir(), name)

    def local(self, path: str) -> str:
        """The mirror's path of the lake path ``path``."""
        if not path.startswith(self.root + "/"):
            raise ValueError(f"{path} is not inside the lake {self.root}")
        return os.path.join(self.local_root, *path[len(self.root) + 1:].split("/"))

    def remote(self, local_path: str) -> str:
        """The lake path of a mirror path (inverse of ``local``)."""
        rel = os.path.relpath(os.path.abspath(local_path), os.path.abspath(self.local_root))
        return f"{self.root}/{Path(rel).as_posix()}"

    def _local_files(self) -> dict[str, tuple[int, int]]:
        out = {}
        for folder in self.folders:
            base = Path(self.local(folder))
            if base.is_dir():
                out.update({str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in base.rglob("*")
                            if p.is_file() and ".tmp-" not in p.name and not p.name.startswith(".vendor-tmp")})
        return out

    def pull(self) -> int:
        """Fetch the mirrored folders' objects this mirror lacks; returns how many. Records
        which objects the bucket holds (``push`` sends the others too)."""
        n = 0
        self._remote: set[str] = set()
        prefix = self.fs._strip_protocol(self.root)
        for folder in self.folders:
            remote = self.fs._strip_protocol(folder)
            for key in self.fs.find(remote) if self.fs.exists(remote) else []:
                if ".tmp-" in key or key.endswith(".lock"):
                    continue
                target = self.local(f"{self.root}/{key[len(prefix) + 1:]}")
                self._remote.add(target)
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    tmp = f"{target}.tmp-{os.getpid()}"
                    Path(tmp).write_bytes(self.fs.cat_file(key))
                    os.replace(tmp, target)
                    n += 1
        return n

    def push(self, before: Mapping[str, tuple[int, int]]) -> list[str]:
        """Upload the mirror's files that are new or changed since ``before`` (a
        ``_local_files`` snapshot) or that the bucket lacked at ``pull``; returns their lake
        paths."""
        sent = []
        remote = getattr(self, "_remote", set())
        for path, stamp in sorted(self._local_files().items()):
            if before.get(path) != stamp or path not in remote:
                url = self.remote(path)
                self.fs.pipe_file(self.fs._strip_protocol(url), Path(path).read_bytes())
                sent.append(url)
        return sent

    def synced(self, lock):
        """A context manager for the Data Docs build: holds ``lock`` (the lake's), pulls
        before and pushes after."""
        import contextlib

        @contextlib.contextmanager
        def run():
            with lock:
                self.pull()
                before = self._local_files()
                yield
                self.push(before)

        return run()
