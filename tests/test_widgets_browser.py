"""The pruning explorer in a real JupyterLab, driven by a headless browser.

Starts JupyterLab on 127.0.0.1 (a free port, token auth, temporary HOME / config / data / runtime folders, no news or
update checks), writes a small notebook that builds the explorer on the tiny scaled Llama, opens it in headless
Chromium through Playwright (the Debian `chromium`), runs it, moves the hidden-size slider with the keyboard as a user
would, and checks that the parameter count shown becomes the one the plan for the new hidden size computes.
JupyterLab is shut down through its API at the end (terminated if it does not stop).

Screenshot: tests/artifacts/widgets_explorer.png.
"""
from __future__ import annotations

import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from slimlab.anatomy import count_params
from slimlab.lab import load_config
from slimlab.prune import make_plan, random_scores, sync_config

ARTIFACTS = Path(__file__).resolve().parent/'artifacts'
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
MODEL = 'llama-tiny'  # 4 blocks, hidden 64, 4 heads: LlamaConfig needs hidden % 4 == 0, so the slider steps by 4
NOTEBOOK = f"""import torch
torch.set_num_threads(1)
from slimlab.lab import load_model
from slimlab.importance import importance
from slimlab.widgets import PruningExplorer
model = load_model({MODEL!r})
report = importance(model, torch.randint(0, 1000, (4, 16), generator=torch.Generator().manual_seed(0)), progress=False)
explorer = PruningExplorer(model, report)
explorer"""
LAB_CONFIG = """c.LabApp.news_url = None
c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'
c.LabApp.extension_manager = 'readonly'
"""
TIMEOUT_MS = 120_000  # kernel start and the first import of torch/transformers on a busy 2-core machine


def _chromium() -> str:
    for cand in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and Path(cand).exists(): return cand
    pytest.fail("Chromium not found: this test needs the Debian `chromium` package (or CHROMIUM=/path/to/chrome)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _api(url: str, token: str, path: str, method: str = 'GET') -> tuple[int, object]:
    "HTTP status and JSON body of a JupyterLab API call ((0, None) when the server does not answer)."
    req = urllib.request.Request(f"{url}{path}", method=method, headers={'Authorization': f'token {token}'})
    try:
        with urllib.request.urlopen(req, timeout=5) as r: return r.status, json.loads(r.read() or b'null')
    except urllib.error.HTTPError as e: return e.code, None
    except OSError: return 0, None


def _wait_for_idle_kernel(url: str, token: str, timeout: float = 120):
    "Wait until the server has a kernel that finished starting (the page's own indicator says idle before that)."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, kernels = _api(url, token, '/api/kernels')
        if status == 200 and any(k['execution_state'] == 'idle' for k in kernels): return
        time.sleep(0.5)
    pytest.fail(f"no kernel became idle within {timeout} s")


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 serving a folder with the test notebook: (base url, token)."
    tmp = tmp_path_factory.mktemp('lab')
    root, home, config = tmp/'notebooks', tmp/'home', tmp/'config'
    for d in (root, home, config): d.mkdir()
    (config/'jupyter_lab_config.py').write_text(LAB_CONFIG)
    settings = config/'lab'/'user-settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True)
    (settings/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false'}))  # no news consent toast
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK)])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nbformat.write(nb, root/'explorer.ipynb')
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, HOME=str(home), JUPYTER_CONFIG_DIR=str(config), JUPYTER_DATA_DIR=str(tmp/'data'),
               JUPYTER_RUNTIME_DIR=str(tmp/'runtime'), IPYTHONDIR=str(tmp/'ipython'), MPLCONFIGDIR=str(tmp/'mpl'),
               OMP_NUM_THREADS='1', JUPYTER_PLATFORM_DIRS='1')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}']
    if os.geteuid() == 0: cmd.append('--allow-root')  # containers often run tests as root
    log = (tmp/'lab.log').open('w')
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while _api(url, token, '/api/status')[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start (exit {proc.poll()}):\n{(tmp/'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, token
    finally:
        _api(url, token, '/api/shutdown', 'POST')  # stops the kernels too
        try: proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try: proc.wait(10)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
        log.close()


def expected_params(hidden_size: int) -> int:
    "Parameter count of the plan that cuts the tiny model's hidden size to `hidden_size`, computed here (no browser)."
    config = load_config(MODEL)
    return sum(count_params(sync_config(config, make_plan(config, random_scores(config), hidden_size=hidden_size))).values())


def test_slider_moves_update_the_parameter_count(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright
    url, token = lab
    remote = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={'width': 1400, 'height': 1100})
            host = urlparse(url).netloc

            def route(r):  # the lab must work offline: anything but the local server is refused and recorded
                u = urlparse(r.request.url)
                if u.scheme in ('data', 'blob', 'about') or u.netloc == host: return r.continue_()
                remote.append(r.request.url)
                return r.abort()
            context.route('**/*', route)
            page = context.new_page()
            page.goto(f"{url}/lab/tree/explorer.ipynb?token={token}", timeout=TIMEOUT_MS)
            editor = page.locator('.jp-Notebook .jp-Cell .cm-content').first
            editor.wait_for(state='visible', timeout=TIMEOUT_MS)
            prompt = page.locator('.jp-Notebook .jp-InputPrompt').first
            for attempt in range(3):  # the first run starts the kernel and may be dropped while the page connects to it
                editor.click()
                page.keyboard.press('Control+Enter')  # run the notebook's one cell
                try:
                    page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.textContent)", arg=prompt.element_handle(), timeout=10_000)
                    break
                except PlaywrightTimeout:
                    if attempt == 2: raise
                    _wait_for_idle_kernel(url, token)

            params = page.locator('.slimlab-explorer .slimlab-params')
            params.wait_for(state='visible', timeout=TIMEOUT_MS)
            source = load_config(MODEL)
            full = sum(count_params(source).values())
            assert params.inner_text() == f"{full:,}", "before any move the explorer shows the unpruned count"

            slider = page.locator('.slimlab-hidden_size')
            readout = slider.locator('.widget-readout')
            assert readout.inner_text() == '64'
            handle = slider.locator('.noUi-handle')
            handle.focus()
            for _ in range(4): page.keyboard.press('ArrowLeft')  # 4 steps of 4: 64 -> 48
            page.wait_for_function("el => el.textContent.trim() === '48'", arg=readout.element_handle(), timeout=30_000)
            want = f"{expected_params(48):,}"
            assert want != f"{full:,}"
            # the numbers are re-rendered on every update: look the element up afresh each time
            page.wait_for_function("want => document.querySelector('.slimlab-explorer .slimlab-params')?.textContent === want",
                                   arg=want, timeout=30_000)
            assert page.locator('.slimlab-explorer img').count() >= 4, 'the explorer pictures are missing'

            # each key press was one update; let the kernel finish them all, so that the pictures show 48 channels too
            page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator('.slimlab-explorer').scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS/'widgets_explorer.png'))
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS/'widgets_explorer_failure.png'))
            print(f"non-local requests: {remote}")
            raise
        finally:
            browser.close()
    assert not remote, f"the lab page asked for non-local resources: {remote}"
