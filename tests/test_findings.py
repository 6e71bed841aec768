"""Every bundled experiment runs at smoke scale on the bundled SmolLM2 (what CI can afford), its students are stock folders,
and its results feed the findings table; a killed experiment resumes arm by arm."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from slimlab.recipes import plan_recipe
from slimlab.findings import VERDICTS, arm_recipes, at_scale, bundled_experiments, finding_rows, findings_markdown, read_experiment, run_experiment, save_results
from slimlab.results import result_figures
from slimlab.lab import Job


@pytest.mark.parametrize('name', bundled_experiments())
def test_bundled_experiment_at_smoke_scale(name, tmp_path):
    from transformers import AutoModelForCausalLM
    exp = read_experiment(name)
    res = run_experiment(name, tmp_path/name, scale='smoke', job=Job(progress=False, log=None))
    assert list(res['arms']) == list(exp.arms) and res['scale'] == 'smoke'
    assert [(c['better'], c['worse']) for c in res['claims']] == [(c.better, c.worse) for c in exp.claims]
    assert all(c['verdict'] in VERDICTS for c in res['claims'])
    for c in res['claims']:
        if c.get('metric') == 'convergence':  # both ends of the gap: the one-shot perplexities and the recovered ones
            assert c['one_shot_better'] > 0 and c['one_shot_worse'] > 0 and c['gap'] >= 0
            assert c['shrink'] == pytest.approx(c['one_shot_gap'] - c['gap'])
    assert res['seconds'] > 0  # every experiment records its wall time
    for arm, r in res['arms'].items():
        if exp.mtp is not None:  # one frozen base: every arm trained its own module on the same tokens
            spec = at_scale(exp, 'smoke').mtp
            assert r['train_tokens'] == res['tokens'] == spec.epochs*spec.tokens and r['curve']
            assert (tmp_path/name/arm/'mtp.safetensors').is_file()
            assert res['decoding']['identical_share'] == 1 or res['acceptance']['dtype'] == 'bfloat16'  # bfloat16 may round a near-tie differently
        else:
            assert r['distill_tokens'] == res['tokens'] == 256  # equal budgets
            distilled_from = plan_recipe(arm_recipes(exp, 'smoke')[arm]).rows[-2].total  # the teacher, its MoE or the previous stage
            assert r['params'] < distilled_from and r['curve']
            AutoModelForCausalLM.from_pretrained(tmp_path/name/arm/'schedule'/'model')  # a stock folder
        if exp.acceptance is not None:  # every arm decoded the same prompts with its MTP heads
            assert len(r['accepted']) == res['acceptance']['prompts'] and r['acceptance']['1-token'] >= r['acceptance']['2-token']
    if exp.ranking is not None:
        assert res['ranking']['arms'] == list(exp.arms) and res['ranking']['verdict'] in VERDICTS
    saved = save_results(res, tmp_path/'results'/name)
    assert all((saved/f).stat().st_size > 0 for f in result_figures(res))
    rows = finding_rows([exp], tmp_path/'results')  # smoke results are not findings
    assert [r['verdict'] for r in rows] == ['not run yet']*(len(exp.claims) + (exp.ranking is not None))


def test_findings_table_of_the_bundled_experiments():
    rows = finding_rows()
    assert {r['experiment'] for r in rows} == set(bundled_experiments())
    assert all(r['verdict'] in VERDICTS + ('not run yet',) for r in rows)
    assert findings_markdown(rows).count('\n') == len(rows) + 1


@pytest.fixture
def tiny_experiment(tmp_path):
    "Two arms of a tiny random Llama recipe (the chapter's tiny experiment), with teacher correction so each arm has two phases."
    import yaml
    from slimlab.lab import load_model, load_tokenizer
    load_model('llama-tiny').save_pretrained(tmp_path/'teacher'); load_tokenizer('llama-tiny').save_pretrained(tmp_path/'teacher')
    recipe = dict(name='tiny', teacher=str(tmp_path/'teacher'), correction=dict(tokens=256),
                  prune=dict(final=dict(drop_layers=2)), calibration=dict(samples=4, seq_len=32), loss=dict(chunk=128),
                  distill=dict(max_tokens=2048, micro_batch_size=2, seq_len=32, warmup_steps=1, eval_every=0, save_every=4),
                  data=dict(validation_tokens=128), report=dict(seq_len=32, max_tokens=256, speed_batch_sizes=[]))
    (tmp_path/'tiny.yaml').write_text(yaml.safe_dump(recipe))
    exp = dict(name='tiny-depth', finding='f', source='s', recipe=str(tmp_path/'tiny.yaml'),
               arms={'first': {'overrides': {'prune.layer_metric': 'block_influence'}}, 'second': {'overrides': {'prune.layer_metric': 'last_n'}}},
               claims=[{'better': 'first', 'worse': 'second'}], tasks=['slimlab_cloze'], task_limit=2)
    (tmp_path/'tiny-depth.yaml').write_text(yaml.safe_dump(exp))
    return tmp_path/'tiny-depth.yaml'


EXPERIMENT = """
from slimlab.findings import run_experiment
from slimlab.lab import Job
run_experiment({path!r}, {out!r}, job=Job(resume={resume}, progress=False))
"""


def test_killed_experiment_resumes_arm_by_arm(tiny_experiment, tmp_path):
    "SIGKILL while the second arm distils; resume leaves the finished first arm untouched and completes the second."
    out = tmp_path/'exp'
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    script = lambda resume: [sys.executable, '-c', EXPERIMENT.format(path=str(tiny_experiment), out=str(out), resume=resume)]
    p = subprocess.Popen(script(False), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_done, second_ckpt = out/'first'/'schedule'/'model'/'config.json', out/'second'/'schedule'/'stage-1'/'checkpoints'
    deadline = time.time() + 600
    while not (second_ckpt.is_dir() and any(second_ckpt.iterdir())) and time.time() < deadline and p.poll() is None: time.sleep(0.2)
    assert first_done.exists() and p.poll() is None, 'the experiment did not reach the second arm\'s distillation in time'
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out/'results.json').exists() and not (out/'second'/'schedule'/'model').exists()
    stamp = first_done.stat().st_mtime_ns
    r = subprocess.run(script(True), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert first_done.stat().st_mtime_ns == stamp  # the finished arm was not run again
    res = json.loads((out/'results.json').read_text())
    assert set(res['arms']) == {'first', 'second'} and res['arms']['second']['distill_tokens'] == 2048
    assert 'seconds' not in res  # the resumed call did only part of the work: no wall time


def test_home_page_shows_the_current_findings():
    "The docs home page (and README) keep the findings table as an output: it must be the table of the committed results."
    nb = json.loads((Path(__file__).parent.parent/'nbs'/'index.ipynb').read_text())
    cell = next(c for c in nb['cells'] if c['cell_type'] == 'code' and 'Markdown(findings_markdown' in ''.join(c['source']))
    shown = ''.join(next(o for o in cell['outputs'] if 'data' in o)['data']['text/markdown'])
    assert shown == findings_markdown(finding_rows()), 're-run nbs/index.ipynb (and make readme) after committing results'


def test_seeds_from_the_command_line(tiny_experiment, tmp_path):
    "`--seeds` runs every arm once per seed and pools the claim; a single seed is refused before anything is written."
    from helpers import slimlab
    bad = slimlab('experiment', tiny_experiment, '--out', tmp_path/'never', '--seeds', '3', '--no-progress')
    assert bad.returncode == 2 and 'seeds=[3] must be a list of at least two different integers' in bad.stderr, bad.stderr
    assert not (tmp_path/'never').exists()
    r = slimlab('experiment', tiny_experiment, '--out', tmp_path/'exp', '--seeds', '0', '1', '--no-progress')
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path/'exp'/'results.json').read_text())
    assert res['seeds'] == [0, 1] and sorted(res['claims'][0]['seeds']) == ['0', '1']
    assert {p.name for p in (tmp_path/'exp').iterdir() if p.is_dir()} == {'first@seed0', 'first@seed1', 'second@seed0', 'second@seed1'}
