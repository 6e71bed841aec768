#!/usr/bin/env python
"""Build the offline slimlab docs site without Quarto.

    python tools/build_docs.py [--out _site] [--build-dir docs_build] [--force] [--no-strict] [--skip-proc]

1. nbdev's `proc_nbs` (what `nbdev_proc_nbs` runs after its Quarto set-up) writes the processed
   notebooks (show_doc, hidden cells, front matter, links, ...) to `_proc/`.
2. What mkdocs-jupyter does not understand is turned into what it does, in `docs_build/docs/`: the
   YAML front matter becomes a `# Title` cell with the description under it; the Quarto options left
   in code cells become cell tags that mkdocs-jupyter's `remove_tag_config` acts on (`echo: false`
   hides the code, `output: false` the outputs, `include: false` the cell) and are removed from the
   code; nbdev's links to the published docs, links to other notebooks and pandoc `[..](..){attrs}`
   links become links into this site. Pages are named like nbdev's (`00_lab.ipynb` -> `lab.html`).
3. The widget JS (`@jupyter-widgets/html-manager`, `requirejs`) and MathJax are copied from
   `tools/node_modules` (`npm ci --prefix tools`, run by `make setup`). Nothing comes from a CDN.
4. `mkdocs build` (material + mkdocs-jupyter, `execute: false`) with `docs_build/mkdocs.yml`: the
   repo-root `mkdocs.yml` plus the nav (home page, then the chapters in order) and absolute paths.

Notebooks whose name starts with `_` or `.` are skipped. Importable: `build(out=...)` returns the site dir.
"""
from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tools" / "node_modules"
# Vendored JS: (package dir in node_modules, file globs, destination under assets/vendor)
VENDOR = [
    ("requirejs", ["require.js"], "."),
    ("@jupyter-widgets/html-manager/dist", ["embed-amd.js", "*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg"],
     "jupyter-widgets"),
    # the widgets' icon fonts, where the html-manager's CSS asks for them (relative to the page, by its package path)
    ("@jupyter-widgets/html-manager/dist", ["*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg"], "../../@jupyter-widgets"),
    ("@jupyter-widgets/html-manager/dist", ["*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg"], "../../@jupyter-widgets/html-manager/dist"),
    ("mathjax", ["LICENSE"], "mathjax"),
    ("mathjax/es5", ["tex-svg.js"], "mathjax"),
    ("mathjax/es5/input/tex/extensions", ["*.js"], "mathjax/input/tex/extensions"),
]
CELL_KEYS = {"id", "cell_type", "metadata", "source", "outputs", "execution_count", "attachments"}  # nbformat 4.5
TAG_FOR_FALSE = {"echo": "remove_input", "output": "remove_output", "include": "remove_cell"}  # see mkdocs.yml
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*(?::\s*(.*?))?\s*$")
_ATTR_LINK = re.compile(r'(?<!!)\[([^\]\n]*)\]\(([^)\s]+)\)\{((?:\s*[\w-]+="[^"]*")+)\s*\}')
_NB_LINK = re.compile(r"""(\]\(\s*<?|href=["'])([^)"'\s#<>:]+\.ipynb)(?=[#)"'\s>])""")
_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[docs {time.perf_counter() - _T0:6.1f}s] {msg}", flush=True)


class DocsError(RuntimeError):
    pass


def _text(x) -> str:
    return "".join(x) if isinstance(x, list) else (x or "")


# ----------------------------------------------------------------------------- step 1: nbdev

def run_proc_nbs(root: Path, force: bool = False) -> Path:
    "nbdev's `proc_nbs` on the project in `root` (it only redoes notebooks changed since the last run); returns `_proc`."
    code = f"from nbdev.serve import proc_nbs; proc_nbs(force={force!r})"
    res = subprocess.run([sys.executable, "-c", code], cwd=root)
    if res.returncode != 0:
        raise DocsError(f"nbdev proc_nbs failed (exit {res.returncode}), see above")
    return root / "_proc"


# ----------------------------------------------------------------------------- step 2: _proc -> mkdocs-jupyter

def front_matter(cell: dict) -> dict | None:
    "The YAML front matter nbdev writes as a raw `---` cell, or None for any other cell."
    src = _text(cell.get("source")).strip()
    if cell.get("cell_type") != "raw" or not src.startswith("---"):
        return None
    return yaml.safe_load(src[3:].rsplit("---", 1)[0]) or {}


def make_link_fixer(doc_url: str, src_rel: Path, page_of: dict):
    """Rewrites the links in one notebook's markdown/HTML (`src_rel`: its path under nbs/):
    nbdev's links to the published docs (`doc_url` + `x.html#y`) and links to notebooks (`03_anatomy.ipynb#x`)
    point at the pages of this site; pandoc's `[text](url){key="value"}` becomes an HTML link."""
    here = src_rel.parent.as_posix()

    def nb_link(m):
        page = page_of.get(posixpath.normpath(posixpath.join(here, m[2])))
        if page is None:
            log(f"  warning: {src_rel}: link to {m[2]}, which is not a docs page")
            return m[0]
        return m[1] + posixpath.relpath(page, here or ".")

    def fix(text: str) -> str:
        text = _ATTR_LINK.sub(r'<a href="\2" \3>\1</a>', text)
        if doc_url:
            text = text.replace(doc_url, "../" * len(src_rel.parent.parts))
        return _NB_LINK.sub(nb_link, text)

    return fix


def quarto_options_to_tags(cell: dict) -> dict:
    "A code cell without its leading `#|` lines; `echo`, `output` or `include: false` become mkdocs-jupyter's removal tags."
    lines = _text(cell["source"]).splitlines(keepends=True)
    n, tags = 0, list(cell["metadata"].get("tags", []))
    while n < len(lines) and (m := _DIRECTIVE.match(lines[n])):
        if (m[2] or "").lower() == "false" and m[1] in TAG_FOR_FALSE:
            tags.append(TAG_FOR_FALSE[m[1]])
        n += 1
    meta = {**cell["metadata"], "tags": tags} if tags else cell["metadata"]
    return {**cell, "metadata": meta, "source": "".join(lines[n:]).rstrip("\n")}


def plain_cell(cell: dict, fix_links) -> dict:
    "One `_proc` cell with nbformat's keys only, links fixed (`fix_links`) and Quarto options turned into tags."
    c = {k: v for k, v in cell.items() if k in CELL_KEYS}
    if c["cell_type"] == "markdown":
        return {**c, "source": fix_links(_text(c["source"]))}
    if c["cell_type"] != "code":
        return c
    fix = lambda mime, v: fix_links(_text(v)) if mime in ("text/markdown", "text/html") else v
    outputs = [{**o, "data": {k: fix(k, v) for k, v in o["data"].items()}} if "data" in o else o for o in c["outputs"]]
    return quarto_options_to_tags({**c, "outputs": outputs})


def convert_notebook(nb: dict, fallback_title: str, fix_links=lambda s: s) -> tuple[dict, str]:
    "A `_proc` notebook (dict) -> (nbformat notebook for mkdocs-jupyter with a `# Title` cell first, title)."
    fm = next((d for d in map(front_matter, nb["cells"]) if d is not None), {})
    cells = [plain_cell(c, fix_links) for c in nb["cells"] if front_matter(c) is None
             and not _text(c.get("source")).startswith("<!-- WARNING: THIS FILE WAS AUTOGENERATED!")]
    title = str(fm.get("title") or fallback_title)
    head = f"# {title}"
    if fm.get("description"):  # styled as a subtitle by docs_assets/css/extra.css
        head += "\n\n> " + " ".join(str(fm["description"]).split())
    cells.insert(0, nbformat.v4.new_markdown_cell(head))
    meta = dict(nb.get("metadata") or {})
    state = (meta.get("widgets") or {}).get(WIDGET_STATE, {}).get("state", {})
    if not any(o.get("data", {}).get(WIDGET_VIEW, {}).get("model_id") in state
               for c in cells for o in c.get("outputs", [])):
        meta.pop("widgets", None)  # no widget on the page: don't make it load the widget renderer
    return nbformat.from_dict({**nb, "cells": cells, "metadata": meta}), title


def find_notebooks(nbs: Path) -> list[Path]:
    "Notebooks under nbs/ (relative paths) in nav order: home page first, then by name (`00_lab`, `01_plots`, ...)."
    rels = [p.relative_to(nbs) for p in nbs.rglob("*.ipynb")]
    rels = [r for r in rels if not any(part.startswith(("_", ".")) for part in r.parts)]
    return sorted(rels, key=lambda r: (r.parent.parts, r.stem != "index", r.name))


def page_names(raws: dict) -> dict:
    "Notebook path -> page path, named as nbdev's `output-file` (00_lab.ipynb -> lab.ipynb -> lab.html, as with Quarto)."
    pages = {}
    for rel, raw in raws.items():
        fm = next((d for d in map(front_matter, raw["cells"]) if d is not None), {})
        page = rel.with_name(Path(str(fm.get("output-file") or rel.name)).stem + ".ipynb")
        pages[rel] = page if page not in pages.values() else rel
    return pages


def write_home(docs: Path, cfg, nav: list) -> None:
    "A plain home page (index.md) listing the pages in `nav`, for a project without an index notebook."
    links = [f"- [{t}]({p})" for item in nav for t, p in item.items()]
    text = "\n".join([f"# {cfg.get('title') or cfg.get('lib_name')}", "", f"> {cfg.get('description', '')}", ""] + links)
    (docs / "index.md").write_text(text + "\n", encoding="utf-8")
    nav.insert(0, {"Home": "index.md"})


def write_docs(proc: Path, nbs: Path, docs: Path, cfg) -> list:
    "Convert the `_proc` copy of every notebook in `nbs` into `docs` (`cfg`: settings.ini); returns the mkdocs nav."
    rels = find_notebooks(nbs)
    missing = [str(proc / r) for r in rels if not (proc / r).exists()]
    if not rels or missing:
        raise DocsError(f"not processed by nbdev: {missing} (try --force)" if rels else f"no notebooks in {nbs}")
    raws = {r: json.loads((proc / r).read_text(encoding="utf-8")) for r in rels}
    pages = page_names(raws)
    page_of = {r.as_posix(): p.with_suffix(".html").as_posix() for r, p in pages.items()}
    parts = [s.strip("/") for s in (cfg.get("doc_host", ""), cfg.get("doc_baseurl", "")) if s.strip("/")]
    doc_url = "/".join(parts) + "/" if cfg.get("doc_host") else ""  # https://slimlab.github.io/slimlab/
    shutil.rmtree(docs, ignore_errors=True)
    nav = []
    for r in rels:
        nb, title = convert_notebook(raws[r], r.stem, make_link_fixer(doc_url, r, page_of))
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError as e:
            raise DocsError(f"{r}: converted notebook is not valid nbformat v4: {e.message}") from e
        (docs / pages[r]).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, docs / pages[r])
        nav.append({"Home" if pages[r] == Path("index.ipynb") else title.replace("`", ""): pages[r].as_posix()})
        log(f"  {r} -> {page_of[r.as_posix()]}  ({len(nb.cells)} cells, \"{title}\")")
    if not (docs / "index.ipynb").exists():
        log(f"  no {nbs.name}/index.ipynb: writing a plain home page (index.md)")
        write_home(docs, cfg, nav)
    return nav


# ----------------------------------------------------------------------------- step 3: vendored JS

def copy_vendor(nm: Path, dest: Path) -> int:
    "Copy the vendored JS from node_modules `nm` into `dest` (assets/vendor); returns the number of files."
    n = 0
    for pkg, patterns, sub in VENDOR:
        if not (nm / pkg).is_dir():
            raise DocsError(f"{nm / pkg} missing: run `npm ci --prefix tools` (or `make setup`)")
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for f in (f for pat in patterns for f in sorted((nm / pkg).glob(pat))):
            if f.suffix == ".js":  # no source maps are shipped: drop the references to them (avoids 404s)
                text = re.sub(r"^//# sourceMappingURL=\S+;?\s*$", "", f.read_text(encoding="utf-8"), flags=re.M)
                (dest / sub / f.name).write_text(text, encoding="utf-8")
            else:
                shutil.copy2(f, dest / sub / f.name)
            n += 1
    return n


# ----------------------------------------------------------------------------- step 4: mkdocs

def write_config(build_dir: Path, docs: Path, site: Path, nav: list) -> Path:
    "docs_build/mkdocs.yml: the repo-root mkdocs.yml with the `nav`, the docs and site dirs, and absolute paths."
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    cfg.update(docs_dir=str(docs), site_dir=str(site), nav=nav, hooks=[str(ROOT / h) for h in cfg.get("hooks", [])])
    cfg["theme"]["custom_dir"] = str(ROOT / cfg["theme"]["custom_dir"])
    out = build_dir / "mkdocs.yml"
    header = "# GENERATED by tools/build_docs.py from mkdocs.yml -- edit that file instead.\n"
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def run_mkdocs(cfg: Path, strict: bool = True) -> None:
    "`mkdocs build` in the config's folder (mkdocs-jupyter keeps its cache there); prints all but its INFO lines."
    cmd = [sys.executable, "-m", "mkdocs", "build", "-f", str(cfg), "--strict" if strict else "--no-strict"]
    res = subprocess.run(cmd, cwd=cfg.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    problems = [l for l in res.stdout.splitlines() if l.strip() and not l.startswith("INFO")]
    if res.returncode != 0:
        raise DocsError(f"mkdocs build failed (exit {res.returncode}):\n" + "\n".join(problems or [res.stdout[-4000:]]))
    for l in problems:
        print("  " + l, flush=True)


# ----------------------------------------------------------------------------- entry points

def build(out: Path | str | None = None, build_dir: Path | str | None = None, force: bool = False,
          strict: bool = True, proc: bool = True, root: Path = ROOT) -> Path:
    "Build the site of the project in `root` into `out` (default `_site/`); returns its path."
    from fastcore.foundation import Config  # what nbdev reads settings.ini with

    root = Path(root).resolve()
    site = Path(out).resolve() if out else root / "_site"
    build_dir = Path(build_dir).resolve() if build_dir else root / "docs_build"
    if site == root or site == build_dir or site in root.parents:
        raise DocsError(f"refusing to build the site into {site} (mkdocs empties that directory)")
    if not (root / "settings.ini").exists():
        raise DocsError(f"{root / 'settings.ini'} not found: run this from a checkout of the repo")
    cfg, docs = Config(root, "settings.ini"), build_dir / "docs"
    log("1/4 nbdev proc_nbs -> _proc/" if proc else "1/4 reusing _proc/")
    proc_dir = run_proc_nbs(root, force=force) if proc else root / "_proc"
    log(f"2/4 _proc -> notebooks for mkdocs-jupyter in {docs}")
    nav = write_docs(proc_dir, root / cfg.get("nbs_path", "nbs"), docs, cfg)
    log(f"3/4 widget/MathJax JS from {NODE_MODULES}: {copy_vendor(NODE_MODULES, docs / 'assets' / 'vendor')} files")
    log("4/4 mkdocs build" + (" --strict" if strict else ""))
    run_mkdocs(write_config(build_dir, docs, site, nav), strict=strict)
    if not (site / "index.html").exists():
        raise DocsError(f"mkdocs did not write {site / 'index.html'}")
    return site


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="site directory (default: _site/ at the repo root)")
    ap.add_argument("--build-dir", default=None, help="intermediate files (default: docs_build/)")
    ap.add_argument("--force", action="store_true", help="reprocess every notebook (proc_nbs(force=True))")
    ap.add_argument("--no-strict", action="store_true", help="don't fail on mkdocs warnings")
    ap.add_argument("--skip-proc", action="store_true", help="reuse _proc/ as it is (don't run nbdev)")
    ap.add_argument("--root", default=str(ROOT), help="project root with settings.ini and nbs/ (default: this repo)")
    a = ap.parse_args(argv)
    try:
        site = build(out=a.out, build_dir=a.build_dir, force=a.force, strict=not a.no_strict, proc=not a.skip_proc,
                     root=Path(a.root))
    except DocsError as e:
        print(f"[docs] ERROR: {e}", file=sys.stderr, flush=True)
        return 1
    log(f"done: site in {site}")
    print(f"  open {site / 'index.html'}  (or: python -m http.server -d {site} 8000)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
