"""Every supported family, on its tiny config built from the stock transformers config class (issue 23).

One calibration pass gives every score that applies to the family; a fused family (Phi-3) scores and cuts exactly as the
same weights laid out unfused (Llama); the depth cut keeps the per-block config lists of the kept blocks.
The parameter counts, the identity plan and the saved cut are checked for every family in the anatomy and pruning
chapters and in tests/test_prune_roundtrip.py and tests/test_prune_axes.py.
"""
import pytest
import torch
import transformers

from slimlab.anatomy import FAMILY_REGISTRY, Anatomy
from slimlab.importance import METRICS, importance
from slimlab.lab import FAMILIES, SIZES, load_model, scaled_config, scaled_names
from slimlab.prune import ModelShape, apply_plan, make_plan, random_scores, sync_config

TINY = [n for n in scaled_names() if n.endswith('-tiny')]


def every_request(a: Anatomy) -> list[str]:
    "Every metric that applies to the model, and every value of its choice options that applies (`metric:option=value`)."
    requests = []
    for name, m in METRICS.items():
        if m.moe_only and not a.num_experts: continue
        options = {k: m.allowed(k, a) for k in m.choices}
        parts = options.get('part')
        if parts is not None and not parts: continue
        requests += [f"{name}:part={p}" for p in parts] if parts else [name]
    return requests


def test_every_family_has_scaled_configs():
    assert sorted(FAMILIES) == sorted(FAMILY_REGISTRY)
    assert all(f"{f}-{s}" in scaled_names() for f in FAMILIES for s in SIZES)


@pytest.mark.parametrize('name', TINY)
def test_one_calibration_pass_gives_every_score(name):
    model = load_model(name)
    a = Anatomy(model)
    requests = every_request(a)
    report = importance(model, torch.randint(0, 1000, (4, 24)), requests, batch_size=2, progress=False)
    assert sorted(report.scores) == sorted(requests)
    for label, score in report.scores.items():
        assert torch.isfinite(score.values).any(), label
    assert report['channel'].values.shape == (2*a.num_layers + 1, a.hidden_size)


def llama_twin(phi):
    "A Llama model holding a Phi-3 model's weights with q/k/v and gate/up unfused (the two families compute the same function)."
    c = phi.config
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_parameters['rope_theta'],
        tie_word_embeddings=False)).eval()
    q, kv, width = c.num_attention_heads*c.hidden_size//c.num_attention_heads, c.num_key_value_heads*c.hidden_size//c.num_attention_heads, c.intermediate_size
    state = {}
    for k, v in phi.state_dict().items():
        if 'qkv_proj' in k:
            for part, rows in zip('qkv', v.split([q, kv, kv])): state[k.replace('qkv_proj', f'{part}_proj')] = rows
        elif 'gate_up_proj' in k:
            for part, rows in zip(('gate', 'up'), v.split([width, width])): state[k.replace('gate_up_proj', f'{part}_proj')] = rows
        else: state[k] = v
    llama.load_state_dict(state)
    return llama


def test_fused_family_scores_and_cuts_as_its_unfused_twin():
    phi = load_model('phi3-tiny')
    llama = llama_twin(phi)
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad(): torch.testing.assert_close(phi(ids).logits, llama(ids).logits)
    requests = ['channel', 'head', 'neuron', 'taylor:part=head', 'taylor:part=neuron']
    scores = [importance(m, ids, requests, progress=False) for m in (phi, llama)]
    for label in requests: torch.testing.assert_close(scores[0][label].values, scores[1][label].values, rtol=1e-4, atol=1e-6)
    targets = dict(drop_layers=1, hidden_size=48, num_kv_heads=1, num_heads=1, intermediate_size=0.5)
    cuts = [apply_plan(m, make_plan(m, random_scores(phi, seed=3), **targets)) for m in (phi, llama)]
    with torch.no_grad(): torch.testing.assert_close(cuts[0](ids).logits, cuts[1](ids).logits)


@pytest.mark.parametrize('name, field', [('smollm3-tiny', 'no_rope_layers'), ('gemma2-tiny', 'layer_types'),
                                         ('gemma3_text-tiny', 'layer_types')])
def test_depth_cut_keeps_the_kept_blocks_entries(name, field):
    model = load_model(name)
    plan = make_plan(model, random_scores(model, seed=0), drop_layers=1)
    config = sync_config(model.config, plan)
    assert getattr(config, field) == [getattr(model.config, field)[i] for i in plan.layers]
    assert ModelShape.of(apply_plan(model, plan)).num_layers == len(plan.layers)
