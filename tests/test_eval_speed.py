"""The cost formulas on a real pruned model, and the decoding that `measure_speed` times: SmolLM2 and a half-depth copy
(every other block kept, renumbered, with its own KV cache). FLOPs and memory follow their formulas; the copy decodes
on its KV cache exactly as a full forward pass computes, and that cache holds what `memory_bytes` counts. The ratios'
arithmetic and the argument checks are tested on tiny models in chapter 05. How much faster a pruned model runs is a
benchmark, not a test: `bench/bench_eval.py` measures it as ratios in one run (results in bench/RESULTS.md)."""
from dataclasses import replace

import pytest
import torch

from slimlab.anatomy import flops_per_token
from slimlab.evaluate import memory_bytes
from slimlab.lab import load_model
from slimlab.prune import apply_plan, keep_all_plan


@pytest.fixture(scope='module')
def models():
    "SmolLM2-135M and a copy that keeps blocks 0, 2, ..., 28 (so every kept block gets a new index)."
    teacher = load_model('smollm2-135m')
    return teacher, apply_plan(teacher, replace(keep_all_plan(teacher), layers=list(range(0, 30, 2))))


def test_flops_and_memory_of_half_depth_smollm2(models):
    teacher, half = models
    # half of the 30 blocks: embedding lookup and head stay, so the work per token falls by less than half
    assert 0.5 < flops_per_token(half) / flops_per_token(teacher) < 0.6
    mem_t, mem_h = memory_bytes(teacher, 2048), memory_bytes(half, 2048)
    assert mem_h['kv_cache'] * 2 == mem_t['kv_cache'] == 30 * 2 * 3 * 64 * 4 * 2048  # layers x (K, V) x kv heads x head_dim x fp32
    assert mem_h['weights'] < mem_t['weights']


def test_half_depth_smollm2_decodes_on_its_own_kv_cache(models):
    "Prefill, then one greedy token at a time on the cache (as `measure_speed` runs it) equals a full pass without cache."
    _, half = models
    batch, prompt_len, new_tokens = 2, 16, 4
    ids = torch.randint(0, half.config.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = half(input_ids=ids, use_cache=True, logits_to_keep=1)
        for _ in range(new_tokens):
            ids = torch.cat([ids, out.logits[:, -1:].argmax(-1)], dim=1)
            out = half(input_ids=ids[:, -1:], cache=out.cache, use_cache=True)
        full = half(input_ids=ids, use_cache=False).logits[:, -1]
    torch.testing.assert_close(out.logits[:, -1], full, rtol=1e-4, atol=1e-4)
    layers = out.cache.layers
    assert len(layers) == 15 and all(l.keys.shape == (batch, 3, prompt_len + new_tokens, 64) for l in layers)
    cached = sum(t.numel() * t.element_size() for l in layers for t in (l.keys, l.values))
    assert cached == memory_bytes(half, context=prompt_len + new_tokens, batch_size=batch)['kv_cache']
