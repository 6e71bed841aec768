"""Importance scoring on tiny scaled models: the pass restores the model, batches accumulate, blocks come out and go back
exactly, bad input fails before any forward pass, reports round-trip, and `run_importance` writes atomically."""
from dataclasses import replace
import json, math

import matplotlib
matplotlib.use('Agg')
import pytest
import torch

import slimlab.lab
from slimlab.anatomy import Anatomy
from slimlab.importance import (Calibration, Importance, Request, Score, blocks_removed, default_metrics,
                                importance, layers_to_remove, plot_score, run_importance)
from slimlab.prune import apply_plan, keep_all_plan
from slimlab.lab import Job, load_model


def stock_model(model, keep):
    "The reference: a stock model holding only the `keep` blocks, cut by the pruning surgery."
    plan = keep_all_plan(model)
    return apply_plan(model, replace(plan, layers=list(keep)))


TINY_CAL = Calibration(samples=2, seq_len=16)
SAMPLES = torch.randint(0, 1000, (4, 12), generator=torch.Generator().manual_seed(0))


def n_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def in_pass_metrics(model):
    "Every metric the model supports that comes from the calibration pass (gradient ones included)."
    return default_metrics(Anatomy(model)) + ['taylor:part=head']


@pytest.mark.parametrize('name', ['qwen2_moe-tiny', 'mixtral-tiny', 'llama-tiny'])
def test_four_batches_equal_one(name):
    model = load_model(name)
    metrics = in_pass_metrics(model)
    once = importance(model, SAMPLES, metrics, batch_size=4, progress=False)
    one_by_one = importance(model, SAMPLES, metrics, batch_size=1, progress=False)
    for label, score in once.scores.items():
        torch.testing.assert_close(score.values, one_by_one[label].values, rtol=1e-4, atol=1e-5, equal_nan=True, msg=label)


def test_pass_leaves_the_model_as_it_was_even_on_error():
    model = load_model('llama-tiny').train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    first.requires_grad_(False)
    before = n_hooks(model)
    calls = []

    def fail_on_second_batch(module, args):
        calls.append(1)
        if len(calls) == 2: raise RuntimeError('boom')
    handle = Anatomy(model).embed.register_forward_pre_hook(fail_on_second_batch)
    with pytest.raises(RuntimeError, match='boom'):
        importance(model, SAMPLES, ['taylor', 'channel', 'block_influence', 'head'], batch_size=2, progress=False)
    handle.remove()
    assert n_hooks(model) == before
    assert model.training
    assert torch.equal(first.grad, torch.ones_like(first)) and not first.requires_grad
    assert all(p.grad is None and p.requires_grad for p in list(model.parameters())[1:])


def test_deterministic_for_a_seed():
    model = load_model('qwen3_moe-tiny')
    metrics = in_pass_metrics(model)
    r1, r2 = (importance(model, SAMPLES, metrics, seed=3, progress=False) for _ in range(2))
    for label in r1.scores: assert torch.equal(r1[label].values.nan_to_num(-1), r2[label].values.nan_to_num(-1)), label
    other = importance(model, SAMPLES, ['random'], seed=4, progress=False)
    assert not torch.equal(other['random'].values, r1['random'].values)


@pytest.mark.parametrize('name, drop', [('llama-tiny', [0]), ('qwen3_next-tiny', [0, 3]), ('qwen2_moe-tiny', [2]),
                                        ('mixtral-tiny', [1, 2]), ('qwen3_moe-tiny', [3])])
def test_blocks_removed_equals_a_stock_model_and_restores(name, drop):
    model = load_model(name)
    keep = [i for i in range(4) if i not in drop]
    config_before = model.config.to_dict()
    with torch.no_grad():
        full = model(SAMPLES, use_cache=False).logits
        reference = stock_model(model, keep)(SAMPLES, use_cache=False).logits
        with blocks_removed(model, drop):
            assert len(Anatomy(model).blocks) == len(keep)
            assert [Anatomy(model).attention(i).layer_idx for i in range(len(keep))] == list(range(len(keep)))
            torch.testing.assert_close(model(SAMPLES, use_cache=False).logits, reference)
        assert torch.equal(model(SAMPLES, use_cache=False).logits, full)
    assert model.config.to_dict() == config_before
    assert [Anatomy(model).attention(i).layer_idx for i in range(4)] == [0, 1, 2, 3]


def test_blocks_removed_restores_after_error():
    model = load_model('llama-tiny')
    blocks = list(Anatomy(model).blocks)
    with pytest.raises(KeyError):
        with blocks_removed(model, [1, 2]): raise KeyError('inside')
    assert list(Anatomy(model).blocks) == blocks and model.config.num_hidden_layers == 4


@pytest.mark.parametrize('samples, metrics, message', [
    (SAMPLES[:0], ['channel'], 'samples=0: at least 1 calibration sample is needed'),
    (SAMPLES, ['reap'], "metric 'reap' needs routed experts and this llama model has none; allowed for this model: channel"),
    (SAMPLES, ['expert_frequency'], "needs routed experts"),
    (torch.zeros(1, 2049, dtype=torch.long), ['channel'], "seq_len=2049 is longer than the model's context (max_position_embeddings); allowed: 2..2048"),
    (SAMPLES, ['channels'], "metric 'channels' is unknown (did you mean 'channel'?); allowed: channel, head, neuron"),
    (SAMPLES, ['head:batch=max'], "option batch='max' of metric 'head' is not allowed for this llama model; allowed: mean, l2"),
    (SAMPLES, ['angular_distance:n=4'], "allowed: 1..3"),
    (SAMPLES, ['ppl_drop:window=2'], "option 'window' of metric 'ppl_drop' is unknown; allowed: n, scorer"),
    (SAMPLES, [], "metrics must be a non-empty list"),
])
def test_bad_input_fails_before_any_forward_pass(samples, metrics, message):
    model = load_model('llama-tiny')
    calls = []
    handle = Anatomy(model).embed.register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError) as e: importance(model, samples, metrics, progress=False)
    handle.remove()
    assert message in str(e.value) and calls == []


def test_report_round_trip_and_plots(tmp_path):
    model = load_model('qwen3_next-tiny')
    metrics = default_metrics(Anatomy(model)) + ['neuron:part=shared_expert', 'angular_distance:n=2', 'ppl_drop:n=3']
    report = importance(model, SAMPLES[:2], metrics, progress=False)
    assert report['head'].values[:3].isnan().all() and not report['head'].values[3].isnan().any()  # heads: full attention only
    back = Importance.load(report.save(tmp_path/'r'))
    assert back.meta == report.meta == json.loads((tmp_path/'r'/'importance.json').read_text())['meta']
    for label, score in report.scores.items():
        assert back[label].axes == score.axes and back[label].meta == score.meta
        assert torch.equal(back[label].values.nan_to_num(-1), score.values.nan_to_num(-1))
        plot_score(score).figure.clf()
    assert report['ppl_drop:n=3'].axes == ('window_start',) and report['ppl_drop:n=3'].meta['window'] == 3


def test_ppl_drop_with_a_scorer_callback():
    model = load_model('llama-tiny')
    def blocks_left(m): return float(m.config.num_hidden_layers)  # a "task score" that only sees how many blocks are left
    scored = importance(model, SAMPLES, [Request('ppl_drop', {'n': 2, 'scorer': blocks_left})], progress=False)
    assert torch.equal(scored['ppl_drop:n=2,scorer=blocks_left'].values, torch.full((3,), 2.))
    assert scored['ppl_drop:n=2,scorer=blocks_left'].meta['options'] == {'n': 2, 'scorer': 'blocks_left'}


def test_layers_to_remove():
    per_layer = Score(torch.tensor([5., 1., 3., 0., 4.]), ('layer',))
    assert layers_to_remove(per_layer, 2) == [1, 3]
    window = Score(torch.tensor([3., 1., 2.]), ('window_start',), {'window': 3})
    assert layers_to_remove(window, 3) == [1, 2, 3]
    with pytest.raises(ValueError, match='allowed: 1..4'): layers_to_remove(per_layer, 5)


def test_run_importance_writes_atomically(tmp_path):
    out = tmp_path/'scores'
    report = run_importance('llama-tiny', out, ['channel', 'angular_distance:n=2'], Calibration(samples=2, seq_len=16), job=Job(progress=False))
    assert sorted(p.name for p in out.iterdir()) == ['.slimlab-owned', 'angular_distance_n_2.png', 'channel.png', 'importance.json', 'scores.safetensors']
    assert Importance.load(out).meta == report.meta and report.meta['model'] == 'llama-tiny'
    with pytest.raises(FileExistsError, match='already holds results; pass overwrite=True'):
        run_importance('llama-tiny', out, ['channel'], TINY_CAL, job=Job(progress=False))
    run_importance('llama-tiny', out, ['head'], TINY_CAL, job=Job(overwrite=True, progress=False))
    assert list(Importance.load(out).scores) == ['head']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scores']  # no temporary or old folder left


def test_run_importance_failure_keeps_old_results(tmp_path, monkeypatch):
    out = tmp_path/'scores'
    run_importance('llama-tiny', out, ['channel'], TINY_CAL, job=Job(progress=False))
    monkeypatch.setattr(Importance, 'save', lambda self, path: (_ for _ in ()).throw(OSError('disk full')))
    with pytest.raises(OSError, match='disk full'): run_importance('llama-tiny', out, ['head'], TINY_CAL, job=Job(overwrite=True, progress=False))
    monkeypatch.undo()
    assert list(Importance.load(out).scores) == ['channel']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scores']


@pytest.mark.parametrize('model, calibration, metrics, message', [
    ('llama-tiny', dict(samples=0, seq_len=16), None, 'samples=0 must be an integer >= 1'),
    ('llama-tiny', dict(samples=2, seq_len=1), None, 'seq_len=1 must be an integer >= 2'),
    ('llama-tiny', dict(samples=2, seq_len=16, batch_size=0), None, 'batch_size=0 must be an integer >= 1'),
    ('llama-tiny', dict(samples=2, seq_len=4096), None, 'allowed: 2..2048'),
    ('llama-tiny', dict(samples=2, seq_len=16), ['reap'], 'needs routed experts'),
    ('llama-3.1-8b', dict(samples=2, seq_len=16), None, 'shape-only'),
    ('llama-tiny', dict(samples=2, seq_len=16), ['channel:seq=max'], 'allowed: mean, l2'),
])
def test_run_importance_validates_before_loading_weights(tmp_path, monkeypatch, model, calibration, metrics, message):
    monkeypatch.setattr(slimlab.lab, 'load_model', lambda *a, **k: pytest.fail('weights loaded before validation'))
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace('.', r'\.')):
        run_importance(model, tmp_path/'out', metrics, Calibration(**calibration), job=Job(progress=False))
    assert not (tmp_path/'out').exists()


def test_mixtral_routing_known_by_construction():
    "Mixtral (experts named num_local_experts): token t in 0..7 goes to experts t and t+1 (mod 8) at every layer."
    model = load_model('mixtral-tiny')
    a = Anatomy(model)
    with torch.no_grad():
        a.embed.weight[:8] = torch.eye(8, a.hidden_size)
        for i in range(a.num_layers):
            a.attention_projections(i)['o'].weight.zero_()
            a.experts(i).down_proj[:, :8].zero_()
            route = torch.zeros(a.num_experts, a.hidden_size)
            for t in range(8): route[[t, (t + 1) % 8], t] = 1.0
            a.router(i).weight.copy_(route)
    tokens = torch.randint(0, 8, (3, 20), generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(tokens.flatten(), minlength=8).double()
    report = importance(model, tokens, ['expert_frequency', 'reap', 'expert_norm'], progress=False)
    expected = (counts + counts.roll(1)) / tokens.numel()
    torch.testing.assert_close(report['expert_frequency'].values.double(), expected.expand(4, 8))
    # top-2 weights are renormalised to 1/2 each, so REAP is half the mean output norm of the routed tokens
    torch.testing.assert_close(report['reap'].values, report['expert_norm'].values / 2)
    assert math.isclose(report['expert_frequency'].values.sum().item(), 4 * 2, rel_tol=1e-6)
