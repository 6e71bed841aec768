"""Offline teacher: distillation from a teacher cache against online distillation, on the same blocks, in one run.

Teacher: SmolLM2-135M (30 blocks). Student: the same without its last 6 blocks (24 blocks, `slimlab.prune.apply_plan`).
Data: the first `--steps` × `--micro` blocks of `--seq-len` tokens of the lab corpus's train split, read by every run
in the same seeded order from the same student weights. Loss: Minitron's logit-only forward KL (`minitron_loss`); from
a cache it is taken over the teacher's top-k renormalised (the default) and, with `--tail`, also over the top-k and
the tail bucket, the probability outside the top-k (`TeacherCache(tail=True)`).

For each k of `--ks` the cache is written first (`write_teacher_cache`, bfloat16 log-probabilities): its wall-clock,
its bytes on disk per token (every file of the folder) and the share of the teacher's probability inside the top-k.
Then one distillation run per teacher (online, then each cache), reporting the median step time after `--skip`
warm-up steps and the held-out perplexity of the student after the run on `--eval-tokens` tokens of the valid split,
each also as a ratio to the online run.

Usage: .venv/bin/python bench/bench_cache.py [--ks 64 256] [--tail] [--steps 30] [--skip 2] [--micro 4]
                                             [--seq-len 128] [--eval-tokens 4096] [--threads 1]
"""
import argparse, statistics, tempfile, time
from pathlib import Path

import torch


def step_seconds(result, skip: int) -> float:
    "Median wall-clock between consecutive train records of a run, after `skip` warm-up steps."
    seconds = [r['seconds'] for r in result.metrics('train')]
    return statistics.median([b - a for a, b in zip(seconds, seconds[1:])][skip:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--ks', type=int, nargs='+', default=[64, 256], help='top-k sizes of the caches')
    p.add_argument('--steps', type=int, default=30, help='optimizer steps of every run')
    p.add_argument('--skip', type=int, default=2, help='warm-up steps left out of the step time')
    p.add_argument('--micro', type=int, default=4, help='sequences per micro-batch (accumulation 1)')
    p.add_argument('--seq-len', type=int, default=128)
    p.add_argument('--eval-tokens', type=int, default=4096, help='held-out tokens of the final perplexity')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--tail', action='store_true', help='also train from each cache with its tail bucket (TeacherCache(tail=True))')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging
    from slimlab.distill import DistillConfig, DistillData, TeacherCache, distill, lab_data, minitron_loss, write_teacher_cache
    from slimlab.lab import Job, load_model, load_tokenizer
    from slimlab.prune import ModelShape, PruningPlan, apply_plan
    hf_logging.disable_progress_bar()
    teacher, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    plan = PruningPlan(ModelShape.of(teacher), layers=list(range(teacher.config.num_hidden_layers - 6)))
    blocks, held_out = lab_data(tokenizer, args.seq_len, eval_tokens=args.eval_tokens)
    blocks = blocks[:args.steps*args.micro]
    config = DistillConfig(max_steps=args.steps, micro_batch_size=args.micro, seq_len=args.seq_len, lr=2e-4, lr_floor=2e-5,
                           warmup_steps=3, log_every=1, eval_every=0, save_every=0, loss=minitron_loss())
    quiet = Job(progress=False, log=None)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        runs = Path(d)
        teachers = {'online': (blocks, teacher, None)}
        for k in args.ks:
            t0 = time.perf_counter()
            cache = write_teacher_cache(teacher, blocks, runs/f'cache-{k}', k=k, tokenizer=tokenizer, job=quiet)
            written = time.perf_counter() - t0
            disk = sum(f.stat().st_size for f in cache.folder.iterdir())
            made = dict(write_s=written, bytes_per_token=disk/cache.spec.tokens, coverage=cache.coverage())
            teachers[f'cache k={k}'] = (cache, None, made)
            if args.tail: teachers[f'cache k={k} + tail'] = (TeacherCache(cache.folder, tail=True), None, made)
        for name, (data, online_teacher, made) in teachers.items():
            result = distill(apply_plan(teacher, plan), runs/name.replace(' ', '-'), DistillData(data, held_out, tokenizer), config,
                             teacher=online_teacher, job=quiet)
            rows.append(dict(name=name, step_s=step_seconds(result, args.skip), ppl=result.metrics('eval')[-1]['ppl'],
                             start_ppl=result.metrics('eval')[0]['ppl'], **(made or {})))
    online = rows[0]
    print(f"SmolLM2-135M teacher (30 blocks) → student (24 blocks); {args.steps} steps × {args.micro} × {args.seq_len} tokens "
          f"({args.steps*args.micro*args.seq_len:,} tokens, the same blocks in every run), {args.threads} thread(s); "
          f"held-out perplexity on {args.eval_tokens:,} valid tokens: {online['start_ppl']:.2f} before distillation")
    print('| teacher | cache write s | disk bytes/token | top-k probability | median step s | × online | held-out ppl after | × online |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        made = (f"{r['write_s']:.0f} | {r['bytes_per_token']:,.0f} | {r['coverage']:.1%}" if 'write_s' in r else '— | — | —')
        print(f"| {r['name']} | {made} | {r['step_s']:.2f} | {r['step_s']/online['step_s']:.3f} | {r['ppl']:.2f} | {r['ppl']/online['ppl']:.3f} |")


if __name__ == '__main__':
    main()
