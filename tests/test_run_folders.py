"""One run-folder rule for every job: a folder holding results is refused without --overwrite, --overwrite replaces only
what the job wrote (a user's files survive byte for byte), and --resume continues only a run of the same kind."""
from pathlib import Path

import pytest
import yaml

from helpers import slimlab, snapshot

CALIB = ['--samples', '2', '--seq-len', '32', '--no-progress']
JOBS = {  # job -> its command line, all but --out
    'prune': ['prune', 'llama-tiny', '--drop-layers', '1', *CALIB],
    'moefy': ['moefy', 'llama-tiny', '--experts', '4', '--top-k', '2', *CALIB],
    'merge': ['merge', 'qwen2_moe-tiny', '--num-experts', '4', '--strategy', 'merge', '--metric', 'expert_frequency', *CALIB],
    'importance': ['importance', 'llama-tiny', '--metrics', 'channel', *CALIB],
}


def last_line(r) -> str:
    return r.stderr.strip().split('\n')[-1]


@pytest.mark.parametrize('job', list(JOBS))
def test_one_shot_job_folder_rule(tmp_path, job):
    "Refused when the folder holds results; --overwrite replaces the job's files and keeps the user's note."
    out = tmp_path/'out'
    first = slimlab(*JOBS[job], '--out', out)
    assert first.returncode == 0, first.stderr[-2000:]
    (out/'notes.txt').write_text('mine')
    before = snapshot(out)
    again = slimlab(*JOBS[job], '--out', out)
    assert again.returncode == 2 and 'already holds results; pass --overwrite to replace them' in last_line(again), again.stderr[-2000:]
    assert snapshot(out) == before
    replaced = slimlab(*JOBS[job], '--out', out, '--overwrite')
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert (out/'notes.txt').read_text() == 'mine'
    assert (out/'.slimlab-owned').exists() and not any('.tmp-' in p.name for p in tmp_path.iterdir())


@pytest.fixture(scope='module')
def pruned(tmp_path_factory) -> Path:
    "A folder holding another job's results: a pruned model."
    out = tmp_path_factory.mktemp('folders')/'pruned'
    assert slimlab(*JOBS['prune'], '--out', out).returncode == 0
    return out


@pytest.fixture(scope='module')
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('recipe')/'tiny.yaml'
    path.write_text(yaml.safe_dump(dict(name='tiny', teacher='llama-tiny', prune=dict(final=dict(drop_layers=2)),
                                        distill=dict(max_tokens=64, micro_batch_size=2, seq_len=32, warmup_steps=1))))
    return path


@pytest.fixture(scope='module')
def experiment(tmp_path_factory, recipe) -> Path:
    path = tmp_path_factory.mktemp('experiment')/'tiny-exp.yaml'
    path.write_text(yaml.safe_dump(dict(name='tiny-exp', finding='f', source='s', recipe=str(recipe), claims=[{'better': 'a', 'worse': 'b'}],
                                        arms={'a': {}, 'b': {'overrides': {'prune.layer_metric': 'last_n'}}})))
    return path


def test_run_refuses_a_folder_with_results(pruned, recipe):
    before = snapshot(pruned)
    r = slimlab('run', recipe, '--out', pruned)
    assert r.returncode == 2 and f"--out {pruned} already holds results; pass --overwrite to replace them, --resume to continue" in last_line(r), r.stderr
    assert snapshot(pruned) == before


@pytest.mark.parametrize('command', [['run', '{recipe}'], ['experiment', '{experiment}']])
def test_resume_of_another_kind_of_run_is_refused(pruned, recipe, experiment, command):
    "A pruned model's folder is not a recipe run or an experiment to continue."
    before = snapshot(pruned)
    args = [a.format(recipe=recipe, experiment=experiment) for a in command]
    r = slimlab(*args, '--out', pruned, '--resume')
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"--out {pruned} holds files but no" in last_line(r) and 'choose another --out' in last_line(r), r.stderr
    assert snapshot(pruned) == before


def test_distill_resume_of_another_kind_is_refused(pruned):
    "The Python API speaks its own vocabulary: resume=True, run_dir."
    import torch
    from slimlab.distill import DistillConfig, DistillData, distill, lm_only, minitron_loss
    from slimlab.lab import Job, load_model
    with pytest.raises(FileExistsError, match=r"run_dir .* holds files but no distillation run \(its config.json is a model's\); choose another run_dir"):
        distill(load_model('llama-tiny'), pruned, DistillData(torch.zeros(4, 32, dtype=torch.long)),
                DistillConfig(max_steps=1, warmup_steps=0, seq_len=32, loss=lm_only(minitron_loss())),
                job=Job(resume=True))


def test_one_shot_job_speaks_python(pruned):
    "Called from Python, the same rule in Python's words; a job that runs in one pass has nothing to resume."
    from slimlab.lab import Job
    from slimlab.prune import run_prune
    before = snapshot(pruned)
    with pytest.raises(FileExistsError, match=r"out .* already holds results; pass overwrite=True to replace them or choose another out"):
        run_prune('llama-tiny', pruned, drop_layers=1)
    with pytest.raises(ValueError, match=r"resume=True: pruning runs in one pass and has nothing to continue; pass overwrite=True"):
        run_prune('llama-tiny', pruned, job=Job(resume=True), drop_layers=1)
    assert snapshot(pruned) == before
