"""`slimlab run` / `slimlab report` as a user runs them: a tiny recipe end to end in a temp dir, resume, refusal, bad input, the full-size dry run."""
import json, subprocess, sys
from pathlib import Path

import pytest
import yaml

from helpers import slimlab



def snapshot(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob('*'))}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A tiny random Llama saved as the teacher folder, and a recipe using every step but MoEfication: correction, two stages, report."
    from slimlab.lab import load_model, load_tokenizer
    root = tmp_path_factory.mktemp('recipes')
    load_model('llama-tiny').save_pretrained(root/'teacher')
    load_tokenizer('llama-tiny').save_pretrained(root/'teacher')
    recipe = dict(name='tiny', teacher=str(root/'teacher'), correction=dict(tokens=128),
                  prune=dict(final=dict(drop_layers=2, intermediate_size=96), schedule='depth-first', stages=2), calibration=dict(samples=4, seq_len=32),
                  loss=dict(chunk=128), distill=dict(max_tokens=256, micro_batch_size=2, seq_len=32, warmup_steps=1, eval_every=2, save_every=2),
                  data=dict(validation_tokens=128), report=dict(seq_len=32, max_tokens=256, speed_batch_sizes=[]),
                  scales=dict(lab={}, bigger={'distill.max_tokens': 512}))
    (root/'tiny.yaml').write_text(yaml.safe_dump(recipe))
    return root


@pytest.fixture(scope='module')
def finished(tiny):
    r = slimlab('run', tiny/'tiny.yaml', '--out', tiny/'run', '--no-progress')
    assert r.returncode == 0, r.stderr
    return tiny/'run', r


def test_run_end_to_end(finished):
    from transformers import AutoModelForCausalLM
    run, r = finished
    assert sorted(p.name for p in run.iterdir()) == ['correction', 'recipe.yaml', 'report', 'schedule']
    assert sorted(p.name for p in (run/'schedule').iterdir()) == ['model', 'schedule.json', 'stage-1', 'stage-2']
    student = AutoModelForCausalLM.from_pretrained(run/'schedule'/'model')  # a stock folder, no slimlab needed
    assert (student.config.num_hidden_layers, student.config.intermediate_size) == (2, 96)
    summary = json.loads((run/'report'/'summary.json').read_text())
    assert summary['student_params'] < summary['teacher_params'] and summary['distill_tokens'] == 256
    assert f"report: {run/'report'/'report.md'}" in r.stdout and 'test perplexity (255 tokens)' in r.stdout
    assert '# resolved from' in (run/'recipe.yaml').read_text()


def test_resume_after_completion_is_a_no_op(finished, tiny):
    run, _ = finished
    before = snapshot(run)
    r = slimlab('run', tiny/'tiny.yaml', '--out', run, '--resume')
    assert r.returncode == 0, r.stderr
    assert 'is a finished run of tiny; nothing to do' in r.stdout
    assert snapshot(run) == before


def test_report_prints_the_summary(finished):
    run, _ = finished
    before = snapshot(run)
    r = slimlab('report', run)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"report: {run/'report'/'report.md'}") and 'top-1 agreement' in r.stdout
    assert snapshot(run) == before


@pytest.mark.parametrize('extra, expected', [
    ([], 'already holds results; pass --overwrite to replace them, --resume to continue the run'),
    (['--resume', '--scale', 'bigger'], "--resume, but distill.max_tokens differ from the run's recipe.yaml"),
    (['--resume', '--overwrite'], '--resume and --overwrite exclude each other'),
])
def test_refuses_an_existing_run(finished, tiny, extra, expected):
    run, _ = finished
    before = snapshot(run)
    r = slimlab('run', tiny/'tiny.yaml', '--out', run, *extra)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and expected in r.stderr, r.stderr
    assert snapshot(run) == before


@pytest.mark.parametrize('sets, expected', [
    (['distill.max_tokns=512'], "unknown key distill.max_tokns (did you mean 'max_tokens'?)"),
    (['distill.max_tokens=0'], 'distill.max_tokens=0 must be an integer >= 1'),
    (['prune.schedule=custom', 'prune.stages=[{targets: {drop_layers: 1}, tokens: 256}]'],
     "the stage plans don't reach the final architecture: the last stage ends with num_layers 3 instead of 2"),
    (['teacher.model=./no/such/teacher'], "teacher.model: model folder './no/such/teacher' does not exist"),
    (['prune.layer_metric=task_drop:task=slimlab_clozed'], "prune: stage 1 of 2: metric 'task_drop': tasks slimlab_clozed unknown"),
    (['prune.layer_metric=angular_distanse'], "metric 'angular_distanse' is unknown (did you mean 'angular_distance'?)"),
])
def test_bad_recipe_fails_before_any_work(tiny, tmp_path, sets, expected):
    out = tmp_path/'never'
    r = slimlab('run', tiny/'tiny.yaml', '--out', out, *[a for s in sets for a in ('--set', s)])
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and expected in r.stderr, r.stderr
    assert not out.exists()


def test_task_scored_depth_choice(tiny, tmp_path):
    "Minitron's criterion inside a recipe: the first cut removes the window of blocks whose removal costs the corrected teacher the least on the task."
    import torch
    from slimlab.importance import importance
    from slimlab.lab import load_model, load_tokenizer
    metric = 'task_drop:measure=loglik,limit=2'
    r = slimlab('run', tiny/'tiny.yaml', '--out', tmp_path/'run', '--no-progress', '--set', f'prune.layer_metric={metric}', '--set', 'distill.max_tokens=128')
    assert r.returncode == 0, r.stderr
    corrected, label = load_model(tmp_path/'run'/'correction'/'model'), 'task_drop:n=2,measure=loglik,limit=2'  # the cut's window: n=2
    windows = importance(corrected, torch.zeros(1, 2, dtype=torch.long), [label], progress=False, tokenizer=load_tokenizer(tiny/'teacher'))[label]
    start = int(windows.values.argmin())
    assert json.loads((tmp_path/'run'/'schedule'/'stage-1'/'plan.json').read_text())['layers'] == [i for i in range(4) if i not in (start, start + 1)]


def test_unknown_recipe_key_in_file(tmp_path):
    (tmp_path/'r.yaml').write_text('name: x\nteacher: llama-tiny\nprune: {final: {drop_layers: 1}}\ndistill: {max_tokens: 64}\nlos: {}\n')
    r = slimlab('run', tmp_path/'r.yaml', '--dry-run')
    assert r.returncode == 2 and "unknown key los (did you mean 'loss'?)" in r.stderr


def test_slimqwen_full_dry_run():
    r = slimlab('run', 'slimqwen-full', '--dry-run')
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'teacher    48 layers, hidden 2048, heads 16/2, experts 512×512 top-10 + shared 512: total 79.67B, active 3.56B' in out
    assert 'stage 2    36 layers, hidden 1536, heads 16/2, experts 256×512 top-10 + shared 512: total 23.18B, active 2.05B' in out
    assert 'student vs published: total 23.18B vs 23.00B (+0.8%), active 2.05B vs 2.00B (+2.7%)' in out
    assert 'distillation: 120.00B tokens in 2 stage(s)' in out


def test_run_module_entry_point():
    "`python -m slimlab.cli` is the entry `accelerate launch -m slimlab.cli run ...` uses."
    r = subprocess.run([sys.executable, '-m', 'slimlab.cli', 'run', 'minitron-depth', '--dry-run'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'stage 1    20 layers' in r.stdout and 'teacher correction: 4.1K tokens' in r.stdout


SMOKE = ['distill.max_tokens=128', 'distill.micro_batch_size=2', 'distill.seq_len=32', 'distill.warmup_steps=1', 'distill.lr=1e-4',
         'distill.lr_floor=1e-5', 'distill.eval_every=0', 'distill.save_every=0', 'calibration.samples=4', 'calibration.seq_len=64',
         'data.validation_tokens=64', 'report.seq_len=64', 'report.max_tokens=128']  # one optimizer step of 64 tokens per stage


@pytest.mark.parametrize('recipe, sets, term', [
    ('slimqwen-lab', [], 'mtp_lm'),  # MoEfied SmolLM2, two stages, MTP heads
    ('recovery-lab', [], 'dynamics'),  # one-shot block removal, skew KL and FDD
])
def test_bundled_recipe_smoke_run(tmp_path, recipe, sets, term):
    "The bundled recipe as written (its loss terms included), on the real SmolLM2 with a smoke budget: it runs, and its student loads."
    from transformers import AutoModelForCausalLM
    from slimlab.distill import read_metrics
    from slimlab.mtp import load_mtp
    from slimlab.recipes import load_recipe
    out = tmp_path/recipe
    r = slimlab('run', recipe, '--out', out, '--no-progress', *[a for s in SMOKE + sets for a in ('--set', s)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'test perplexity (127 tokens)' in r.stdout
    spec = load_recipe(recipe)
    stages = sorted(p.name for p in (out/'schedule').glob('stage-*'))
    assert len(stages) == (spec.prune.stages if spec.prune.schedule != 'one-shot' else 1)
    for stage in stages:  # every stage trained the recipe's extra term
        rows = read_metrics(out/'schedule'/stage, 'train')
        assert rows and all(row[term] > 0 for row in rows)
    student = AutoModelForCausalLM.from_pretrained(out/'schedule'/'model')  # a stock folder
    assert student.config.num_hidden_layers == 30 - spec.prune.final['drop_layers']
    if spec.training.mtp_depth:
        heads = load_mtp(student, out/'schedule'/'model')
        assert (heads.depth, heads.config.hidden_size) == (spec.training.mtp_depth, spec.prune.final['hidden_size'])
