"""The `slimlab` console command as a user runs it: fast start, one-line errors for bad input."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*args, env=None):
    return subprocess.run([str(BIN/'slimlab'), *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_import_slimlab_is_light():
    code = "import sys, slimlab, slimlab.cli; heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_help_lists_commands():
    r = run('--help')
    assert r.returncode == 0 and 'info' in r.stdout and 'demo' in r.stdout
    assert all(f"    {c} " in r.stdout for c in ('run', 'report', 'tour')), r.stdout


@pytest.mark.parametrize('name', ['smollm2-135m', 'qwen3_next-tiny', 'mixtral-small', 'llama-3.1-8b', 'qwen3-next-80b-a3b'])
def test_info_prints_anatomy(name):
    r = run('info', name)
    assert r.returncode == 0, r.stderr
    assert '| params: total |' in r.stdout


@pytest.mark.parametrize('args, expected', [
    (['info', 'smollm3'], "model 'smollm3' is unknown; allowed: bundled: smollm2-135m; scaled: llama-tiny"),
    (['info', './no/such/model'], "model folder './no/such/model' does not exist"),
    (['demo', '--max-tokens', '1', '--out', '/tmp/slimlab-never-written'], "--max-tokens=1 must be at least 2"),
])
def test_bad_input_is_one_line(args, expected):
    r = run(*args)
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and expected in r.stderr, r.stderr


def test_unsupported_architecture(tmp_path):
    (tmp_path/'config.json').write_text(json.dumps({'model_type': 'gpt2', 'architectures': ['GPT2LMHeadModel']}))
    r = run('info', str(tmp_path))
    assert r.returncode == 2 and r.stderr.count('\n') == 1
    assert "architecture 'gpt2' is not supported; supported: llama, mistral, qwen2, qwen3, gemma2" in r.stderr
    assert "see 'Adding a family' in the anatomy chapter" in r.stderr


def test_folder_without_config(tmp_path):
    r = run('info', str(tmp_path))
    assert r.returncode == 2 and 'has no config.json' in r.stderr


def test_hub_id_offline_fails_clearly():
    r = run('info', 'example-org/not-a-model', env={'HF_HUB_OFFLINE': '1'})
    assert r.returncode == 2 and r.stderr.count('\n') == 1
    assert "could not load 'example-org/not-a-model' from the hub" in r.stderr


def test_demo_refuses_existing_results(tmp_path):
    (tmp_path/'report.md').write_text('earlier results')
    r = run('demo', '--out', str(tmp_path))
    assert r.returncode == 2 and 'already holds results; pass --overwrite' in r.stderr
    assert (tmp_path/'report.md').read_text() == 'earlier results'
