"""A user's files are never lost to a job, and a model folder is loaded only when its weights match its config.

Each case runs the `slimlab` command as a user would, names the exit code and the message it expects, and for every
overwrite case checks that the files the job did not write survive byte for byte."""
import json
from pathlib import Path

import pytest
import yaml

import helpers
from helpers import save_tiny_teacher, slimlab, snapshot

TINY = ['--samples', '2', '--seq-len', '32', '--no-progress']


def user_files(folder: Path) -> dict:
    "Put a user's note and photo into `folder`; return what they hold."
    folder.mkdir(parents=True, exist_ok=True)
    (folder/'keepme.txt').write_text('my notes')
    (folder/'photos').mkdir(exist_ok=True); (folder/'photos'/'a.jpg').write_bytes(bytes(range(256)))
    return {'keepme.txt': b'my notes', 'photos/a.jpg': bytes(range(256))}


def survives(folder: Path, files: dict) -> bool:
    "Whether each of `files` is still in `folder`, byte for byte."
    return all((folder/name).read_bytes() == data for name, data in files.items())


def one_line_error(r, code: int, message: str):
    "The command failed with `code` and printed `message` as one line, its last (before it only progress bars), no traceback."
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().split('\n')
    assert 'Traceback' not in r.stderr and message in lines[-1] and sum(l.startswith('slimlab:') for l in lines) == 1, r.stderr[-2000:]


# --- folders that are never an output ------------------------------------------------------------------------------

@pytest.mark.parametrize('out, what', [('..', 'a folder above the current one'), ('.', 'the current folder'),
                                       ('/', 'the file-system root'), ('~', 'the home folder')])
def test_protected_output_folders(tmp_path, out, what):
    "`--out ..` from a child folder once emptied the parent; every protected folder is refused before any work."
    parent, child, home = tmp_path/'parent', tmp_path/'parent'/'child', tmp_path/'parent'/'home'
    files = user_files(parent); user_files(child); user_files(home)
    before = snapshot(parent)
    r = slimlab('prune', 'llama-tiny', '--drop-layers', '1', *TINY, '--out', out, '--overwrite', cwd=child, env={'HOME': str(home)})
    one_line_error(r, 2, f" is {what} (")
    assert snapshot(parent) == before and survives(parent, files)


@pytest.mark.parametrize('command', [['importance', 'llama-tiny', '--samples', '2', '--seq-len', '32'],
                                     ['moefy', 'llama-tiny', '--experts', '4', '--top-k', '2', *TINY],
                                     ['run', 'minitron-depth'],
                                     ['experiment', 'block-removal', '--scale', 'smoke']])
def test_protected_folder_for_every_job(tmp_path, command):
    "The one-shot jobs and the resumable ones share the guard."
    user_files(tmp_path); before = snapshot(tmp_path)
    r = slimlab(*command, '--out', '.', '--overwrite', cwd=tmp_path)
    one_line_error(r, 2, '--out . is the current folder')
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('out, message', [('/proc/slimlab-out', 'cannot be written (No such file or directory in /proc)'),
                                          ('afile.txt/sub', 'cannot be created: ')])
def test_unwritable_out_fails_before_work(tmp_path, out, message):
    "A folder that cannot be made is refused at once, naming the user's path (not an internal temporary one)."
    (tmp_path/'afile.txt').write_text('x')
    r = slimlab('prune', 'llama-tiny', '--drop-layers', '1', *TINY, '--out', out, cwd=tmp_path)
    one_line_error(r, 2, f"--out {out} {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['afile.txt']


# --- --overwrite replaces only what the job wrote -------------------------------------------------------------------

def test_overwrite_refuses_a_folder_slimlab_did_not_write(tmp_path):
    out = tmp_path/'mine'; files = user_files(out)
    r = slimlab('prune', 'llama-tiny', '--drop-layers', '1', *TINY, '--out', out, '--overwrite')
    one_line_error(r, 2, 'holds files that slimlab did not write (keepme.txt, photos); --overwrite never deletes them')
    assert snapshot(out) == files


def test_prune_overwrite_keeps_user_files(tmp_path):
    "A pruned model's folder with a user's note in it: overwriting replaces the model and keeps the note and the photo."
    from transformers import AutoModelForCausalLM
    out = tmp_path/'pruned'
    assert slimlab('prune', 'llama-tiny', '--drop-layers', '1', *TINY, '--out', out).returncode == 0
    files = user_files(out)
    r = slimlab('prune', 'llama-tiny', '--drop-layers', '2', *TINY, '--out', out, '--overwrite')
    assert r.returncode == 0, r.stderr
    assert survives(out, files)
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 2
    assert not any('.tmp-' in p.name or '.old-' in p.name for p in tmp_path.iterdir())


def test_importance_overwrite_keeps_user_files(tmp_path):
    out = tmp_path/'scores'
    args = ['importance', 'llama-tiny', '--samples', '2', '--seq-len', '32', '--metrics', 'channel', '--no-progress', '--out', out]
    assert slimlab(*args).returncode == 0
    files = user_files(out)
    r = slimlab(*args, '--overwrite')
    assert r.returncode == 0, r.stderr
    assert survives(out, files) and (out/'importance.json').exists()


@pytest.fixture
def tiny_recipe(tmp_path):
    "A recipe of a few steps on a tiny random Llama teacher saved as a folder."
    path = tmp_path/'tiny.yaml'; path.write_text(yaml.safe_dump(helpers.tiny_recipe(save_tiny_teacher(tmp_path/'teacher'))))
    return path


def test_run_overwrite_keeps_files_beside_the_run(tiny_recipe, tmp_path):
    "A recipe run owns its parts (recipe.yaml, schedule/, report/, ...) whole; a file beside them survives."
    out = tmp_path/'run'
    assert slimlab('run', tiny_recipe, '--out', out, '--no-progress').returncode == 0
    files = user_files(out)
    r = slimlab('run', tiny_recipe, '--out', out, '--overwrite', '--no-progress')
    assert r.returncode == 0, r.stderr
    assert survives(out, files) and (out/'schedule'/'model'/'config.json').exists()


def test_experiment_overwrite_keeps_user_files(tiny_recipe, tmp_path):
    "`experiment --overwrite` once deleted the whole folder at its start; now it replaces the arms' runs and results.json only."
    exp = dict(name='tiny-depth', finding='f', source='s', recipe=str(tiny_recipe),
               arms={'first': {}, 'second': {'overrides': {'prune.layer_metric': 'last_n'}}},
               claims=[{'better': 'first', 'worse': 'second'}], tasks=['slimlab_cloze'], task_limit=2)  # the files matter here, not the scores
    path = tmp_path/'tiny-depth.yaml'; path.write_text(yaml.safe_dump(exp))
    out = tmp_path/'exp'; files = user_files(out)
    r = slimlab('experiment', path, '--out', out, '--no-progress')
    one_line_error(r, 2, f"--out {out} already holds results; pass --overwrite to replace them, --resume to continue the experiment")
    r = slimlab('experiment', path, '--out', out, '--overwrite', '--no-progress')
    assert r.returncode == 0, r.stderr
    assert survives(out, files) and json.loads((out/'results.json').read_text())['arms'].keys() == {'first', 'second'}
    r = slimlab('experiment', path, '--out', out, '--overwrite', '--no-progress')
    assert r.returncode == 0, r.stderr
    assert survives(out, files)


# --- a model folder must hold the model its config describes ----------------------------------------------------------

@pytest.fixture
def tiny_folder(tmp_path):
    "A tiny random Llama saved with stock transformers, with its tokenizer."
    from slimlab.lab import load_model, load_tokenizer
    folder = tmp_path/'model'
    load_model('llama-tiny').save_pretrained(folder); load_tokenizer('llama-tiny').save_pretrained(folder)
    return folder


def edit_config(folder: Path, **changes):
    "Change fields of a saved config.json."
    config = json.loads((folder/'config.json').read_text())
    (folder/'config.json').write_text(json.dumps(config | changes))


@pytest.mark.parametrize('command', [['eval', '--max-tokens', '64', '--seq-len', '32'], ['prune', '--drop-layers', '1', *TINY, '--out', 'p'],
                                     ['importance', '--samples', '2', '--seq-len', '32', '--out', 'i']])
def test_config_with_more_layers_than_weights(tiny_folder, tmp_path, command):
    "config.json says 6 blocks, the weights hold 4: the missing blocks would be random, so every command refuses."
    edit_config(tiny_folder, num_hidden_layers=6)
    r = slimlab(command[0], tiny_folder, *command[1:], cwd=tmp_path)
    one_line_error(r, 2, f"model {tiny_folder}: the weights do not match config.json: 18 missing (model.layers.4.")
    assert not (tmp_path/'p').exists() and not (tmp_path/'i').exists()


def test_weights_of_another_shape(tiny_folder):
    edit_config(tiny_folder, intermediate_size=100)
    one_line_error(slimlab('eval', tiny_folder, '--max-tokens', '64', '--seq-len', '32'), 2, '12 of another shape (model.layers.0.mlp.down_proj.weight')


def test_unexpected_weights(tiny_folder):
    edit_config(tiny_folder, num_hidden_layers=3)
    one_line_error(slimlab('eval', tiny_folder, '--max-tokens', '64', '--seq-len', '32'), 2, '9 unexpected (model.layers.3.')


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_damaged_weight_file(tiny_folder, damage):
    weights = tiny_folder/'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:4096] if damage == 'truncate' else b'not a safetensors file' * 8)
    one_line_error(slimlab('eval', tiny_folder, '--max-tokens', '64', '--seq-len', '32'), 2,
                   f"model {tiny_folder}: a weight file is damaged (Error while deserializing header")
