"""Worker of the distillation tests: one `slimlab.distill.distill` run of a tiny scaled Llama student against a tiny
teacher, on seeded random token blocks — in this process, or in each process of a `torchrun` launch.

With `--cache DIR` the teacher's top-k log-probabilities of the blocks are written to a teacher cache first (every
process writes its share of the shards; a cache already complete is kept), and the student trains from the cache
without a teacher; `--cache-only` stops after writing it.

Usage: python tests/distill_worker.py RUN_DIR [--steps 12] [--micro 2] [--accum 1] [--save-every 0] [--resume] [--processes 1]
                                      [--cache DIR [--cache-k 64] [--cache-only]] [--stream FILE]

With `--stream FILE` the blocks are a `slimlab.data.BlockStream` of a local text file (the llama-tiny tokenizer),
packed as they are read, each process reading its share.
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
    p.add_argument('--cache', help='a teacher cache folder: written first (resumed if there), then read instead of the teacher')
    p.add_argument('--cache-k', type=int, default=64, help="log-probabilities per position in the cache")
    p.add_argument('--cache-only', action='store_true', help='write the cache and stop')
    p.add_argument('--stream', help='a local text file to stream the blocks from, instead of random ones')
    args = p.parse_args()
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from slimlab.distill import DistillConfig, DistillData, distill, write_teacher_cache
    from slimlab.data import BlockStream
    from slimlab.lab import Job, load_model, load_tokenizer
    from slimlab.losses import CompositeConfig, Schedule
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    assert accelerator.num_processes == args.processes, f"{accelerator.num_processes} processes started, {args.processes} expected"
    student, teacher = load_model('llama-tiny', seed=0), load_model('llama-tiny', seed=1)
    blocks = torch.randint(0, 4096, (48, 32), generator=torch.Generator().manual_seed(0))
    loss = CompositeConfig(lam=Schedule('linear', 1.0, 0.5, name='lambda'), beta=Schedule('constant', 0.0, name='beta'), chunk=64)
    config = DistillConfig(max_steps=args.steps, micro_batch_size=args.micro, grad_accum=args.accum, seq_len=32, lr=1e-3, lr_floor=1e-4,
                           warmup_steps=2, log_every=1, eval_every=0, save_every=args.save_every, keep_last=2, loss=loss)
    data = DistillData(BlockStream(args.stream, load_tokenizer('llama-tiny'), 32) if args.stream else blocks)
    if args.cache:
        data = DistillData(write_teacher_cache(teacher, blocks, args.cache, k=args.cache_k, shard_blocks=5, job=Job(resume=True, progress=False)))
        teacher = None
        if args.cache_only: return
    distill(student, args.run_dir, data, config, teacher=teacher, job=Job(resume=args.resume, progress=False))


if __name__ == '__main__':
    main()
