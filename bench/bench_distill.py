"""Time of one distillation step of `slimlab.distill.distill` against the work it cannot avoid — a teacher forward plus a
student forward/backward — measured in the same run.

Teacher: SmolLM2-135M (30 blocks). Student: the same without its last 6 blocks (24 blocks, `slimlab.prune.apply_plan`).
Batches: micro-batches of `--micro` × `--seq-len` tokens of the lab corpus's train split, gradient accumulation 1.

- distill step: the wall-clock between consecutive train records of a `distill` run (the `seconds` field of
  metrics.jsonl, logged every step): data loading, the teacher's hidden states under `no_grad`, the student module's
  forward with the chunked composite loss (Minitron's logit-only forward KL; the LM term is computed and logged too),
  backward, gradient clipping, the AdamW step and the scheduler. The first `--skip` steps of each run are warm-up.
- teacher forward: `teacher(input_ids)` under `torch.no_grad()` in eval mode (full logits).
- student forward/backward: `student(input_ids, labels=input_ids).loss.backward()` (transformers' own cross-entropy).
- optimizer: one AdamW step over the student's parameters (reported, not part of the baseline).

Runs alternate (distill, baseline, baseline, distill, ...) so that drifts of a shared machine hit both sides.
Ratio = median distill step / (median teacher forward + median student forward/backward); target <= 1.15. A second
column adds the optimizer step to the baseline, since every training step pays it too.

Usage: .venv/bin/python bench/bench_distill.py [--rounds 2] [--steps 6] [--skip 1] [--micro 4] [--seq-len 128]
                                               [--chunks 512 256] [--threads 1]
"""
import argparse, statistics, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import torch


def baseline_times(teacher, student, blocks: torch.Tensor, reps: int, micro: int) -> dict[str, list[float]]:
    "Teacher forward, student forward/backward and an AdamW step, each timed `reps` times on the run's first batches."
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    times = {'teacher forward': [], 'student forward/backward': [], 'optimizer': []}
    student.train()
    for i in range(reps):
        ids = blocks[i*micro:(i + 1)*micro]
        t0 = time.perf_counter()
        with torch.no_grad(): teacher(input_ids=ids)
        t1 = time.perf_counter()
        student(input_ids=ids, labels=ids).loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        times['teacher forward'].append(t1 - t0); times['student forward/backward'].append(t2 - t1); times['optimizer'].append(t3 - t2)
    return times


def distill_times(teacher, student, blocks: torch.Tensor, config, skip: int) -> list[float]:
    "Per-step wall-clock of a `distill` run, from the `seconds` of its train records, after `skip` warm-up steps."
    from slimlab.distill import DistillData, distill
    from slimlab.lab import Job
    with tempfile.TemporaryDirectory() as d:
        result = distill(student, Path(d)/'run', DistillData(blocks), config, teacher=teacher, job=Job(progress=False, log=None))
        seconds = [r['seconds'] for r in result.metrics('train')]
    return [b - a for a, b in zip(seconds, seconds[1:])][skip:]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=2, help='distill runs per chunk size (and as many baseline rounds)')
    p.add_argument('--steps', type=int, default=6, help='optimizer steps of each distill run')
    p.add_argument('--skip', type=int, default=1, help='warm-up steps left out of each run')
    p.add_argument('--micro', type=int, default=4, help='sequences per micro-batch')
    p.add_argument('--seq-len', type=int, default=128)
    p.add_argument('--chunks', type=int, nargs='+', default=[512, 256], help='tokens per chunk of the loss (CompositeConfig.chunk)')
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args()
    if args.steps - args.skip < 2: sys.exit(f"--steps {args.steps} with --skip {args.skip} leaves fewer than 2 timed steps per run")
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging
    from slimlab.distill import DistillConfig, lab_data, minitron_loss
    from slimlab.lab import load_model, load_tokenizer
    from slimlab.prune import ModelShape, PruningPlan, apply_plan
    hf_logging.disable_progress_bar()
    teacher, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    student = apply_plan(teacher, PruningPlan(ModelShape.of(teacher), layers=list(range(teacher.config.num_hidden_layers - 6))))
    blocks, _ = lab_data(tokenizer, args.seq_len)
    base = DistillConfig(max_steps=args.steps, micro_batch_size=args.micro, seq_len=args.seq_len, lr=1e-5, lr_floor=1e-6,
                         warmup_steps=0, log_every=1, eval_every=0, save_every=0)
    steps = {c: [] for c in args.chunks}
    baseline = {'teacher forward': [], 'student forward/backward': [], 'optimizer': []}
    reps = args.steps - args.skip
    for r in range(args.rounds):
        for part in ('distill', 'baseline') if r % 2 == 0 else ('baseline', 'distill'):
            if part == 'baseline':
                for k, v in baseline_times(teacher, student, blocks, reps*len(args.chunks), args.micro).items(): baseline[k] += v
            else:
                for c in args.chunks if r % 2 == 0 else args.chunks[::-1]:
                    steps[c] += distill_times(teacher, student, blocks, replace(base, loss=replace(minitron_loss(), chunk=c)), args.skip)
    med = {k: statistics.median(v) for k, v in baseline.items()}
    floor_s = med['teacher forward'] + med['student forward/backward']
    with_opt = floor_s + med['optimizer']
    print(f"SmolLM2-135M teacher (30 blocks) → student (24 blocks); micro-batch {args.micro} × {args.seq_len} tokens, accumulation 1; "
          f"{args.threads} thread(s); {args.rounds} rounds, medians of {len(baseline['optimizer'])} baseline and "
          f"{args.rounds*reps} distill steps per chunk size")
    print('| measurement | median s | × (teacher fwd + student fwd/bwd) | × (… + optimizer) |')
    print('|---|---|---|---|')
    for k in ('teacher forward', 'student forward/backward', 'optimizer'):
        print(f"| {k} | {med[k]:.2f} | {med[k]/floor_s:.3f} | {med[k]/with_opt:.3f} |")
    ok = True
    for c in args.chunks:
        s = statistics.median(steps[c])
        print(f"| distill step, loss chunk {c} | {s:.2f} | **{s/floor_s:.3f}** | {s/with_opt:.3f} |")
        ok &= s/floor_s <= 1.15
    print('target (distill step <= 1.15 × teacher forward + student forward/backward):', 'met' if ok else 'NOT met')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
