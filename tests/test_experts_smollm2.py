"""MoEfication and expert compression on the bundled SmolLM2-135M, through stock `from_pretrained` only.

* `slimlab moefy` with a uniform router and every expert active reproduces the dense model's logits, and the saved
  folder reloads with plain transformers to the same logits;
* `slimlab merge` (partial preservation, REAP) halves the experts of a fitted-router MoE; the result reloads with plain
  transformers, generates text, and keeps a finite held-out perplexity.
"""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from slimlab.cli import main
from slimlab.data import load_lab_corpus, token_stream
from slimlab.evaluate import perplexity
from slimlab.lab import load_model, load_tokenizer


@pytest.fixture(scope='module')
def dense():
    return load_model('smollm2-135m'), load_tokenizer('smollm2-135m')


def test_uniform_moefy_is_the_dense_model(dense, tmp_path):
    model, tokenizer = dense
    argv = ['moefy', 'smollm2-135m', '--experts', '8', '--top-k', '8', '--shared', '192', '--router', 'uniform',
            '--samples', '8', '--seq-len', '64', '--out', str(tmp_path/'moe'), '--no-progress']
    assert main(argv) == 0
    moe = AutoModelForCausalLM.from_pretrained(tmp_path/'moe')
    assert type(moe).__name__ == 'Qwen2MoeForCausalLM'
    assert (moe.config.num_experts, moe.config.moe_intermediate_size, moe.config.shared_expert_intermediate_size) == (8, 168, 192)
    ids = tokenizer("The quick brown fox jumps over the lazy dog. " * 8, return_tensors='pt').input_ids
    with torch.no_grad():
        gap = (moe(ids).logits - model(ids).logits).abs().max().item()
    assert gap < 1e-3, gap
    assert json.loads((tmp_path/'moe'/'slimlab_moefy.json').read_text())['router'] == 'uniform'


def test_merged_moe_loads_and_generates(dense, tmp_path):
    model, tokenizer = dense
    assert main(['moefy', 'smollm2-135m', '--experts', '8', '--top-k', '4', '--shared', '192', '--samples', '8', '--seq-len', '64',
                 '--out', str(tmp_path/'moe'), '--no-progress']) == 0
    assert main(['merge', str(tmp_path/'moe'), '--num-experts', '4', '--strategy', 'partial', '--metric', 'reap',
                 '--samples', '8', '--seq-len', '64', '--out', str(tmp_path/'half'), '--no-progress']) == 0
    half = AutoModelForCausalLM.from_pretrained(tmp_path/'half')
    assert (half.config.num_experts, half.config.num_experts_per_tok) == (4, 4)
    record = json.loads((tmp_path/'half'/'slimlab_merge.json').read_text())
    assert sorted(record['groups']) == sorted(str(i) for i in range(30))
    assert all(sum(map(len, groups)) == 8 for groups in record["groups"].values())  # 2 preserved + 2 bases absorbing 4
    prompt = tokenizer("The capital of France is", return_tensors='pt')
    out = half.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == prompt.input_ids.shape[1] + 8
    tokens = token_stream([d['text'] for d in load_lab_corpus('test')], tokenizer)[:1024]
    assert torch.isfinite(torch.tensor(perplexity(half, tokens, seq_len=256, stride=256, progress=False).value))
