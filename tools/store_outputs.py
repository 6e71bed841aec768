"""Run a chapter's cells in a fresh kernel and store their outputs, as the docs show them.

Cells marked `#| slow` keep the outputs they have unless `--slow` is given (then they run too); `#| eval: false` cells
never run. Progress bars and other stderr lines are not stored. Stops at the first failing cell and writes nothing.

    python tools/store_outputs.py nbs/15_recipes.ipynb [--slow]
"""
import argparse, os, subprocess, sys
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from nbdev.process import NBProcessor, extract_directives


def skipped(cell, slow: bool) -> bool:
    "Whether a cell keeps its stored outputs instead of running."
    if cell.cell_type != 'code': return True
    directives = extract_directives(cell, remove=False)
    if directives.get('eval:', [''])[0].lower() == 'false': return True
    return 'slow' in directives and not slow


def keep(output: dict) -> bool:
    "Whether an output belongs in the docs: everything but stderr streams (progress bars, warnings)."
    return not (output.get('output_type') == 'stream' and output.get('name') == 'stderr')


def store(path: Path, slow: bool = False):
    nb = read_nb(path)
    shell = CaptureShell(path)
    os.environ['IN_TEST'] = '1'
    cwd = Path.cwd()
    os.chdir(path.parent)
    try:
        for cell in nb.cells:
            if skipped(cell, slow): continue
            source = cell.source  # execnb drops the printed output of a cell ending in ';' (Jupyter keeps it): end it otherwise
            if source.rstrip().endswith(';'): cell.source = source + '\npass'
            shell.cell(cell)
            cell.source = source
            if shell.exc: raise SystemExit(shell.prettytb(fname=path))
            cell.outputs = [o for o in cell.get('outputs', []) if keep(o)]
    finally: os.chdir(cwd)
    write_nb(nb, path)
    subprocess.run([Path(sys.executable).parent/'nbdev_clean', '--fname', str(path)], check=True)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('notebooks', nargs='+', type=Path)
    parser.add_argument('--slow', action='store_true', help='run the slow cells too (minutes to an hour)')
    args = parser.parse_args()
    for p in args.notebooks:
        store(p, args.slow)
        print(f"{p}: outputs stored")
