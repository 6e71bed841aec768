"""Bad input and interruptions end a `slimlab` command with one clear line on stderr, never a traceback: Ctrl-C (status
130), a damaged checkpoint on --resume, a binary --data file, invalid YAML in a recipe or a --set value, a dry run that
resumes a run of another recipe (status 2); and a text too short for a bootstrap interval says so instead of printing
a zero-width one. Each case runs the installed command on tiny scaled models."""
import os, re, shutil, signal, subprocess, sys, time
from functools import partial
from pathlib import Path

import pytest
import yaml

import helpers
from helpers import ONE_THREAD, tiny_recipe

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'}
# a one-stage recipe on the tiny Llama whose distillation outlasts the test: a checkpoint every 2 steps of 64 tokens
TINY = tiny_recipe(distill=dict(max_tokens=64*2000, save_every=2, keep_last=2))


slimlab = partial(helpers.slimlab, env=ONE_THREAD, timeout=300)


def one_line(r: subprocess.CompletedProcess, status: int) -> str:
    "The single line a failed command wrote to stderr, once its exit status is checked."
    assert r.returncode == status, f"status {r.returncode}, not {status}:\n{r.stderr[-3000:]}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines, not one:\n{r.stderr[-3000:]}"
    return lines[0]


@pytest.fixture(scope='module')
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('recipe')/'tiny.yaml'
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope='module')
def interrupted(recipe, tmp_path_factory):
    "A `slimlab run` stopped with SIGINT once it has written two checkpoints: (run directory, completed process)."
    out = tmp_path_factory.mktemp('runs')/'run'
    proc = subprocess.Popen([str(BIN/'slimlab'), 'run', str(recipe), '--out', str(out), '--no-progress'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as at a terminal, even when CI runs in the background (SIGINT ignored there)
    checkpoints, deadline = out/'schedule'/'stage-1'/'checkpoints', time.monotonic() + 180
    while len(list(checkpoints.glob('step-????????'))) < 2 and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return out, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_ctrl_c_says_how_to_resume(interrupted):
    out, r = interrupted
    assert one_line(r, 130) == f"slimlab: interrupted; resume with the same command and --resume --out {out}"
    assert f"run directory: {out}" in r.stdout


def test_damaged_checkpoint_is_named_on_resume(interrupted, recipe, tmp_path):
    run = tmp_path/'run'
    shutil.copytree(interrupted[0], run)
    *_, before, latest = sorted((run/'schedule'/'stage-1'/'checkpoints').glob('step-????????'))
    weights = latest/'model.safetensors'
    size = weights.stat().st_size
    with open(weights, 'r+b') as f: f.truncate(size//2)  # a copy that stopped halfway
    line = one_line(slimlab('run', recipe, '--out', run, '--resume', '--no-progress'), 2)
    assert line == (f"slimlab: error: checkpoint {latest} is damaged (model.safetensors: truncated: {size//2:,} of {size:,} bytes); "
                    f"delete that folder and resume again to continue from {before.name}, the newest readable one before it")


def test_dry_run_refuses_to_resume_another_recipe(interrupted, recipe, tmp_path):
    other = tmp_path/'other.yaml'
    other.write_text(yaml.safe_dump(TINY | dict(prune=dict(TINY['prune'], final=dict(drop_layers=1)))))
    line = one_line(slimlab('run', other, '--dry-run', '--resume', '--out', interrupted[0]), 2)
    assert line == ("slimlab: error: --resume, but prune.final.drop_layers differ from the run's recipe.yaml; resume with the same "
                    "recipe, scale and --set overrides, or start a new run")
    r = slimlab('run', recipe, '--dry-run', '--resume', '--out', interrupted[0])  # the run's own recipe: planned, nothing refused
    assert r.returncode == 0 and 'recipe tiny: llama-tiny' in r.stdout, r.stderr[-3000:]


def test_invalid_recipe_yaml_gives_line_and_column(tmp_path):
    bad = tmp_path/'bad.yaml'
    bad.write_text("name: tiny\nteacher: llama-tiny\n  prune: {final: {drop_layers: 2}}\n")  # the third line indented by mistake
    line = one_line(slimlab('run', bad, '--out', tmp_path/'run'), 2)
    assert line == f"slimlab: error: recipe {bad} is not valid YAML, line 3, column 8: mapping values are not allowed here"
    assert not (tmp_path/'run').exists()


def test_invalid_set_value_names_the_argument(recipe, tmp_path):
    line = one_line(slimlab('run', recipe, '--out', tmp_path/'run', '--set', 'prune.final={drop_layers: 2'), 2)
    assert line == ("slimlab: error: --set 'prune.final={drop_layers: 2': the value is not valid YAML, column 16: expected ',' or '}', "
                    "but got '<stream end>'; quote a string value, e.g. prune.final='...'")


def test_binary_text_file_is_named(tmp_path):
    image = tmp_path/'plot.txt'
    image.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(64))
    line = one_line(slimlab('eval', 'llama-tiny', '--data', image), 2)
    assert line == f"slimlab: error: {image} could not be read as text data: 'utf-8' codec can't decode byte 0x89 in position 0: invalid start byte"


@pytest.fixture(scope='module')
def student(tmp_path_factory) -> Path:
    "The tiny Llama with other random weights, saved as a folder: a student to compare with llama-tiny."
    from slimlab.lab import load_model, load_tokenizer
    folder = tmp_path_factory.mktemp('student')/'student'
    load_model('llama-tiny', seed=1).save_pretrained(folder)
    load_tokenizer('llama-tiny').save_pretrained(folder)
    return folder


NO_CI = r"\(95% CI needs at least 2 blocks of 128 tokens; got 99\)"
@pytest.mark.parametrize('max_tokens, ppl, ratio', [
    (100, NO_CI, NO_CI),  # 99 scored tokens, one block: no interval
    (400, r"\(95% CI [\d.]+–[\d.]+, 399 tokens\)", r"\(95% CI [\d.]+–[\d.]+\)"),  # three blocks: an interval, as before
])
def test_short_text_has_no_interval(student, max_tokens, ppl, ratio):
    r = slimlab('eval', student, '--teacher', 'llama-tiny', '--max-tokens', max_tokens, '--seq-len', 32, '--no-speed')
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    teacher, compared = next(l for l in lines if l.startswith('llama-tiny: ppl=')), next(l for l in lines if ' vs llama-tiny: ppl ' in l)
    assert re.search(r"^llama-tiny: ppl=[\d.]+ " + ppl, teacher), teacher
    assert re.search(r": ratio [\d.]+ " + ratio, compared), compared
