"""Browser test of the offline docs site (tools/build_docs.py).

Builds the site into a temp dir, serves it on 127.0.0.1 (random port), opens it
in headless Chromium with Playwright, and checks:

* the home page renders (title from index.ipynb, material styling, chapter nav);
* a chapter with a plot renders: highlighted Python code and a matplotlib PNG that loaded;
* widgets saved in a notebook (if any) are rendered by the local html-manager;
* the browser made no request to anything but the local server, got no 4xx/5xx, and no
  page raised a JavaScript error; no built page mentions a CDN.

Screenshots: tests/artifacts/docs_home.png and tests/artifacts/docs_chapter.png.

Needs the Debian `chromium` package (Playwright's own browser download is not used).
Env: SLIMLAB_DOCS_ROOT=<dir> builds another project root (with settings.ini and nbs/).
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
CDN = re.compile(r"(?:https?:)?//[\w.-]*(?:unpkg\.com|jsdelivr\.net|cdnjs\.cloudflare\.com|googleapis\.com|"
                 r"gstatic\.com|cdn\.[\w.-]+)", re.I)
TIMEOUT_MS = 30_000


def _chromium() -> str:
    for cand in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    pytest.fail("Chromium not found: the docs browser test needs the Debian `chromium` package "
                "(run the `make test` setup, e.g. `apt-get install -y chromium`), or set CHROMIUM=/path/to/chrome")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    cmd = [sys.executable, str(ROOT / "tools" / "build_docs.py"), "--out", str(tmp / "site"),
           "--build-dir", str(tmp / "build")]
    if os.environ.get("SLIMLAB_DOCS_ROOT"):
        cmd += ["--root", os.environ["SLIMLAB_DOCS_ROOT"]]
    res = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    print(res.stdout)
    assert res.returncode == 0, f"tools/build_docs.py failed:\n{res.stdout[-6000:]}"
    out = tmp / "site"
    assert (out / "index.html").exists()
    return out


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, name="docs-http", daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Recorder:
    "Everything the page asked for; non-local requests are recorded and aborted (the site must work offline)."

    def __init__(self, context, base: str):
        self.base, self.remote, self.failed, self.errors = base, [], [], []
        host = urlparse(base).netloc
        context.route("**/*", lambda route: self._route(route, host))
        context.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))

    def _route(self, route, host):
        url = route.request.url
        u = urlparse(url)
        if u.scheme in ("data", "blob", "about") or (u.scheme in ("http", "https") and u.netloc == host):
            return route.continue_()
        self.remote.append(url)
        return route.abort()

    def watch(self, page):
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page

    def check(self):
        assert not self.remote, f"requests to non-local hosts (the docs must work offline): {self.remote}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.errors, f"JavaScript errors: {self.errors}"


@pytest.fixture
def ctx(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    rec = Recorder(context, server)
    try:
        yield context, rec
    finally:
        context.close()


def _page_title(site: Path, page: str) -> str:
    "Title cell (`# Title`) of the notebook a page was built from (include_source copies it into the site)."
    src = (site / page).with_suffix(".ipynb")
    if not src.exists() and page == "index.html":  # no nbs/index.ipynb: build_docs writes a home page
        import configparser
        cp = configparser.ConfigParser(interpolation=None)
        cp.read(Path(os.environ.get("SLIMLAB_DOCS_ROOT", ROOT)) / "settings.ini")
        return cp["DEFAULT"].get("title") or cp["DEFAULT"]["lib_name"]
    nb = json.loads(src.read_text(encoding="utf-8"))
    first = "".join(nb["cells"][0]["source"])
    m = re.match(r"#\s+(.+)", first)
    assert m, f"{page}: first cell is not a `# Title` cell: {first[:80]!r}"
    return m[1].strip()


def _chapters(site: Path) -> list[str]:
    "Notebook pages other than the home page, in name order."
    return sorted(p.with_suffix(".html").name for p in site.glob("*.ipynb") if p.stem != "index")


def _goto(page, url):
    page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)


def test_no_cdn_in_built_html(site):
    bad = {}
    for f in site.rglob("*.html"):
        hits = sorted(set(CDN.findall(f.read_text(encoding="utf-8"))))
        if hits:
            bad[str(f.relative_to(site))] = hits
    assert not bad, f"CDN URLs in the built site: {bad}"
    vendor = site / "assets" / "vendor"
    for js in ("require.js", "jupyter-widgets/embed-amd.js", "mathjax/tex-svg.js"):
        assert (vendor / js).stat().st_size > 10_000, f"local {js} missing from the site"


def test_home_page(site, server, ctx):
    context, rec = ctx
    page = rec.watch(context.new_page())
    _goto(page, f"{server}/index.html")
    title = _page_title(site, "index.html")
    h1 = page.locator("article h1").first
    h1.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert title in h1.inner_text()
    assert page.locator("header.md-header").is_visible(), "material header missing (theme CSS/JS not loaded?)"
    # material CSS applied: the header has a background colour
    bg = page.eval_on_selector("header.md-header", "e => getComputedStyle(e).backgroundColor")
    assert bg not in ("", "rgba(0, 0, 0, 0)", "transparent"), f"header not styled: {bg}"
    nav = page.locator("nav.md-nav--primary a.md-nav__link").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    for ch in _chapters(site):
        assert any(h and h.split("#")[0].endswith(ch) for h in nav), f"{ch} not in the navigation: {nav}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs_home.png"))
    rec.check()


def test_chapter_with_plot(site, server, ctx):
    context, rec = ctx
    chapters = [c for c in _chapters(site) if 'class="jp-RenderedImage' in (site / c).read_text(encoding="utf-8")]
    assert chapters, f"no chapter page has an image output (pages: {_chapters(site)})"
    chapter = chapters[0]
    page = rec.watch(context.new_page())
    _goto(page, f"{server}/{chapter}")

    assert _page_title(site, chapter) in page.locator("article .jupyter-wrapper h1").first.inner_text()
    code = page.locator(".jupyter-wrapper .jp-CodeCell .highlight-ipynb pre").first
    code.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert code.inner_text().strip(), "empty code block"
    n_tokens = page.locator(".jupyter-wrapper .highlight-ipynb pre span").count()
    assert n_tokens > 0, "code is not syntax highlighted"
    color = page.eval_on_selector(".jupyter-wrapper .highlight-ipynb pre span[class]",
                                  "e => getComputedStyle(e).color")
    assert color, "no colour on highlighted tokens"
    assert "#|" not in page.locator(".jupyter-wrapper").inner_text(), "cell directives (#|) shown in the page"

    img = page.locator(".jupyter-wrapper .jp-RenderedImage img").first
    img.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
    page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=img.element_handle(), timeout=TIMEOUT_MS)
    w = img.evaluate("e => [e.naturalWidth, e.naturalHeight, e.getBoundingClientRect().width]")
    assert w[0] > 50 and w[1] > 50 and w[2] > 50, f"plot did not render: {w}"
    page.wait_for_timeout(500)  # let material's header title transition (after the scroll) finish
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs_chapter.png"))
    rec.check()


def test_saved_widgets_render(site, server, ctx):
    "Widget views with saved state are rendered by the local @jupyter-widgets/html-manager."
    pages = [p.name for p in sorted(site.glob("*.html"))
             if '<script type="application/vnd.jupyter.widget-view+json">' in p.read_text(encoding="utf-8")]
    if not pages:
        pytest.skip("no notebook has saved widget state")
    context, rec = ctx
    for name in pages:
        page = rec.watch(context.new_page())
        _goto(page, f"{server}/{name}")
        n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        page.wait_for_function(
            "n => document.querySelectorAll('.widget-subarea > *').length >= n", arg=n_views, timeout=TIMEOUT_MS)
        # rendered = widget DOM created (a saved widget may be hidden on purpose, e.g. a finished tqdm bar)
        assert page.locator(".widget-subarea .jupyter-widgets").count() >= n_views, f"{name}: widgets not rendered"
        page.close()
    rec.check()
