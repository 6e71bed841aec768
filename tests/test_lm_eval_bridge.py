"""The lm-eval bridge on the real SmolLM2 agrees with slimlab's own log-likelihoods; lm-eval's own command runs the local tasks offline."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

from slimlab.evaluate import LOCAL_TASKS, run_lm_eval, score_local_task, write_task_configs
from slimlab.lab import load_model, load_tokenizer

LIMIT = 8 # examples per task: enough to exercise every request type, small enough for a minute on 2 CPU cores


def test_bridge_matches_direct_logliks_on_smollm2():
    model, tok = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    res = run_lm_eval(model, tok, list(LOCAL_TASKS), limit=LIMIT)
    for task in LOCAL_TASKS:
        direct = score_local_task(model, tok, task, limit=LIMIT)
        for metric in ('acc', 'acc_norm'):  # the same examples right: identical accuracy
            if metric in direct: assert direct[metric] == res.scores[f'{task}/{metric}'], (task, metric)
        if 'perplexity' in direct: assert direct['perplexity'] == pytest.approx(res.scores[f'{task}/perplexity'], rel=1e-4)
        samples = sorted(res.samples[task], key=lambda s: s['doc_id'])
        bridge = torch.tensor([[r[0] for r in s['resps'] for r in r] for s in samples])
        torch.testing.assert_close(bridge, torch.tensor(direct['loglik']), rtol=1e-4, atol=2e-3)


def test_lm_eval_command_runs_the_local_tasks_offline(tmp_path):
    model = load_model('llama-tiny')
    model.save_pretrained(tmp_path/'model'); load_tokenizer('llama-tiny').save_pretrained(tmp_path/'model')
    write_task_configs(tmp_path/'tasks')
    r = subprocess.run([str(Path(sys.executable).parent/'lm_eval'), '--model', 'hf', '--model_args', f"pretrained={tmp_path/'model'},dtype=float32",
                        '--device', 'cpu', '--include_path', str(tmp_path/'tasks'), '--tasks', 'slimlab_continuation', '--limit', '4',
                        '--output_path', str(tmp_path/'results')], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(next((tmp_path/'results').rglob('results_*.json')).read_text())['results']['slimlab_continuation']
    direct = score_local_task(model, load_tokenizer('llama-tiny'), 'slimlab_continuation', limit=4)
    assert results['acc,none'] == direct['acc'] and results['acc_norm,none'] == direct['acc_norm']
