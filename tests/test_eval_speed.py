"""Throughput measured interleaved in one run: fewer layers decode and prefill faster; memory follows the KV-cache formula."""
from dataclasses import replace

import pytest
import torch

from slimlab.evaluate import measure_speed, memory_bytes, speed_ratios
from slimlab.lab import load_model
from slimlab.prune import apply_plan, keep_all_plan


@pytest.fixture
def one_thread():
    "One PyTorch thread: on a shared 2-core machine, two OpenMP threads stall on each other whenever another process runs."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_half_depth_smollm2_is_faster(one_thread):
    teacher = load_model('smollm2-135m')
    half = apply_plan(teacher, replace(keep_all_plan(teacher), layers=list(range(15))))
    speeds = measure_speed({'teacher': teacher, 'half': half}, prompt_len=64, new_tokens=16, batch_sizes=(1, 4), repeats=3)
    ratios = speed_ratios(speeds, 'teacher')
    # half of the 30 blocks: ~2x less block compute; embedding and head stay, so less than 2x but clearly above 1
    for b in (1, 4):
        prefill, decode = ratios['half', b]
        assert prefill > 1.3 and decode > 1.3, ratios
    mem_t, mem_h = memory_bytes(teacher, 2048), memory_bytes(half, 2048)
    assert mem_h['kv_cache'] * 2 == mem_t['kv_cache'] == 30 * 2 * 3 * 64 * 4 * 2048  # layers x (K, V) x kv heads x head_dim x fp32
    assert mem_h['weights'] < mem_t['weights']
