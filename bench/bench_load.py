"""Load time of the bundled SmolLM2: straight from its GGUF file vs the cached safetensors folder, in one run.

Usage: .venv/bin/python bench/bench_load.py [--repeats 3]
"""
import argparse, statistics, time

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging

from slimlab.lab import bundled_gguf_path, bundled_model_dir, load_model


def seconds(fn, repeats: int) -> float:
    "Median wall time of `fn()` over `repeats` calls."
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()
    logging.disable_progress_bar()
    bundled_model_dir('smollm2-135m')  # convert once, outside the timing
    gguf = bundled_gguf_path('smollm2-135m')
    from_gguf = seconds(lambda: AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32), args.repeats)
    from_cache = seconds(lambda: load_model('smollm2-135m'), args.repeats)
    print(f"GGUF load {from_gguf:.2f} s, cached folder load {from_cache:.2f} s, speed-up {from_gguf/from_cache:.0f}x "
          f"(median of {args.repeats})")


if __name__ == '__main__':
    main()
