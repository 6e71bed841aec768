"""MkDocs hooks for the offline slimlab docs site (listed under `hooks:` in mkdocs.yml).

mkdocs-jupyter renders notebooks with nbconvert templates that point at CDNs
(unpkg for the widget renderer, cdnjs for MathJax and mermaid). This module:

* replaces the `@SITE_ROOT@` placeholder (set in mkdocs.yml) with the page's relative
  path to the site root, so local assets work over http:// and file://;
* points the widget renderer at the local copy of `@jupyter-widgets/html-manager`;
* removes nbconvert's mermaid loader (it imports mermaid from cdnjs);
* adds a "download notebook" button to notebook pages;
* logs a warning for every remaining remote asset. `mkdocs build --strict` turns
  warnings into a failed build, so an online-only page can't get into the site unnoticed.
"""
from __future__ import annotations

import logging
import posixpath
import re

log = logging.getLogger("mkdocs.hooks.slimlab_offline")

PLACEHOLDER = "@SITE_ROOT@"
WIDGET_JS = "assets/vendor/jupyter-widgets/embed-amd.js"

# nbconvert's jupyter_widgets macro: html-manager (current state format) and the old
# jupyter-js-widgets fallback. Both are replaced with the local html-manager.
_WIDGET_CDN = re.compile(
    r"""(?P<q>['"])(?:https?:)?//(?:unpkg\.com|cdn\.jsdelivr\.net/npm)/"""
    r"""@jupyter-(?:widgets/html-manager|js-widgets)@[^'"]*?/dist/embed(?:-amd)?\.js(?P=q)"""
)
# nbconvert's mermaid loader: a module script that imports mermaid from cdnjs.
_MERMAID_LOADER = re.compile(
    r"<script type=\"module\">(?:(?!</script>).)*?cdnjs\.cloudflare\.com/ajax/libs/mermaid"
    r"(?:(?!</script>).)*</script>",
    re.S,
)
# Known CDN/font hosts: any mention of them in a page is an error.
_CDN_HOSTS = re.compile(
    r"(?:https?:)?//(?:[\w.-]*\.)?(?:unpkg\.com|jsdelivr\.net|cdnjs\.cloudflare\.com|"
    r"googleapis\.com|gstatic\.com|polyfill\.io|code\.jquery\.com|cdn\.[\w.-]+)[^\s'\"<>)]*",
    re.I,
)
# Tags that make the browser fetch something by itself (links <a href> are fine).
_REMOTE_ASSET = re.compile(
    r"<(?P<tag>script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"
    r"\b(?:src|href|data)\s*=\s*[\"']?(?P<url>(?:https?:)?//[^\s\"'>]+)",
    re.I,
)

_NAV_LINK = re.compile(r"""\brel\s*=\s*["']?(?:canonical|alternate|author|license|me|next|prev)\b""", re.I)

_DOWNLOAD_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path d="M5 20h14v-2H5m14-9h-4V3H9v6H5l7 7 7-7z"/></svg>'
)


def _root_prefix(page) -> str:
    "Relative path from `page` to the site root ('.', '..', '../..')."
    depth = page.file.dest_uri.count("/")
    return posixpath.join(*[".."] * depth) if depth else "."


_LOCAL_REF = re.compile(
    r"<(?P<tag>script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*\"(?P<url>[^\"#?:]+)(?:[#?][^\"]*)?\"",
    re.I,
)
_site_files: set = set()


def on_files(files, config):
    _site_files.clear()
    _site_files.update(f.dest_uri for f in files)
    return files


def on_page_content(html, page, config, files):
    src = page.file.src_uri
    if src.endswith(".ipynb"):
        name = posixpath.basename(src)
        html = (
            f'<a class="md-content__button md-icon slimlab-nb-download" href="{name}" download '
            f'title="Download {name}">{_DOWNLOAD_SVG}</a>\n' + html
        )
    return html


def on_post_page(output, page, config):
    root = _root_prefix(page)
    output = output.replace(PLACEHOLDER, root)
    output = _WIDGET_CDN.sub(lambda m: f"{m['q']}{root}/{WIDGET_JS}{m['q']}", output)
    output = _MERMAID_LOADER.sub("", output)
    where = page.file.src_uri
    here = posixpath.dirname(page.file.dest_uri)
    for m in _LOCAL_REF.finditer(output):
        target = posixpath.normpath(posixpath.join(here, m["url"]))
        if _site_files and target not in _site_files and not m["url"].startswith("/"):
            log.warning("%s: <%s> points at %s, which is not in the site", where, m["tag"], m["url"])
    for m in _CDN_HOSTS.finditer(output):
        log.warning("%s: CDN/remote URL left in the page (the docs must work offline): %s", where, m[0])
    for m in _REMOTE_ASSET.finditer(output):
        if m["tag"].lower() == "link" and _NAV_LINK.search(m[0]):
            continue  # <link rel="canonical"> etc. are not fetched
        if not _CDN_HOSTS.match(m["url"]):
            log.warning("%s: <%s> loads a remote asset (the docs must work offline): %s", where, m["tag"], m["url"])
    return output
