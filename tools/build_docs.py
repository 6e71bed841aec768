#!/usr/bin/env python
"""Build the offline slimlab docs site without Quarto.

    python tools/build_docs.py [--out _site] [--force] [--no-strict] [--exact-nbdev]

Steps (each one prints a line with its time):

1. nbdev's `proc_nbs` (what `nbdev_proc_nbs` runs, minus its Quarto set-up) writes the
   processed notebooks (nbdev's doc processors: show_doc, hidden cells, front matter, links,
   ...) to `_proc/` at the repo root. One change: cells that mix imports with other code
   are not re-executed (only their imports run), so the pages show the outputs saved in the
   notebooks -- see `_safe_filter_defaults`. `--exact-nbdev` runs `nbdev_proc_nbs` as is.
2. Those are turned into plain nbformat-v4 notebooks in `docs_build/docs/`: the YAML
   front matter becomes a `# Title` cell plus a description, and Quarto cell options are
   applied (`echo: false` hides the code, `output: false` drops the outputs,
   `include: false` and `hide` drop the cell). Directive lines (`#| ...`) are removed from
   the code that is shown. Each notebook is checked with `nbformat.validate`.
3. The widget JS (`@jupyter-widgets/html-manager`, `requirejs`) and MathJax come from
   npm (`tools/package.json`; `npm ci` runs when `tools/node_modules` is missing or out
   of date) and are copied into the site. Nothing is loaded from a CDN.
4. `mkdocs build --strict` (material + mkdocs-jupyter, `execute: false`) builds the site
   from `docs_build/mkdocs.yml`, which is the repo-root `mkdocs.yml` plus a nav worked
   out from the notebooks: home page first (index.ipynb), then the chapters in numeric
   order. Notebooks whose name starts with `_` or `.` are skipped.

Importable too: `build_docs.build(out=...)` returns the site directory.
"""
from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
ASSETS_SRC = ROOT / "docs_assets"

# Vendored JS: (package dir in node_modules, files or globs, destination under assets/vendor)
VENDOR = [
    ("requirejs", ["require.js"], "."),
    ("@jupyter-widgets/html-manager/dist", ["embed-amd.js", "*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg"],
     "jupyter-widgets"),
    ("mathjax", ["LICENSE"], "mathjax"),
    ("mathjax/es5", ["tex-svg.js"], "mathjax"),
    ("mathjax/es5/input/tex/extensions", ["*.js"], "mathjax/input/tex/extensions"),
]
# Non-notebook files from nbs/ that are copied next to the pages (images used in markdown, ...).
STATIC_EXTS = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".pdf", ".mp4", ".webm",
               ".csv", ".txt", ".json"}

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[docs {time.perf_counter() - _T0:6.1f}s] {msg}", flush=True)


class DocsError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- settings

def read_settings(root: Path = ROOT) -> dict:
    ini = root / "settings.ini"
    if not ini.exists():
        raise DocsError(f"{ini} not found: run this from a checkout of the repo")
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ini, encoding="utf-8")
    d = dict(cp["DEFAULT"])
    d.setdefault("nbs_path", "nbs")
    return d


# ----------------------------------------------------------------------------- step 1: nbdev_proc_nbs

_QUARTO_SHIM = """#!/bin/sh
# Stand-in written by tools/build_docs.py: nbdev_proc_nbs only checks that a `quarto`
# command exists (and otherwise tries to install Quarto and `pip install -e .`).
# The docs are built with mkdocs, Quarto is never run.
echo "0.0.0 (slimlab docs shim, Quarto not installed)"
"""


def _find_exe(name: str) -> str:
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise DocsError(f"`{name}` not found (is the dev environment installed? try `make setup`)")
    return found


# Quarto files nbdev_proc_nbs writes into the repo; removed again if they were not there before.
_NBDEV_QUARTO_FILES = ("_quarto.yml", "nbdev.yml", "sidebar.yml", "styles.css")


def _safe_filter_defaults():
    """nbdev's `FilterDefaults` with one change, for docs rendered from the *stored* outputs.

    nbdev's `exec_show_docs` runs, at docs time, every cell that `show_doc` may need: exported
    cells, `show_doc(...)` cells, and any cell that contains an import -- including cells that mix
    imports with real work (nbdev warns "Found cells containing imports and other code"). Those
    get re-executed (loading models, running evals: minutes) and their saved outputs are replaced
    (a saved widget becomes text), or the build fails when they need a variable from a cell that
    is not run. Here such mixed cells only get their top-level import statements run, and keep
    their stored outputs. Exported cells, show_doc cells and import-only cells run as in nbdev.
    """
    import ast
    from nbdev import processors as P

    class exec_show_docs_stored(P.exec_show_docs):
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, "k"):
                return
            fm = getattr(self.nb, "frontmatter_", {})
            if P.str2bool(fm.get("skip_showdoc", False)) or not P._do_eval(cell):
                return
            trees = cell.parsed_()
            needed = cell.directives_.keys() & {"export", "exports", "exporti", "exec_doc"} or P._show_docs(trees)
            imports = [t for t in trees if isinstance(t, (ast.Import, ast.ImportFrom))]
            if needed or len(imports) == len(trees):
                self.k.cell(cell)
            else:  # imports mixed with other code: run the imports only, keep the stored outputs
                self.k.run("\n".join(ast.unparse(t) for t in imports))
            if self.k.exc:
                title = fm.get("title", "")
                raise Exception(f"Error{' in notebook: ' + title if title else ''} in cell {cell.idx_} :\n"
                                f"{cell.source}") from self.k.exc

    class SafeFilterDefaults(P.FilterDefaults):
        def base_procs(self):
            return [exec_show_docs_stored if o is P.exec_show_docs else o for o in super().base_procs()]

    return SafeFilterDefaults


def _nbdev_proc_main(force: bool = False) -> int:
    "Subprocess entry: nbdev's `proc_nbs` (what `nbdev_proc_nbs` runs after its Quarto set-up) with the filter above."
    import nbdev.doclinks
    import nbdev.serve

    cls = globals().get("SafeFilterDefaults") or __getattr__("SafeFilterDefaults")
    nbdev.doclinks._build_modidx()  # as nbdev_proc_nbs: refresh the symbol index used by add_links
    nbdev.serve.FilterDefaults = cls  # the processor class proc_nbs hands (pickled by name) to its workers
    nbdev.serve.proc_nbs(force=force)
    return 0


def __getattr__(name):  # build_docs.SafeFilterDefaults, created on first use (it needs nbdev)
    if name == "SafeFilterDefaults":
        cls = _safe_filter_defaults()
        cls.__qualname__ = cls.__name__ = "SafeFilterDefaults"
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def run_proc_nbs(root: Path, nbs: Path, force: bool = False, exact: bool = False) -> Path:
    """Process the notebooks into `_proc/` with nbdev's doc processors; returns the `_proc` dir.

    Default: nbdev's `proc_nbs` with `SafeFilterDefaults` (see `_safe_filter_defaults`).
    `exact=True`: the `nbdev_proc_nbs` command itself (re-executes cells that mix imports and code)."""
    if exact:
        cmd = [_find_exe("nbdev_proc_nbs")] + (["--force"] if force else [])
    else:
        cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import build_docs; "
                                     f"sys.exit(build_docs._nbdev_proc_main(force={force!r}))"]
    proc = root / "_proc"
    # nbdev only reprocesses a notebook whose mtime is newer than the last run; a notebook replaced by
    # a file with an older mtime (mv, cp -p, tar, ...) would keep a stale page. So compare contents:
    # drop the _proc copy of every notebook whose hash changed since the last build.
    manifest_path = proc / ".build_docs_hashes.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    mode = "nbdev_proc_nbs" if exact else "stored-outputs"
    if manifest.pop("//mode", None) != mode:  # other processing mode: redo everything
        manifest = {}
    hashes = {"//mode": mode}
    for rel in find_notebooks(nbs):
        key = rel.as_posix()
        hashes[key] = hashlib.sha256((nbs / rel).read_bytes()).hexdigest()
        if manifest.get(key) != hashes[key] and (proc / rel).exists():
            (proc / rel).unlink()
    quarto_files = [nbs / n for n in _NBDEV_QUARTO_FILES] + [root / "_quarto.yml"]
    new_files = [f for f in quarto_files if not (f.exists() or f.is_symlink())]
    env = dict(os.environ)
    if not exact:  # those cells are no longer executed, so nbdev's warning about them is noise here
        env["PYTHONWARNINGS"] = "ignore:Found cells containing imports and other code"
    with tempfile.TemporaryDirectory(prefix="slimlab-docs-") as tmp:
        if not shutil.which("quarto", path=env.get("PATH")):
            shim = Path(tmp) / "quarto"
            shim.write_text(_QUARTO_SHIM)
            shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            env["PATH"] = f"{tmp}{os.pathsep}{env.get('PATH', '')}"
        try:
            res = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        finally:
            for f in new_files:  # Quarto config that only Quarto would read: don't leave it in the checkout
                if f.is_symlink() or f.is_file():
                    f.unlink()
    out = res.stdout.strip()
    if res.returncode != 0:
        raise DocsError(f"nbdev_proc_nbs failed (exit {res.returncode}):\n{out}")
    if out:
        print(out, flush=True)
    if proc.is_dir():
        manifest_path.write_text(json.dumps(hashes, indent=1, sort_keys=True), encoding="utf-8")
    return proc


# ----------------------------------------------------------------------------- step 2: _proc -> nbformat v4

_DIRECTIVE = re.compile(r"^\s*#\s*\|\s?(.*)$")
_NUM_PREFIX = re.compile(r"^(\d+)[_-]")
_FM_WARNING = re.compile(r"^\s*<!--\s*WARNING: THIS FILE WAS AUTOGENERATED!.*?-->\s*$", re.S)
_CALLOUT_OPEN = re.compile(r"^\s*(:{3,})\s*\{\s*\.callout-(\w+)([^}]*)\}\s*$")
_DIV_OPEN = re.compile(r"^\s*(:{3,})\s*(\{[^}]*\}|[\w-]+)?\s*$")
_CALLOUT_KIND = {"note": "note", "tip": "tip", "warning": "warning", "caution": "warning",
                 "important": "danger"}

# nbformat 4.5 keys, per level; everything else (nbdev's has_sd, idx_, ...) is dropped.
_CELL_KEYS = {"code": {"id", "cell_type", "metadata", "execution_count", "source", "outputs"},
              "markdown": {"id", "cell_type", "metadata", "source", "attachments"},
              "raw": {"id", "cell_type", "metadata", "source", "attachments"}}
_OUT_KEYS = {"execute_result": {"output_type", "execution_count", "data", "metadata"},
             "display_data": {"output_type", "data", "metadata"},
             "stream": {"output_type", "name", "text"},
             "error": {"output_type", "ename", "evalue", "traceback"}}
_NB_META_KEYS = {"kernelspec", "language_info", "widgets", "authors", "title"}
_CELL_META_DROP = {"execution", "language", "hidden", "ExecuteTime"}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _src(x) -> str:
    return "".join(x) if isinstance(x, list) else (x or "")


def parse_front_matter(text: str) -> dict | None:
    "YAML front matter (`---` ... `---`) from a raw cell, or None."
    s = text.strip()
    if not (s.startswith("---") and s.count("---") >= 2):
        return None
    body = s[3:].rsplit("---", 1)[0]
    try:
        import yaml
        d = yaml.safe_load(body)
    except Exception:
        d = None
    if not isinstance(d, dict):  # fall back to `key: value` lines
        d = {}
        for line in body.splitlines():
            k, sep, v = line.partition(":")
            if sep and k.strip():
                d[k.strip()] = v.strip().strip("'\"")
    return d


def split_directives(source: str) -> tuple[dict, str]:
    "Leading `#| key: value` / `#| key` lines of a code cell -> ({key: value}, remaining code)."
    lines = source.splitlines(keepends=True)
    dirs, i = {}, 0
    while i < len(lines):
        line = lines[i]
        m = _DIRECTIVE.match(line)
        if m:
            body = m[1].strip()
            if ":" in body:
                k, _, v = body.partition(":")
            else:
                k, _, v = body.partition(" ")
            k = k.strip().lower()
            if k:
                dirs[k] = v.strip().lower()
        elif line.strip():
            break
        i += 1
    return dirs, "".join(lines[i:]).rstrip("\n")


def _false(v) -> bool:
    return str(v).strip().lower() in {"false", "no", "0"}


def convert_callouts(md: str) -> str:
    "Quarto `::: {.callout-note}` blocks -> material admonitions; other fenced divs -> plain content."
    out, stack = [], []
    for line in md.splitlines():
        m = _CALLOUT_OPEN.match(line)
        if m:
            kind = m[2].lower()
            title = re.search(r'title\s*=\s*"([^"]*)"', m[3] or "")
            stack.append("callout")
            out += [f'<div class="admonition {_CALLOUT_KIND.get(kind, "note")}" markdown="1">',
                    f'<p class="admonition-title">{title[1] if title else kind.capitalize()}</p>', ""]
            continue
        if stack and re.match(r"^\s*:{3,}\s*$", line):
            if stack.pop() == "callout":
                out += ["", "</div>"]
            continue
        m = _DIV_OPEN.match(line)
        if m and m[2]:
            stack.append("div")
            continue
        out.append(line)
    while stack:
        if stack.pop() == "callout":
            out += ["", "</div>"]
    return "\n".join(out)


_ATTR_LINK = re.compile(r'(!?)\[([^\]\n]*)\]\(([^)\s]+)(?:\s+"([^"]*)")?\)\{([^}\n]*)\}')
_ATTR = re.compile(r'([.#])([\w-]+)|([\w-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|([^\s"\']+))')
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})", re.M)


def _html_attr(s: str) -> str:
    return _html_escape(s).replace('"', "&quot;")


def _pandoc_attr_links(md: str) -> str:
    "Pandoc/Quarto `[text](url){target=... style=...}` and `![alt](img){width=...}` -> inline HTML."
    def repl(m):
        bang, text, url, title, attrs = m.groups()
        kv, classes, ident = {}, [], None
        for a in _ATTR.finditer(attrs):
            if a[1] == ".":
                classes.append(a[2])
            elif a[1] == "#":
                ident = a[2]
            else:
                kv[a[3]] = next(v for v in (a[4], a[5], a[6]) if v is not None)
        if classes:
            kv["class"] = " ".join(classes)
        if ident:
            kv["id"] = ident
        if title:
            kv["title"] = title
        extra = "".join(f' {k}="{_html_attr(v)}"' for k, v in kv.items())
        if bang:
            return f'<img src="{_html_attr(url)}" alt="{_html_attr(text)}"{extra}>'
        return f'<a href="{_html_attr(url)}"{extra}>{text}</a>'

    # leave fenced code blocks alone
    parts, pos, fence = [], 0, None
    for m in _FENCE.finditer(md):
        if fence is None:
            parts.append(_ATTR_LINK.sub(repl, md[pos:m.start()]))
            pos, fence = m.start(), m[2][0] * 3
        elif m[2].startswith(fence):
            parts.append(md[pos:m.end()])
            pos, fence = m.end(), None
    parts.append(md[pos:] if fence else _ATTR_LINK.sub(repl, md[pos:]))
    return "".join(parts)


_NB_LINK = re.compile(r"""(?P<pre>\]\(\s*<?|href=["'])(?P<path>[^)"'\s#<>]+\.ipynb)(?=[#)"'\s>])""")


def make_link_fixer(doc_url: str, src_rel: Path, page_of: dict, warn=None):
    """Rewrite links in one notebook's markdown/HTML:
    * nbdev's links to the published docs (`https://host/baseurl/x.html#y`) -> relative links into this site;
    * links to other notebooks (`03_anatomy.ipynb#x`, as in Quarto) -> their page (`anatomy.html#x`)."""
    here = src_rel.parent.as_posix()
    root_rel = "../" * len(src_rel.parent.parts)

    def nb_link(m):
        target = m["path"]
        if re.match(r"^[a-zA-Z][\w+.-]*:", target) or target.startswith("/"):
            return m[0]
        key = posixpath.normpath(posixpath.join(here, target))
        page = page_of.get(key)
        if page is None:
            if warn:
                warn(f"link to {target}, which is not a docs page")
            return m[0]
        return m["pre"] + posixpath.relpath(page, here or ".")

    def fix(text: str) -> str:
        if doc_url:
            text = text.replace(doc_url, root_rel)
        return _NB_LINK.sub(nb_link, text)

    return fix


def _clean_output(o: dict, widget_models: set) -> dict | None:
    ot = o.get("output_type")
    if ot not in _OUT_KEYS:
        return None
    o = {k: v for k, v in o.items() if k in _OUT_KEYS[ot]}
    if ot in ("execute_result", "display_data"):
        o.setdefault("metadata", {})
        data = dict(o.get("data") or {})
        view = data.get(WIDGET_VIEW)
        if view is not None and (not isinstance(view, dict) or view.get("model_id") not in widget_models):
            data.pop(WIDGET_VIEW)  # no saved state for it: show the text/plain repr instead
        if not data:
            return None
        o["data"] = data
        if ot == "execute_result":
            ec = o.get("execution_count")
            o["execution_count"] = ec if isinstance(ec, int) and ec >= 0 else None
    elif ot == "stream":
        o.setdefault("name", "stdout")
        o["text"] = _src(o.get("text"))
    elif ot == "error":
        o.setdefault("ename", "")
        o.setdefault("evalue", "")
        o.setdefault("traceback", [])
    return o


def convert_notebook(nb: dict, fallback_title: str, fix_links=lambda s: s) -> tuple[dict, str]:
    "A `_proc` notebook (dict) -> (valid nbformat 4.5 notebook dict, title). `fix_links` rewrites markdown/HTML links."
    meta = {k: v for k, v in (nb.get("metadata") or {}).items() if k in _NB_META_KEYS}
    state = (meta.get("widgets") or {}).get(WIDGET_STATE) or {}
    widget_models = set((state.get("state") or {}).keys())
    if not widget_models:
        meta.pop("widgets", None)

    title, desc, cells = None, None, []
    for cell in nb.get("cells", []):
        ct = cell.get("cell_type")
        if ct not in _CELL_KEYS:
            continue
        src = _src(cell.get("source"))
        if ct == "raw":
            fm = parse_front_matter(src)
            if fm is not None:
                title = title or fm.get("title")
                desc = desc or fm.get("description") or fm.get("subtitle")
                continue
        c = {k: v for k, v in cell.items() if k in _CELL_KEYS[ct]}
        c["metadata"] = {k: v for k, v in (cell.get("metadata") or {}).items() if k not in _CELL_META_DROP}
        tags = list(c["metadata"].get("tags") or [])
        if ct == "markdown":
            if not src.strip() or _FM_WARNING.match(src):
                continue
            src = fix_links(_pandoc_attr_links(convert_callouts(src)))
        elif ct == "code":
            dirs, src = split_directives(src)
            if "hide" in dirs or _false(dirs.get("include", "true")):
                continue
            outputs = [] if _false(dirs.get("output", "true")) or "hide_output" in dirs else cell.get("outputs") or []
            outputs = [o for o in (_clean_output(o, widget_models) for o in outputs) if o]
            for o in outputs:
                data = o.get("data", {})
                if "text/markdown" in data:
                    data["text/markdown"] = _pandoc_attr_links(_src(data["text/markdown"]))
                for mime in ("text/markdown", "text/html"):
                    if mime in data:
                        data[mime] = fix_links(_src(data[mime]))
            hide_input = _false(dirs.get("echo", "true")) or "hide_input" in dirs or not src.strip()
            if hide_input and not outputs:
                continue
            if hide_input and "remove_input" not in tags:
                tags.append("remove_input")
            c["outputs"] = outputs
            ec = c.get("execution_count")
            c["execution_count"] = ec if isinstance(ec, int) and ec >= 0 else None
        if tags:
            c["metadata"]["tags"] = tags
        c["source"] = src
        cells.append(c)

    shown = {o["data"][WIDGET_VIEW].get("model_id") for c in cells for o in c.get("outputs", [])
             if WIDGET_VIEW in o.get("data", {})}
    if not shown:  # no widget on the page: don't make it load the widget renderer
        meta.pop("widgets", None)

    title = str(title or fallback_title)
    head = f"# {title}"
    if desc:  # markdown (descriptions use `code`); styled as a subtitle by docs_assets/css/extra.css
        head += "\n\n> " + " ".join(str(desc).split())
    cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": head})

    seen = set()
    for c in cells:  # nbformat 4.5 needs unique ids
        cid = str(c.get("id") or "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cid) or cid in seen:
            cid = uuid.uuid4().hex[:8]
        seen.add(cid)
        c["id"] = cid
    out = {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}
    return out, title


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sort_key(p: Path):
    m = _NUM_PREFIX.match(p.name)
    return (0 if p.stem == "index" else 1, int(m[1]) if m else 10**9, p.name.lower())


def find_notebooks(nbs: Path) -> list[Path]:
    "Notebooks under nbs/ (relative paths), skipping names/folders starting with `_` or `.`."
    res = []
    for p in nbs.rglob("*.ipynb"):
        rel = p.relative_to(nbs)
        if any(part.startswith(("_", ".")) for part in rel.parts):
            continue
        res.append(rel)
    return res


def write_docs(root: Path, proc: Path, docs: Path, settings: dict) -> list:
    "Convert every `_proc` notebook into `docs`; returns the mkdocs nav."
    import nbformat

    nbs = root / settings["nbs_path"]
    rels = sorted(find_notebooks(nbs), key=lambda r: (r.parent.parts, _sort_key(r)))
    if not rels:
        raise DocsError(f"no notebooks in {nbs}")
    if docs.exists():
        shutil.rmtree(docs)
    docs.mkdir(parents=True)
    doc_url = (settings.get("doc_host", "").rstrip("/") + "/" + settings.get("doc_baseurl", "").strip("/")).rstrip("/")
    doc_url = doc_url + "/" if settings.get("doc_host") else ""

    # pass 1: read the processed notebooks and name their pages
    raws, page_for, used = {}, {}, set()
    for rel in rels:
        p = proc / rel
        if not p.exists():
            raise DocsError(f"{p} missing: nbdev_proc_nbs did not process {nbs / rel}")
        raw = json.loads(p.read_text(encoding="utf-8"))
        fm = next((parse_front_matter(_src(c.get("source"))) for c in raw.get("cells", [])
                   if c.get("cell_type") == "raw"), None) or {}
        # Page name: nbdev's output-file (00_lab.ipynb -> lab.html, like the Quarto site).
        stem = Path(str(fm.get("output-file") or rel.name)).stem or rel.stem
        page = rel.with_name(stem + ".ipynb")
        if page.as_posix() in used:
            page = rel
        used.add(page.as_posix())
        raws[rel], page_for[rel] = raw, page
    page_of = {rel.as_posix(): page.with_suffix(".html").as_posix() for rel, page in page_for.items()}

    # pass 2: convert
    pages: dict[Path, list] = {}  # folder -> [(sort key, title, page path)]
    for rel in rels:
        raw, page = raws[rel], page_for[rel]
        fix = make_link_fixer(doc_url, rel, page_of, warn=lambda msg, rel=rel: log(f"  warning: {rel}: {msg}"))
        nb, title = convert_notebook(raw, fallback_title=rel.stem, fix_links=fix)
        node = nbformat.from_dict(nb)
        try:
            nbformat.validate(node)
        except nbformat.ValidationError as e:
            raise DocsError(f"{rel}: converted notebook is not valid nbformat v4: {e.message}") from e
        (docs / page).parent.mkdir(parents=True, exist_ok=True)
        (docs / page).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        nav_title = "Home" if page.as_posix() == "index.ipynb" else title.replace("`", "")
        pages.setdefault(rel.parent, []).append((_sort_key(rel), nav_title, page.as_posix()))
        log(f"  {rel} -> {page.with_suffix('.html').as_posix()}  ({len(nb['cells'])} cells, \"{title}\")")

    # static files that sit next to the notebooks (images in markdown cells, ...)
    for f in nbs.rglob("*"):
        rel = f.relative_to(nbs)
        if f.is_file() and f.suffix.lower() in STATIC_EXTS and not any(
                part.startswith(("_", ".")) for part in rel.parts):
            (docs / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, docs / rel)

    if not any(path == "index.ipynb" for _, _, path in pages.get(Path(), [])):
        log(f"  no {settings['nbs_path']}/index.ipynb: writing a plain home page (index.md)")
        (docs / "index.md").write_text(_fallback_home(settings, pages), encoding="utf-8")
        pages.setdefault(Path(), []).append(((0, 0, ""), "Home", "index.md"))

    nav = []
    for folder in sorted(pages, key=lambda d: (len(d.parts) > 0, _sort_key(d) if d.parts else ())):
        items = [{t: path} for _, t, path in sorted(pages[folder])]
        if not folder.parts:
            nav += items
        else:
            name = _NUM_PREFIX.sub("", folder.name).replace("_", " ").strip().capitalize() or folder.name
            nav.append({name: items})
    return nav


def _fallback_home(settings: dict, pages: dict) -> str:
    title = settings.get("title") or settings.get("lib_name") or "Documentation"
    lines = [f"# {title}", ""]
    if settings.get("description"):
        lines += [f"> {settings['description']}", ""]
    lines += ["## Chapters", ""]
    for folder in sorted(pages, key=lambda d: d.parts):
        for _, t, path in sorted(pages[folder]):
            lines.append(f"- [{t}]({path})")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- step 3: npm assets

def ensure_node_modules(tools: Path = TOOLS) -> Path:
    "Install tools/node_modules with npm when it is missing or older than the lock file."
    nm = tools / "node_modules"
    lock = tools / "package-lock.json"
    marker = nm / ".package-lock.json"  # written by npm on every install
    if nm.exists() and marker.exists() and (not lock.exists() or marker.stat().st_mtime >= lock.stat().st_mtime):
        return nm
    npm = shutil.which("npm")
    if not npm:
        raise DocsError("npm not found: install Node.js/npm, then run `npm ci --prefix tools`")
    cmd = [npm, "ci" if lock.exists() else "install", "--no-audit", "--no-fund", "--loglevel=error"]
    log(f"installing widget JS: {' '.join(cmd[1:])} (in tools/)")
    res = subprocess.run(cmd, cwd=tools, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        raise DocsError(f"`npm {cmd[1]}` failed in {tools}:\n{res.stdout}")
    return nm


def copy_vendor(nm: Path, dest: Path) -> int:
    "Copy the vendored JS into `dest` (assets/vendor); returns the number of files."
    n = 0
    for pkg, patterns, sub in VENDOR:
        src_dir = nm / pkg
        if not src_dir.is_dir():
            raise DocsError(f"{src_dir} missing: run `npm ci --prefix tools`")
        out = dest / sub
        out.mkdir(parents=True, exist_ok=True)
        for pat in patterns:
            files = sorted(src_dir.glob(pat))
            if not files and "*" not in pat:
                raise DocsError(f"{src_dir / pat} missing (unexpected npm package layout)")
            for f in files:
                if f.suffix == ".js":  # no source maps are shipped: drop the references (avoids 404s)
                    text = f.read_text(encoding="utf-8")
                    text = re.sub(r"^//# sourceMappingURL=\S+;?\s*$", "", text, flags=re.M)
                    (out / f.name).write_text(text, encoding="utf-8")
                else:
                    shutil.copy2(f, out / f.name)
                n += 1
    return n


def copy_own_assets(dest: Path) -> None:
    "docs_assets/css + js -> assets/slimlab."
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("css", "js"):
        for f in sorted((ASSETS_SRC / sub).glob("*")):
            if f.is_file():
                shutil.copy2(f, dest / f.name)


# ----------------------------------------------------------------------------- step 4: mkdocs

def write_config(build: Path, docs: Path, site: Path, nav: list) -> Path:
    import yaml

    base = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    cfg = dict(base)
    cfg["docs_dir"] = str(docs)
    cfg["site_dir"] = str(site)
    cfg["nav"] = nav
    cfg["hooks"] = [str((ROOT / h).resolve()) for h in base.get("hooks", [])]
    plugins = []
    for p in base.get("plugins", []):
        if isinstance(p, dict) and "mkdocs-jupyter" in p:
            opts = dict(p["mkdocs-jupyter"] or {})
            opts.setdefault("cache_dir", str(build / ".cache" / "mkdocs-jupyter"))
            p = {"mkdocs-jupyter": opts}
        plugins.append(p)
    cfg["plugins"] = plugins
    out = build / "mkdocs.yml"
    header = "# GENERATED by tools/build_docs.py from mkdocs.yml -- edit that file instead.\n"
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def run_mkdocs(cfg: Path, strict: bool = True) -> None:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--clean", "-f", str(cfg)] + (["--strict"] if strict else [])
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    res = subprocess.run(cmd, cwd=cfg.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [l for l in res.stdout.splitlines() if l.strip()]
    problems = [l for l in lines if not l.startswith("INFO")]
    if res.returncode != 0:
        raise DocsError(f"mkdocs build failed (exit {res.returncode}):\n" + "\n".join(problems or lines[-40:]))
    for l in problems:
        print("  " + l, flush=True)


# ----------------------------------------------------------------------------- entry points

def build(out: Path | str | None = None, build_dir: Path | str | None = None, force: bool = False,
          strict: bool = True, proc: bool = True, root: Path = ROOT, exact_nbdev: bool = False) -> Path:
    "Build the site into `out` (default `_site/`); returns its path."
    root = Path(root).resolve()
    site = Path(out).resolve() if out else root / "_site"
    build_dir = Path(build_dir).resolve() if build_dir else root / "docs_build"
    if site == root or site == build_dir or site in root.parents:
        raise DocsError(f"refusing to build the site into {site} (mkdocs empties that directory)")
    docs = build_dir / "docs"
    settings = read_settings(root)

    if proc:
        log(f"1/4 {'nbdev_proc_nbs' if exact_nbdev else 'nbdev proc_nbs (stored outputs)'} -> _proc/")
        proc_dir = run_proc_nbs(root, root / settings["nbs_path"], force=force, exact=exact_nbdev)
    else:
        proc_dir = root / "_proc"
    log(f"2/4 _proc -> nbformat v4 notebooks in {docs.relative_to(root) if docs.is_relative_to(root) else docs}")
    nav = write_docs(root, proc_dir, docs, settings)

    log("3/4 widget/MathJax JS from tools/node_modules (no CDN)")
    nm = ensure_node_modules(TOOLS)
    n = copy_vendor(nm, docs / "assets" / "vendor")
    copy_own_assets(docs / "assets" / "slimlab")
    log(f"  {n} vendored files")

    log("4/4 mkdocs build" + (" --strict" if strict else ""))
    cfg = write_config(build_dir, docs, site, nav)
    run_mkdocs(cfg, strict=strict)
    if not (site / "index.html").exists():
        raise DocsError(f"mkdocs did not write {site / 'index.html'}")
    return site


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="site directory (default: _site/ at the repo root)")
    ap.add_argument("--build-dir", default=None, help="intermediate files (default: docs_build/)")
    ap.add_argument("--force", action="store_true", help="reprocess every notebook (nbdev_proc_nbs --force)")
    ap.add_argument("--no-strict", action="store_true", help="don't fail on mkdocs warnings")
    ap.add_argument("--skip-proc", action="store_true", help="reuse _proc/ as it is (don't run nbdev_proc_nbs)")
    ap.add_argument("--exact-nbdev", action="store_true",
                    help="run the nbdev_proc_nbs command as is (it re-executes cells that mix imports and code)")
    ap.add_argument("--root", default=str(ROOT), help="project root with settings.ini and nbs/ (default: this repo)")
    a = ap.parse_args(argv)
    try:
        site = build(out=a.out, build_dir=a.build_dir, force=a.force, strict=not a.no_strict, proc=not a.skip_proc,
                     root=Path(a.root), exact_nbdev=a.exact_nbdev)
    except DocsError as e:
        print(f"[docs] ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    log(f"done: site in {site}")
    print(f"  open {site / 'index.html'}  (or: python -m http.server -d {site} 8000)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
