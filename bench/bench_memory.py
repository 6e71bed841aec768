"""Memory of distillation on the CPU, measured, against the dry run's arithmetic for the same launch (`slimlab.recipes.phase_gib`).

Teacher: SmolLM2-135M (30 blocks). Student: the same without its last 6 blocks (`slimlab.prune.apply_plan`). Data: the
first `--steps` × `--micro` blocks of `--seq-len` tokens of the lab corpus's train split. Each row runs in a fresh
process (`--row NAME`): it loads what the row needs, notes its resident memory (VmRSS), runs `--steps` steps of
Minitron's loss through `slimlab.distill.distill` (no held-out evaluation, no checkpoint), and notes its peak resident
memory (VmHWM). Rows:

- online fp32: the teacher in float32 beside the student (what a CPU run does);
- online bf16: the teacher in bfloat16 (`hardware.dtype: bfloat16` in a recipe);
- cache: no teacher in the process; its top-64 log-probabilities read from a teacher cache written before the row;
- online fp32, checkpointing: `gradient_checkpointing: true`.

"training" = peak − resident after loading: what the step itself adds (gradients, AdamW moments, activations, logits,
allocator slack). The estimate is the dry run's for one process, no sharding, fp32 (`Launch(precision='fp32')`): its
gradients + optimizer state + activations + logit chunks, whose activation term is a GPU figure (fused attention, 68 B
per token, channel and block in fp32); its weight terms are in "after loading".

Usage: .venv/bin/python bench/bench_memory.py [--steps 4] [--micro 4] [--seq-len 128] [--threads 1]
"""
import argparse, gc, json, subprocess, sys, tempfile
from pathlib import Path

import torch

ROWS = ('online fp32', 'online bf16', 'cache', 'online fp32, checkpointing')


def status_mib(key: str) -> float:
    "A field of /proc/self/status (VmRSS, VmHWM) in MiB."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1])/1024
    raise KeyError(key)


def setup(args):
    "Teacher, tokenizer, the student's plan and the blocks every row reads."
    from transformers.utils import logging as hf_logging
    from slimlab.distill import lab_data
    from slimlab.lab import load_model, load_tokenizer
    from slimlab.prune import ModelShape, PruningPlan
    hf_logging.disable_progress_bar()
    teacher, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    plan = PruningPlan(ModelShape.of(teacher), layers=list(range(teacher.config.num_hidden_layers - 6)))
    blocks, _ = lab_data(tokenizer, args.seq_len, eval_tokens=2)
    return teacher, tokenizer, plan, blocks[:args.steps*args.micro]


def one_row(args):
    "Measure one row in this process; print its numbers as JSON."
    from slimlab.distill import DistillConfig, DistillData, TeacherCache, distill, minitron_loss
    from slimlab.lab import Job
    from slimlab.prune import apply_plan
    teacher, tokenizer, plan, blocks = setup(args)
    student = apply_plan(teacher, plan)
    config = DistillConfig(max_steps=args.steps, micro_batch_size=args.micro, seq_len=args.seq_len, lr=1e-5, lr_floor=1e-6, warmup_steps=0, log_every=1,
                           eval_every=0, save_every=0, gradient_checkpointing='checkpointing' in args.row, loss=minitron_loss())
    data, online = DistillData(blocks), teacher
    if args.row == 'online bf16': online = teacher.to(torch.bfloat16)
    if args.row == 'cache': data, online = DistillData(TeacherCache(args.cache)), None
    if online is None: del teacher
    gc.collect()
    loaded = status_mib('VmRSS')
    with tempfile.TemporaryDirectory() as d:
        distill(student, Path(d)/'run', data, config, teacher=online, job=Job(progress=False, log=None))
    print(json.dumps(dict(row=args.row, loaded=loaded, peak=status_mib('VmHWM'))))


def estimate(args, teacher, plan) -> dict[str, float]:
    "The dry run's GiB per term for this student (the teacher cut by `plan`), teacher and batch, one process, fp32."
    from slimlab.recipes import Launch, TrainingPhase, phase_gib
    from slimlab.prune import apply_plan
    student = apply_plan(teacher, plan)
    c, out = teacher.config, {}
    for checkpointing in (False, True):
        phase = TrainingPhase('distillation', sum(p.numel() for p in student.parameters()), sum(p.numel() for p in teacher.parameters()),
                              c.hidden_size, student.config.num_hidden_layers, c.vocab_size, args.micro, args.seq_len, 512, checkpointing)
        out[checkpointing] = phase_gib(phase, Launch(precision='fp32'))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=4)
    p.add_argument('--micro', type=int, default=4)
    p.add_argument('--seq-len', type=int, default=128)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--row', choices=ROWS, help='measure one row in this process (used by the bench itself)')
    p.add_argument('--cache', help='the teacher cache of the cache row')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.row: return one_row(args)
    from slimlab.distill import write_teacher_cache
    from slimlab.lab import Job
    common = ['--steps', str(args.steps), '--micro', str(args.micro), '--seq-len', str(args.seq_len), '--threads', str(args.threads)]
    with tempfile.TemporaryDirectory() as d:
        teacher, tokenizer, plan, blocks = setup(args)
        write_teacher_cache(teacher, blocks, Path(d)/'cache', k=64, tokenizer=tokenizer, job=Job(progress=False, log=None))
        est = estimate(args, teacher, plan)
        del teacher
        rows = []
        for row in ROWS:
            out = subprocess.run([sys.executable, __file__, '--row', row, '--cache', str(Path(d)/'cache'), *common], capture_output=True, text=True)
            if out.returncode: sys.exit(f"row {row} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"SmolLM2-135M teacher (30 blocks) → student (24 blocks); {args.steps} steps of {args.micro} × {args.seq_len} tokens; "
          f"{args.threads} thread(s); MiB")
    print('| row | resident after loading | peak | training (peak − loaded) | dry-run estimate of training | measured / estimate |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        e = est['checkpointing' in r['row']]
        guess = 1024*(e['gradients'] + e['optimizer state'] + e['activations'] + e['logit chunks'])
        train = r['peak'] - r['loaded']
        print(f"| {r['row']} | {r['loaded']:,.0f} | {r['peak']:,.0f} | {train:,.0f} | {guess:,.0f} | {train/guess:.2f} |")


if __name__ == '__main__':
    main()
