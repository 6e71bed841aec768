"""Worker of the distillation tests: one `slimlab.distill.distill` run of a tiny scaled Llama student against a tiny
teacher, on seeded random token blocks — in this process, or in each process of a `torchrun` launch.

Usage: python tests/distill_worker.py RUN_DIR [--steps 12] [--micro 2] [--accum 1] [--save-every 0] [--resume] [--processes 1]
"""
import argparse

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run_dir')
    p.add_argument('--steps', type=int, default=12, help='optimizer steps')
    p.add_argument('--micro', type=int, default=2, help='sequences per micro-batch, per process')
    p.add_argument('--accum', type=int, default=1, help='micro-batches per optimizer step')
    p.add_argument('--save-every', type=int, default=0, help='steps between checkpoints')
    p.add_argument('--resume', action='store_true', help='continue the run in RUN_DIR')
    p.add_argument('--processes', type=int, default=1, help='processes the launch must have started')
    args = p.parse_args()
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from slimlab.distill import DistillConfig, DistillData, distill
    from slimlab.lab import Job, load_model
    from slimlab.losses import CompositeConfig, Schedule
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    assert accelerator.num_processes == args.processes, f"{accelerator.num_processes} processes started, {args.processes} expected"
    student, teacher = load_model('llama-tiny', seed=0), load_model('llama-tiny', seed=1)
    blocks = torch.randint(0, 4096, (48, 32), generator=torch.Generator().manual_seed(0))
    loss = CompositeConfig(lam=Schedule('linear', 1.0, 0.5, name='lambda'), beta=Schedule('constant', 0.0, name='beta'), chunk=64)
    config = DistillConfig(max_steps=args.steps, micro_batch_size=args.micro, grad_accum=args.accum, seq_len=32, lr=1e-3, lr_floor=1e-4,
                           warmup_steps=2, log_every=1, eval_every=0, save_every=args.save_every, keep_last=2, loss=loss)
    distill(student, args.run_dir, DistillData(blocks), config, teacher=teacher, job=Job(resume=args.resume, progress=False))


if __name__ == '__main__':
    main()
