"""Render nbs/index.ipynb to README.md (nbdev_readme needs Quarto; this needs only nbconvert). --check: fail if stale."""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parent.parent
body, _ = MarkdownExporter().from_notebook_node(nbformat.read(root/'nbs'/'index.ipynb', as_version=4))
body = body.strip() + '\n'
readme = root/'README.md'
if '--check' in sys.argv:
    if not readme.exists() or readme.read_text() != body:
        sys.exit("README.md is not the rendering of nbs/index.ipynb: run `make readme` and commit it")
    print("README.md matches nbs/index.ipynb")
else:
    readme.write_text(body)
    print(f"wrote {readme}")
