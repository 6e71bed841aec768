"""Render nbs/index.ipynb to README.md (nbdev_readme needs Quarto; this needs only nbconvert). --check: fail if stale."""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import TagRemovePreprocessor

root = Path(__file__).resolve().parent.parent
nb = nbformat.read(root/'nbs'/'index.ipynb', as_version=4)
for cell in nb.cells:  # as on the docs site: cells marked `#| echo: false` show their output only
    if cell.cell_type == 'code' and '#| echo: false' in cell.source.splitlines(): cell.metadata['tags'] = ['echo_false']
exporter = MarkdownExporter()
exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'echo_false'}, enabled=True), enabled=True)
body, _ = exporter.from_notebook_node(nb)
body = body.strip() + '\n'
readme = root/'README.md'
if '--check' in sys.argv:
    if not readme.exists() or readme.read_text() != body:
        sys.exit("README.md is not the rendering of nbs/index.ipynb: run `make readme` and commit it")
    print("README.md matches nbs/index.ipynb")
else:
    readme.write_text(body)
    print(f"wrote {readme}")
