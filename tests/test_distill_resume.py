"""A distillation run killed with SIGKILL after its first checkpoint and then resumed ends with exactly the weights and
loss curve of a run that was never interrupted (tiny Llama, one CPU thread, deterministic); a half-written checkpoint
folder is ignored (and removed) on resume; tied embeddings survive a checkpoint; a run directory that holds results is
refused without being modified."""
import shutil, sys
from pathlib import Path

import pytest
import torch
import transformers

from helpers import DISTILL_WORKER, assert_same_weights, kill_after_first_checkpoint, run, snapshot
from slimlab.distill import CHECKPOINTS, DistillConfig, DistillData, distill, read_metrics
from slimlab.lab import Job, load_model, scaled_config

RUN = ['--steps', '40', '--save-every', '4']


def worker(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(DISTILL_WORKER), str(run_dir), *RUN, *extra]


@pytest.fixture(scope='module')
def reference(tmp_path_factory) -> Path:
    "An uninterrupted run."
    run_dir = tmp_path_factory.mktemp('reference')/'run'
    run(worker(run_dir))
    return run_dir


def test_killed_run_resumes_exactly(reference, tmp_path):
    run_dir = tmp_path/'run'
    kill_after_first_checkpoint(worker(run_dir), run_dir)
    partial = run_dir/CHECKPOINTS/'step-00000099.tmp'  # a newer checkpoint that was being written: must not be used
    partial.mkdir()
    (partial/'model.safetensors').write_bytes(b'torn')
    run(worker(run_dir, '--resume'))
    assert not partial.exists()
    assert_same_weights(reference, run_dir)
    ref_rows, rows = read_metrics(reference, 'train'), read_metrics(run_dir, 'train')
    assert [r['step'] for r in rows] == list(range(1, 41))
    for key in ('loss', 'lm', 'kd', 'lr', 'lam', 'tokens'): assert [r[key] for r in rows] == [r[key] for r in ref_rows], key


def test_refused_run_dir_is_not_modified(reference):
    before = snapshot(reference)
    config = DistillConfig(max_steps=2, seq_len=32, warmup_steps=0)
    student, data = load_model('llama-tiny'), DistillData(torch.zeros(4, 32, dtype=torch.long))
    with pytest.raises(FileExistsError, match='already holds results; pass overwrite=True to replace them, resume=True to continue the distillation run'):
        distill(student, reference, data, config, teacher=load_model('llama-tiny', seed=1))
    with pytest.raises(ValueError, match="resume=True, but max_steps, micro_batch_size, lr, lr_floor, warmup_steps, loss differ"):
        distill(student, reference, data, config, teacher=load_model('llama-tiny', seed=1), job=Job(resume=True))
    assert snapshot(reference) == before


def test_tied_embeddings_resume_exactly(tmp_path):
    "Tied input and output embeddings (SmolLM2's layout) are stored once in a checkpoint and tied again on resume."
    config = scaled_config('llama-tiny')
    config.tie_word_embeddings = True
    def model(seed: int):
        torch.manual_seed(seed)
        return transformers.AutoModelForCausalLM.from_config(config)
    blocks = torch.randint(0, 4096, (32, 32), generator=torch.Generator().manual_seed(0))
    run = DistillConfig(max_steps=6, micro_batch_size=2, seq_len=32, lr=1e-3, lr_floor=1e-4, warmup_steps=1, log_every=1, save_every=3,
                        eval_every=0)
    teacher = model(1)
    straight = distill(model(0), tmp_path/'straight', DistillData(blocks), run, teacher=teacher, job=Job(progress=False, log=None))
    student = model(0)
    distill(student, tmp_path/'resumed', DistillData(blocks), run, teacher=teacher, job=Job(progress=False, log=None))
    shutil.rmtree(tmp_path/'resumed'/'model')  # as if killed after the checkpoint at step 3
    resumed = distill(student, tmp_path/'resumed', DistillData(blocks), run, teacher=teacher, job=Job(resume=True, progress=False, log=None))
    assert_same_weights(straight.run_dir, resumed.run_dir)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(resumed.model_dir)
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
