"""Fail when a notebook in nbs/ is not clean: run nbdev_clean on copies and compare byte for byte."""
import shutil, subprocess, sys, tempfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nbs = sorted(p for p in (root/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
with tempfile.TemporaryDirectory() as d:
    copies = {nb: Path(d)/nb.relative_to(root) for nb in nbs}
    for nb, copy in copies.items():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nb, copy)
    subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(Path(d)/'nbs')], cwd=root, check=True)
    dirty = [str(nb.relative_to(root)) for nb, copy in copies.items() if nb.read_bytes() != copy.read_bytes()]
if dirty:
    sys.exit(f"notebooks not clean (run .venv/bin/nbdev_clean and commit): {', '.join(dirty)}")
print(f"{len(nbs)} notebooks clean")
