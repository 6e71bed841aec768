"""Two processes (torchrun, gloo on CPU) with one micro-batch each follow the loss curve of one process accumulating two
micro-batches: same global batch, same blocks at every step. Tolerance: relative 1e-4 on every logged loss term and on
the final weights (the order of the floating-point sums differs: an all-reduce of two gradients against their
accumulation)."""
import sys

import pytest

from helpers import DISTILL_WORKER, TOLERANCE, TWO, assert_close_weights, run
from slimlab.distill import read_metrics


def test_two_processes_equal_one_process_with_accumulation(tmp_path):
    steps = '6'
    run([sys.executable, str(DISTILL_WORKER), str(tmp_path/'one'), '--steps', steps, '--micro', '2', '--accum', '2'])
    run([*TWO, str(DISTILL_WORKER), str(tmp_path/'two'), '--steps', steps, '--micro', '2', '--accum', '1', '--processes', '2'])
    one, two = read_metrics(tmp_path/'one', 'train'), read_metrics(tmp_path/'two', 'train')
    assert [r['step'] for r in one] == [r['step'] for r in two] == list(range(1, 7))
    assert [r['tokens'] for r in one] == [r['tokens'] for r in two]  # the same global batch: 2 × 2 × 32 tokens per step
    for a, b in zip(one, two):
        assert a['lr'] == b['lr'] and a['lam'] == b['lam']
        for key in ('loss', 'lm', 'kd'):
            assert b[key] == pytest.approx(a[key], rel=TOLERANCE), (a['step'], key)
    assert one[-1]['kd'] < one[0]['kd']  # it trained
    assert_close_weights(tmp_path/'one', tmp_path/'two')
