"""The teacher cache across processes, kills and bad input.

- Two `torchrun` processes (gloo, CPU) write the same cache as one process: the processes split the shards, every
  tensor of every shard is equal.
- Two processes training from a cache follow one process accumulating two micro-batches: relative 1e-4 on every logged
  term and on the final weights (the tolerance of tests/test_distill_multiproc.py: an all-reduce of two gradients sums in
  another order than accumulation).
- A run from a cache killed with SIGKILL after its first checkpoint resumes to exactly the weights and loss curve of an
  uninterrupted run.
- A resume on another number of processes, and caches that do not fit the run (another tokenizer, another block length,
  fewer blocks than the budget, a missing shard) are refused before anything is written."""
import copy, json, sys
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import helpers
from helpers import (DISTILL_WORKER, TOLERANCE, TWO, assert_close_weights, assert_same_weights, kill_after_first_checkpoint, run,
                     save_tiny_teacher, snapshot, tiny_recipe, weights)
from slimlab.distill import CACHE_FILE, DistillConfig, DistillData, TeacherCache, cache_shard, distill, read_metrics, write_teacher_cache
from slimlab.lab import Job, load_model, load_tokenizer


def worker(run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return [str(DISTILL_WORKER), str(run_dir), '--cache', str(cache), '--cache-k', '32', *extra]


@pytest.fixture(scope='module')
def cache(tmp_path_factory) -> Path:
    "A cache of the worker's 48 blocks, written by one process."
    folder = tmp_path_factory.mktemp('one')/'cache'
    run([sys.executable, *worker(folder.parent/'unused', folder, '--cache-only')])
    return folder


def test_two_processes_write_the_cache_of_one(cache, tmp_path):
    run([*TWO, *worker(tmp_path/'unused', tmp_path/'cache', '--cache-only', '--processes', '2')])
    one, two = TeacherCache(cache), TeacherCache(tmp_path/'cache')
    assert one.spec == two.spec and one.spec.shards == 10
    for i in range(one.spec.shards):
        a, b = load_file(cache_shard(cache, i)), load_file(cache_shard(tmp_path/'cache', i))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"shard {i} differs"


def test_two_processes_from_a_cache_equal_one_with_accumulation(cache, tmp_path):
    run([sys.executable, *worker(tmp_path/'one', cache, '--steps', '6', '--micro', '2', '--accum', '2')])
    run([*TWO, *worker(tmp_path/'two', cache, '--steps', '6', '--micro', '2', '--accum', '1', '--processes', '2')])
    one, two = read_metrics(tmp_path/'one', 'train'), read_metrics(tmp_path/'two', 'train')
    assert [r['tokens'] for r in one] == [r['tokens'] for r in two] and len(one) == 6
    for a, b in zip(one, two):
        for key in ('loss', 'lm', 'kd'): assert b[key] == pytest.approx(a[key], rel=TOLERANCE), (a['step'], key)
    start = load_model('llama-tiny', seed=0).state_dict()
    assert any(not torch.equal(w, start[k]) for k, w in weights(tmp_path/'one').items() if k in start)  # it trained
    assert_close_weights(tmp_path/'one', tmp_path/'two')


def test_killed_run_from_a_cache_resumes_exactly(cache, tmp_path):
    steps = ['--steps', '20', '--save-every', '4']
    run([sys.executable, *worker(tmp_path/'straight', cache, *steps)])
    kill_after_first_checkpoint([sys.executable, *worker(tmp_path/'killed', cache, *steps)], tmp_path/'killed')
    run([sys.executable, *worker(tmp_path/'killed', cache, *steps, '--resume')])
    assert_same_weights(tmp_path/'straight', tmp_path/'killed')
    assert [r['loss'] for r in read_metrics(tmp_path/'killed', 'train')] == [r['loss'] for r in read_metrics(tmp_path/'straight', 'train')]


def test_resume_on_another_process_count_is_refused(cache, tmp_path):
    run([sys.executable, *worker(tmp_path/'run', cache, '--steps', '6', '--save-every', '3')])
    (tmp_path/'run'/'model'/'slimlab_distill.json').unlink()  # as if killed after the checkpoint at step 3
    before = snapshot(tmp_path/'run')
    out = run([*TWO, *worker(tmp_path/'run', cache, '--steps', '6', '--save-every', '3', '--resume', '--processes', '2')], ok=False)
    assert out.returncode != 0 and 'resume=True on 2 process(es), but the run was checkpointed on 1' in out.stderr
    assert snapshot(tmp_path/'run') == before


def test_caches_that_do_not_fit_are_refused_before_the_run(cache, tmp_path):
    tokenizer = load_tokenizer('llama-tiny')
    small = write_teacher_cache(load_model('llama-tiny', seed=1), torch.randint(0, 4096, (6, 32), generator=torch.Generator().manual_seed(0)),
                                tmp_path/'small', k=8, tokenizer=tokenizer, shard_blocks=2, job=Job(progress=False, log=None))
    other = copy.deepcopy(tokenizer)
    other.add_tokens(['<not-in-the-cache>'])
    config = DistillConfig(max_steps=2, micro_batch_size=2, seq_len=32, warmup_steps=0)
    student = load_model('llama-tiny')
    cases = [(DistillData(small, tokenizer=other), config, 'was made with another tokenizer than the run\'s'),
             (DistillData(small, tokenizer=tokenizer), DistillConfig(max_steps=2, micro_batch_size=2, seq_len=16, warmup_steps=0),
              "holds blocks of seq_len=32, but the run's seq_len=16"),
             (DistillData(small, tokenizer=tokenizer), DistillConfig(max_steps=4, micro_batch_size=2, seq_len=32, warmup_steps=0),
              'ends before the token budget: it holds 6 blocks (192 tokens), the run reads 8 (256 tokens)')]
    for data, cfg, message in cases:
        with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
            distill(student, tmp_path/'refused', data, cfg, job=Job(progress=False, log=None))
        assert not (tmp_path/'refused').exists()
    cache_shard(small.folder, 1).unlink()
    with pytest.raises(ValueError, match=r'is incomplete: 1 of 3 shards missing \(first shard-000001.safetensors\)'):
        distill(student, tmp_path/'refused', DistillData(TeacherCache(small.folder)), config)
    assert (small.folder/CACHE_FILE).exists()


# --- through a recipe and the `slimlab` command, as a user runs them ---

slimlab = partial(helpers.slimlab, env={'TQDM_DISABLE': '1'})


@pytest.fixture(scope='module')
def recipe(tmp_path_factory) -> Path:
    "A tiny recipe on a saved random Llama (a report), and a second teacher folder with other weights."
    import yaml
    root = tmp_path_factory.mktemp('recipe')
    for name, seed in (('teacher', 0), ('other-teacher', 1)): save_tiny_teacher(root/name, seed)
    plain = tiny_recipe(root/'teacher', distill=dict(eval_every=2, save_every=2), report=dict(max_tokens=128))
    (root/'tiny.yaml').write_text(yaml.safe_dump(plain))
    return root


def test_a_recipe_run_writes_its_cache_and_distils_from_it(recipe):
    r = slimlab('run', recipe/'tiny.yaml', '--out', recipe/'own', '--set', 'teacher_cache.k=16')
    assert r.returncode == 0, r.stderr
    cache = TeacherCache(recipe/'own'/'teacher-cache')
    assert (cache.spec.k, cache.spec.blocks, cache.spec.seq_len) == (16, 8, 32)  # 256 tokens: 8 blocks of 32
    stages = [read_metrics(stage, 'train') for stage in sorted((recipe/'own'/'schedule').glob('stage-*'))]
    assert stages and all(rows and all(row['kd'] > 0 for row in rows) for rows in stages)


def test_the_teacher_cache_command_then_a_run_reading_it(recipe):
    r = slimlab('teacher-cache', recipe/'tiny.yaml', '--out', recipe/'cache', '--k', '16')
    assert r.returncode == 0, r.stderr
    assert f"--set teacher_cache.k=16 --set teacher_cache.path={recipe/'cache'}" in r.stdout
    before = snapshot(recipe/'cache')
    r = slimlab('run', recipe/'tiny.yaml', '--out', recipe/'read', '--set', 'teacher_cache.k=16', '--set', f"teacher_cache.path={recipe/'cache'}")
    assert r.returncode == 0, r.stderr
    assert not (recipe/'read'/'teacher-cache').exists() and snapshot(recipe/'cache') == before
    r = slimlab('teacher-cache', recipe/'tiny.yaml', '--out', recipe/'cache')
    assert r.returncode == 2 and 'already holds results' in r.stderr and snapshot(recipe/'cache') == before
    r = slimlab('run', recipe/'tiny.yaml', '--out', recipe/'tail', '--set', 'teacher_cache.k=16', '--set', f"teacher_cache.path={recipe/'cache'}",
                '--set', 'teacher_cache.tail=true')
    assert r.returncode == 0, r.stderr
    first_kd = lambda run: read_metrics(sorted((recipe/run/'schedule').glob('stage-*'))[0], 'train')[0]['kd']
    assert first_kd('tail') != first_kd('read')  # the same student and batch: the tail bucket enters the divergence


@pytest.mark.parametrize('sets,message', [
    ([], "teacher_cache.path: teacher cache {cache} holds k=16 log-probabilities per position, but the run asks for k=64"),
    (['teacher_cache.k=16', 'distill.seq_len=16'], "holds blocks of seq_len=32, but the run's seq_len=16"),
    (['teacher_cache.k=16', 'distill.max_tokens=512'], 'ends before the token budget: it holds 8 blocks (256 tokens), the run reads 16 (512 tokens)'),
    (['teacher_cache.k=16', 'teacher={root}/other-teacher'], "was made from another teacher than the run's"),
    (['teacher_cache.k=16', 'loss.divergence.kind=reverse_kl'], "teacher_cache: loss.divergence='reverse_kl' needs the teacher's probability of every token"),
    (['teacher_cache.k=16', 'teacher_cache.tail=true', 'loss.divergence.temperature=2.0'], "teacher_cache: tail=True hands over the teacher's mass outside its top-k at temperature 1"),
], ids=['k', 'seq_len', 'budget', 'teacher', 'divergence', 'tail'])
def test_a_cache_that_does_not_fit_the_run_is_refused_before_training(recipe, sets, message):
    if not (recipe/'cache').exists(): assert slimlab('teacher-cache', recipe/'tiny.yaml', '--out', recipe/'cache', '--k', '16').returncode == 0
    before, out = snapshot(recipe/'cache'), recipe/f'refused-{len(list(recipe.iterdir()))}'
    args = [a for s in [*sets, f"teacher_cache.path={recipe/'cache'}"] for a in ('--set', s.format(root=recipe))]
    r = slimlab('run', recipe/'tiny.yaml', '--out', out, *args)
    assert r.returncode == 2 and message.format(cache=recipe/'cache') in r.stderr, r.stderr
    assert snapshot(recipe/'cache') == before and not (out/'schedule').exists()  # nothing trained, the cache untouched


def test_the_teacher_cache_command_refuses_what_it_cannot_write(recipe, tmp_path):
    r = slimlab('teacher-cache', recipe/'tiny.yaml', '--out', tmp_path/'c', '--set', 'correction.tokens=64')
    assert r.returncode == 2 and 'corrects its teacher before distilling, which only its run does' in r.stderr
    r = slimlab('teacher-cache', recipe/'tiny.yaml', '--out', tmp_path/'c', '--cache-dtype', 'fp8')
    assert r.returncode == 2 and "teacher_cache.dtype='fp8' is unknown; allowed: bfloat16, float32" in r.stderr, r.stderr
    assert not (tmp_path/'c').exists()


def test_the_recipe_dtype_is_the_frozen_teachers(recipe):
    "`--dtype bfloat16` (hardware.dtype): distillation reads a bfloat16 copy of the teacher; the students are still cut from its float32 weights."
    from slimlab.data import model_fingerprint
    r = slimlab('run', recipe/'tiny.yaml', '--out', recipe/'bf16', '--dtype', 'bfloat16', '--set', 'teacher_cache.k=16')
    assert r.returncode == 0, r.stderr
    teacher = load_model(recipe/'teacher')
    assert TeacherCache(recipe/'bf16'/'teacher-cache').spec.teacher == model_fingerprint(copy.deepcopy(teacher).to(torch.bfloat16))
    assert json.loads((recipe/'bf16'/'schedule'/'model'/'config.json').read_text())['dtype'] == 'float32'  # the student trained in float32
