"""Cost of the all-scores calibration pass on SmolLM2 against a plain no-grad forward over the same batches, in one run.

"All scores" are every metric that applies to SmolLM2 and is computed from the single forward sweep
(`slimlab.importance.default_metrics`: channels, heads, neurons, block influence, angular distance, last-N and random
baselines); `taylor` (backward pass) and `ppl_drop` (one sweep per removal) cost more by definition.
Plain and scored runs alternate (ABBA order) so that drift from other jobs on the machine hits both alike.
`--threads` sets torch's intra-op threads for both (default 1: on a small machine shared with other jobs, a second
OpenMP thread waits for a core on every tensor operation, which measures the scheduler rather than the work).

Usage: .venv/bin/python bench/bench_importance.py [--samples 32] [--seq-len 256] [--batch-size 8] [--repeats 4] [--threads 1]
"""
import argparse, statistics, sys, time

import torch
from transformers.utils import logging

from slimlab.anatomy import Anatomy
from slimlab.data import calibration_samples
from slimlab.importance import default_metrics, importance
from slimlab.lab import load_model, load_tokenizer


def seconds(fn) -> float:
    "Wall time of one call of `fn`."
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--samples', type=int, default=32)
    p.add_argument('--seq-len', type=int, default=256)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--repeats', type=int, default=4)
    p.add_argument('--threads', type=int, default=1, help="torch intra-op threads (0: torch's default)")
    p.add_argument('--target', type=float, default=1.15, help='ratio the scored pass must stay under')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    logging.disable_progress_bar()
    model, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    samples = calibration_samples(tokenizer, n_samples=args.samples, seq_len=args.seq_len, seed=0)
    metrics = default_metrics(Anatomy(model))

    @torch.no_grad()
    def plain():
        for ids in samples.split(args.batch_size): model(input_ids=ids, use_cache=False)

    def scored(): importance(model, samples, metrics, batch_size=args.batch_size, progress=False)

    plain(); scored()  # warm-up
    times = {'plain': [], 'scored': []}
    for r in range(args.repeats):
        order = [('plain', plain), ('scored', scored)]
        for name, fn in (order if r % 2 == 0 else order[::-1]): times[name].append(seconds(fn))
    t_plain, t_scored = statistics.median(times['plain']), statistics.median(times['scored'])
    ratio = t_scored / t_plain
    tokens = samples.numel()
    print(f"metrics: {', '.join(metrics)}")
    print(f"{args.samples} x {args.seq_len} tokens, batch {args.batch_size}, {torch.get_num_threads()} thread(s), median of {args.repeats}: "
          f"plain forward {t_plain:.2f} s ({tokens/t_plain:.0f} tok/s), all-scores pass {t_scored:.2f} s; "
          f"ratio {ratio:.3f} (target <= {args.target})")
    sys.exit(0 if ratio <= args.target else 1)


if __name__ == '__main__':
    main()
