"""Importance scoring on the real SmolLM2: in-memory block removal equals a stock 29-block model, the scores are sane,
and the CLI entry point writes a loadable report."""
from dataclasses import replace
import matplotlib
matplotlib.use('Agg')
import pytest
import torch

from slimlab.anatomy import Anatomy
from slimlab.data import calibration_samples
from slimlab.importance import Calibration, Importance, blocks_removed, importance, layers_to_remove, run_importance
from slimlab.prune import apply_plan, keep_all_plan
from slimlab.lab import Job, load_model, load_tokenizer


def stock_model(model, keep):
    "The reference: a stock model holding only the `keep` blocks, cut by the pruning surgery."
    plan = keep_all_plan(model)
    return apply_plan(model, replace(plan, layers=list(keep)))


@pytest.fixture(scope='module')
def smol():
    return load_model('smollm2-135m')


@pytest.fixture(scope='module')
def samples():
    return calibration_samples(load_tokenizer('smollm2-135m'), n_samples=4, seq_len=64, seed=0)


def test_block_removal_equals_stock_model(smol, samples):
    keep = [i for i in range(30) if i != 17]
    with torch.no_grad():
        reference = stock_model(smol, keep)(samples[:1], use_cache=False).logits
        with blocks_removed(smol, [17]): torch.testing.assert_close(smol(samples[:1], use_cache=False).logits, reference)


def test_scores_are_sane(smol, samples):
    report = importance(smol, samples, ['channel', 'head', 'neuron', 'block_influence', 'last_n'], progress=False)
    drop = importance(smol, samples[:2, :32], ['ppl_drop'], progress=False)['ppl_drop'].values  # 31 short passes
    assert report['channel'].values.shape == (61, 576) and report['head'].values.shape == (30, 3, 3)
    for label in ('channel', 'head', 'neuron', 'block_influence'):
        v = report[label].values
        assert torch.isfinite(v).all() and (v >= 0).all(), label
    # the first block turns embeddings into the working representation: it changes the hidden state most,
    # and removing it hurts more than removing any other block
    assert report['block_influence'].values.argmax() == 0
    assert drop.argmax() == 0 and drop[0] > 10
    assert layers_to_remove(report['last_n'], 6) == list(range(24, 30))


def test_run_importance_on_smollm2(tmp_path):
    out = tmp_path/'smol'
    run_importance('smollm2-135m', out, ['block_influence', 'head'], Calibration(samples=2, seq_len=32), job=Job(progress=False))
    back = Importance.load(out)
    assert back.meta['model'] == 'smollm2-135m' and back.meta['samples'] == 2 and back.meta['seq_len'] == 32
    assert back['head'].axes == ('layer', 'kv_group', 'head')
    assert (out/'head.png').stat().st_size > 1000
