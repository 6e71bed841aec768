"""Two processes (torchrun, gloo on CPU) with one micro-batch each follow the loss curve of one process accumulating two
micro-batches: same global batch, same blocks at every step. Tolerance: relative 1e-4 on every logged loss term and on
the final weights (the order of the floating-point sums differs: an all-reduce of two gradients against their
accumulation)."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slimlab.distill import read_metrics

WORKER = Path(__file__).with_name('distill_worker.py')
TOLERANCE = 1e-4  # relative


def run(cmd: list[str]):
    env = dict(os.environ, OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


def test_two_processes_equal_one_process_with_accumulation(tmp_path):
    steps = '6'
    run([sys.executable, str(WORKER), str(tmp_path/'one'), '--steps', steps, '--micro', '2', '--accum', '2'])
    run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(WORKER), str(tmp_path/'two'),
         '--steps', steps, '--micro', '2', '--accum', '1', '--processes', '2'])
    one, two = read_metrics(tmp_path/'one', 'train'), read_metrics(tmp_path/'two', 'train')
    assert [r['step'] for r in one] == [r['step'] for r in two] == list(range(1, 7))
    assert [r['tokens'] for r in one] == [r['tokens'] for r in two]  # the same global batch: 2 × 2 × 32 tokens per step
    for a, b in zip(one, two):
        assert a['lr'] == b['lr'] and a['lam'] == b['lam']
        for key in ('loss', 'lm', 'kd'):
            assert b[key] == pytest.approx(a[key], rel=TOLERANCE), (a['step'], key)
    assert one[-1]['kd'] < one[0]['kd']  # it trained
    wa, wb = load_file(tmp_path/'one'/'model'/'model.safetensors'), load_file(tmp_path/'two'/'model'/'model.safetensors')
    assert wa.keys() == wb.keys()
    for k in wa: torch.testing.assert_close(wb[k], wa[k], rtol=TOLERANCE, atol=TOLERANCE*wa[k].abs().max().item())
