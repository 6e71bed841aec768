"""A student with MTP heads and its online teacher, both sharded with FSDP2 (`slimlab.scale`, `fully_shard` on gloo) over two
`torchrun` processes that each read one micro-batch, follow one unsharded process (`DistillStudent`, `teacher_states`)
accumulating the same two micro-batches: 4 AdamW steps with gradient clipping, λ and β > 0 and chunked heads (several
chunks per head), with separate and with tied embeddings. The workers assert that there are two processes and that
every student and teacher parameter is a DTensor shard outside the forward (the teacher's again after every step).

Tolerance: relative 1e-4 on every loss term (total, lm, kd, mtp_lm, mtp_kd) of every micro-batch at every step, on the
gradient norm, and on the final weights (absolute 1e-4 × the tensor's largest entry): the sums are ordered differently
(a reduce-scatter of two gradients against their accumulation; the gradient norm over shards)."""
import json, sys
from pathlib import Path

import pytest
import torch

from helpers import TOLERANCE, TWO, run

WORKER = Path(__file__).with_name('fsdp2_worker.py')
STEPS = 4
TERMS = ('total', 'lm', 'kd', 'mtp_lm', 'mtp_kd')


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> Path:
    "The reference (one process, nothing sharded) in one/, the two sharded processes in two/."
    root = tmp_path_factory.mktemp('fsdp2')
    run([sys.executable, str(WORKER), str(root/'one'), '--steps', str(STEPS)])
    run([*TWO, str(WORKER), str(root/'two'), '--steps', str(STEPS)])
    return root


@pytest.mark.parametrize('embeddings', ['untied', 'tied'])
def test_sharded_student_and_teacher_follow_one_process(runs, embeddings):
    one, two = (json.loads((runs/d/f'{embeddings}.json').read_text()) for d in ('one', 'two'))
    assert [r['step'] for r in one] == [r['step'] for r in two] == list(range(STEPS))
    for a, b in zip(one, two):
        assert len(a['micro']) == len(b['micro']) == 2
        for ma, mb in zip(a['micro'], b['micro']):  # micro-batch r of the reference is what process r read
            for key in TERMS: assert mb[key] == pytest.approx(ma[key], rel=TOLERANCE), (a['step'], key)
            assert ma['kd'] > 0 and ma['mtp_kd'] > 0
        assert b['grad_norm'] == pytest.approx(a['grad_norm'], rel=TOLERANCE), a['step']
    wa, wb = (torch.load(runs/d/f'{embeddings}.pt') for d in ('one', 'two'))
    assert wa.keys() == wb.keys()
    for k in wa: torch.testing.assert_close(wb[k], wa[k], rtol=TOLERANCE, atol=TOLERANCE*wa[k].abs().max().item(), msg=lambda m: f"{k}: {m}")
