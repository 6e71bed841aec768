"""Throughput measurement on a real pruned model: SmolLM2 and a half-depth copy (renumbered layers, its own KV cache)
prefill and decode at every batch size; FLOPs and memory follow their formulas. The ratios' arithmetic and the argument
checks are tested on tiny models in chapter 05. How much faster a pruned model runs is a benchmark, not a test:
`bench/bench_eval.py` measures it as ratios in one run (results in bench/RESULTS.md)."""
from dataclasses import replace

import pytest
import torch

from slimlab.anatomy import flops_per_token
from slimlab.evaluate import measure_speed, memory_bytes
from slimlab.lab import load_model
from slimlab.prune import apply_plan, keep_all_plan


@pytest.fixture
def one_thread():
    "One PyTorch thread: on a shared 2-core machine, two OpenMP threads stall on each other whenever another process runs."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_speed_and_memory_of_half_depth_smollm2(one_thread):
    teacher = load_model('smollm2-135m')
    half = apply_plan(teacher, replace(keep_all_plan(teacher), layers=list(range(15))))
    speeds = measure_speed({'teacher': teacher, 'half': half}, prompt_len=16, new_tokens=4, batch_sizes=(1, 2), repeats=1)
    assert [(s.model, s.batch_size) for s in speeds] == [('teacher', 1), ('teacher', 2), ('half', 1), ('half', 2)]
    assert all(s.prefill > 0 and s.decode > 0 for s in speeds)
    # half of the 30 blocks: embedding lookup and head stay, so the work per token falls by less than half
    assert 0.5 < flops_per_token(half) / flops_per_token(teacher) < 0.6
    mem_t, mem_h = memory_bytes(teacher, 2048), memory_bytes(half, 2048)
    assert mem_h['kv_cache'] * 2 == mem_t['kv_cache'] == 30 * 2 * 3 * 64 * 4 * 2048  # layers x (K, V) x kv heads x head_dim x fp32
    assert mem_h['weights'] < mem_t['weights']
