"""Weight-only quantization of a model (default: the bundled SmolLM2-135M) in float32, int8 and int4: bytes on disk, held-out perplexity, throughput ratios, measured in one run.

Usage: .venv/bin/python bench/bench_quantize.py [--model smollm2-135m] [--tokens 8192] [--repeats 3] [--keep DIR]
`--model` takes a name, a saved folder or a recipe run directory (e.g. /tmp/demo_run from `slimlab demo`).
Prints a markdown table: weight bytes (and % of float32), perplexity on the first `--tokens` tokens of the lab corpus
test split (window 512, stride 256) with its paired ratio to float32, top-1 agreement with float32, and prefill/decode
tokens/s at batch 1 and 8 as ratios to float32 (measured interleaved; the machine is noisy, the ratios less so).
"""
import argparse, shutil, tempfile, time
from pathlib import Path

import torch
from transformers.utils import logging

from slimlab.evaluate import EvalConfig, held_out_tokens, model_reference, model_tokenizer
from slimlab.lab import Job, bundled_model_dir, resolve_model
from slimlab.ship import QUANT_SCHEMES, measure_quantized, quant_rows, run_quantize


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='smollm2-135m')
    p.add_argument('--tokens', type=int, default=8192)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--keep', type=Path, default=None, help='write the quantized folders here (default: a temporary folder)')
    args = p.parse_args()
    logging.disable_progress_bar()
    ref = model_reference(args.model)
    folder = bundled_model_dir(str(ref)) if resolve_model(ref).kind == 'bundled' else Path(ref)
    work = args.keep or Path(tempfile.mkdtemp())
    try:
        t0 = time.perf_counter()
        quantized = {s: run_quantize(folder, work/s, s, Job(log=None)) for s in QUANT_SCHEMES}
        t1 = time.perf_counter()
        ids = held_out_tokens(model_tokenizer(folder))[:args.tokens]
        config = EvalConfig(speed_batch_sizes=(1, 8), repeats=args.repeats)
        evals = measure_quantized(folder, quantized, ids, config, log=None)
        rows = quant_rows(evals, {str(folder): folder} | quantized)
        print(f"{args.model}: quantized both ways in {t1 - t0:.0f} s; {len(ids)} test tokens; {torch.get_num_threads()} threads; "
              f"prompt {config.prompt_len}, {config.new_tokens} decode steps, median of {args.repeats} interleaved rounds\n")
        print('| model | weight MB | % of float32 | ppl | ppl ratio | top-1 agreement | prefill b=1 | decode b=1 | prefill b=8 | decode b=8 |')
        print('|---|---|---|---|---|---|---|---|---|---|')
        for r, name in zip(rows, ['float32', *quantized]):
            print(f"| {name} | {r['weight_bytes']/1e6:.1f} | {r['size_pct']:.1f}% | {r['ppl']:.3f} | {r['ppl_ratio']:.4f} | {r['top1']:.1%} | "
                  + ' | '.join(f"{r[f'{k}_x_b{b}']:.2f}×" for b in (1, 8) for k in ('prefill', 'decode')) + ' |')
    finally:
        if args.keep is None: shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
