"""SmolLM2-135M on this CPU in float32 and in bfloat16: weight memory, held-out perplexity on the same tokens, and how
closely the importance scores of one calibration pass agree (Spearman rank correlation per score), with the seconds
each took, in one run.

    .venv/bin/python bench/bench_dtype.py [--tokens 4096] [--samples 16]
"""
import argparse, time

import torch

from slimlab.evaluate import held_out_tokens, perplexity
from slimlab.importance import Calibration, LoadedModel, spearman
from slimlab.lab import Hardware

METRICS = ('channel', 'head', 'neuron', 'block_influence')


def measure(dtype: str, tokens: int, calibration: Calibration) -> dict:
    "Weight bytes, perplexity and importance scores of SmolLM2 loaded in `dtype` on the CPU."
    loaded = LoadedModel.load('smollm2-135m', calibration, Hardware('cpu', dtype))
    ids = held_out_tokens(loaded.tokenizer, max_tokens=tokens)
    t0 = time.perf_counter()
    ppl = perplexity(loaded.model, ids, seq_len=256, progress=False)
    t1 = time.perf_counter()
    report = loaded.score(list(METRICS), progress=False)
    t2 = time.perf_counter()
    return dict(bytes=sum(p.nbytes for p in loaded.model.parameters()), ppl=ppl.value, eval_s=t1 - t0, score_s=t2 - t1,
                scores={m: report[m].values.float().flatten() for m in METRICS})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tokens', type=int, default=4096, help='held-out test tokens (default: 4096)')
    p.add_argument('--samples', type=int, default=16, help='calibration samples of 256 tokens (default: 16)')
    args = p.parse_args()
    calibration = Calibration(samples=args.samples, seq_len=256)
    rows = {dtype: measure(dtype, args.tokens, calibration) for dtype in ('float32', 'bfloat16')}
    f, b = rows['float32'], rows['bfloat16']
    print(f"| | float32 | bfloat16 | bfloat16 / float32 |\n|---|---|---|---|")
    print(f"| weight MiB | {f['bytes']/2**20:.1f} | {b['bytes']/2**20:.1f} | {b['bytes']/f['bytes']:.3f} |")
    print(f"| held-out ppl ({args.tokens} tokens) | {f['ppl']:.3f} | {b['ppl']:.3f} | {b['ppl']/f['ppl']:.4f} |")
    print(f"| perplexity seconds | {f['eval_s']:.1f} | {b['eval_s']:.1f} | {b['eval_s']/f['eval_s']:.2f} |")
    print(f"| scoring seconds ({args.samples}×256 tokens) | {f['score_s']:.1f} | {b['score_s']:.1f} | {b['score_s']/f['score_s']:.2f} |")
    for m in METRICS:
        print(f"| {m}: Spearman ρ between dtypes | | | {spearman(f['scores'][m], b['scores'][m]):.4f} |")


if __name__ == '__main__':
    main()
