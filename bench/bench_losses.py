"""Chunked composite KD+LM loss against the plain implementation: peak extra memory, time and gradients, in one run.

The loss is `(1-λ)·CE + λ·KL(teacher ‖ student)` (temperature 1) of 4,096 tokens, from the student's hidden states and
output layer (d = 576, SmolLM2's width) and a frozen teacher's (same width), at the vocabularies of SmolLM2 (49,152) and
Qwen3 / Qwen3-Next (151,936), for λ = 0.5 (the composite) and λ = 1 (Minitron's KD-only loss). Plain: full float32
logits of both models, `F.cross_entropy` (left out at λ = 1) + `F.kl_div` on log-softmaxes, one backward. Chunked:
`slimlab.losses.chunked_head_loss`, same inputs.

Every measurement runs in a fresh worker process, so that memory peaks do not mix: the worker builds the inputs, notes
its resident memory, runs loss + backward once and reads its peak resident memory (VmHWM): peak extra memory = peak -
resident before (the gradients of the hidden states and the output layer are included for both). It then times
`--repeats` further runs (loss + backward) and saves the gradients; the parent compares them. Plain and chunked
workers alternate (ABBA) for the timings.

Usage: .venv/bin/python bench/bench_losses.py [--tokens 4096] [--vocabs 49152 151936] [--lams 0.5 1.0] [--hidden 576]
                                              [--chunk 512] [--repeats 2] [--threads 1]
"""
import argparse, json, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import torch
import torch.nn.functional as F


def inputs(tokens: int, vocab: int, hidden: int, seed: int = 0):
    "Student hidden states and head (trainable), teacher hidden states and head (frozen), labels."
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(tokens, hidden, generator=g)
    w = torch.randn(vocab, hidden, generator=g)/hidden**0.5
    th = torch.randn(tokens, hidden, generator=g)
    tw = torch.randn(vocab, hidden, generator=g)/hidden**0.5
    y = torch.randint(0, vocab, (tokens,), generator=g)
    return h.requires_grad_(), w.requires_grad_(), th, tw, y


def plain_loss(h, w, th, tw, y, lam=0.5):
    "The straightforward composite: full logits of both models in float32 (no cross-entropy at λ = 1)."
    logits = h @ w.T
    with torch.no_grad(): t_logits = th @ tw.T
    kd = F.kl_div(logits.log_softmax(-1), t_logits.log_softmax(-1), log_target=True, reduction='batchmean')
    return lam*kd if lam == 1 else (1 - lam)*F.cross_entropy(logits, y) + lam*kd


def chunked_loss(h, w, th, tw, y, lam=0.5, chunk=512):
    "The same loss, chunk by chunk from hidden states."
    from slimlab.losses import OutputLayer, TeacherHead, chunked_head_loss
    return chunked_head_loss(h, OutputLayer(w), y, TeacherHead(th, OutputLayer(tw)), lm_weight=1 - lam, kd_weight=lam, chunk=chunk).total


def rss_kib(field: str) -> int:
    "A memory field of /proc/self/status (VmRSS, VmHWM) in KiB."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'): return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args):
    "One implementation at one vocabulary and λ: peak extra memory of the first run, then timed runs; gradients saved."
    torch.set_num_threads(args.threads)
    h, w, th, tw, y = inputs(args.tokens, args.vocab, args.hidden)
    fn = (lambda *a: plain_loss(*a, lam=args.lam)) if args.worker == 'plain' else lambda *a: chunked_loss(*a, lam=args.lam, chunk=args.chunk)
    before = rss_kib('VmRSS')
    t0 = time.perf_counter(); fn(h, w, th, tw, y).backward(); first = time.perf_counter() - t0
    peak = rss_kib('VmHWM')
    grads = (h.grad.clone(), w.grad.clone())
    times = []
    for _ in range(args.repeats):
        h.grad = w.grad = None
        t0 = time.perf_counter(); loss = fn(h, w, th, tw, y); loss.backward(); times.append(time.perf_counter() - t0)
    torch.save(grads, args.grads)
    print(json.dumps(dict(extra_mib=(peak - before)/1024, first_s=first, times=times, loss=float(loss))))


def mem_available_mib() -> float:
    "MemAvailable of /proc/meminfo in MiB."
    for line in Path('/proc/meminfo').read_text().splitlines():
        if line.startswith('MemAvailable:'): return int(line.split()[1])/1024
    raise RuntimeError('MemAvailable not in /proc/meminfo')


def run_worker(kind: str, vocab: int, lam: float, args, grads: Path) -> dict:
    "Run one measurement in a fresh process and return its results."
    cmd = [sys.executable, __file__, '--worker', kind, '--vocab', str(vocab), '--lam', str(lam), '--grads', str(grads), '--tokens', str(args.tokens),
           '--hidden', str(args.hidden), '--chunk', str(args.chunk), '--repeats', str(args.repeats), '--threads', str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode: raise RuntimeError(f"{kind} worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--tokens', type=int, default=4096)
    p.add_argument('--vocabs', type=int, nargs='+', default=[49152, 151936])
    p.add_argument('--lams', type=float, nargs='+', default=[0.5, 1.0], help='distillation shares λ (1: KD only)')
    p.add_argument('--hidden', type=int, default=576)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument('--repeats', type=int, default=2, help='timed runs per worker, after the first (memory) run')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--worker', choices=['plain', 'chunked'], help=argparse.SUPPRESS)
    p.add_argument('--vocab', type=int, help=argparse.SUPPRESS)
    p.add_argument('--lam', type=float, help=argparse.SUPPRESS)
    p.add_argument('--grads', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker: return worker(args)
    ok = True
    print(f"{args.tokens} tokens, hidden {args.hidden}, chunk {args.chunk}, {args.threads} thread(s), "
          f"{2*args.repeats} timed runs per implementation (two workers each, ABBA)")
    print("| vocab | λ | plain extra MiB | chunked extra MiB | memory ratio | plain s | chunked s | time ratio | max grad diff (rel.) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for vocab in args.vocabs:
            need = 8*args.tokens*vocab*4/2**20  # the plain loss holds about 7-8 float32 (tokens, vocab) tensors at its peak
            for lam in args.lams:
                if mem_available_mib() < need + 2048:
                    sys.exit(f"vocab {vocab}: the plain loss needs about {need:.0f} MiB and only {mem_available_mib():.0f} MiB are "
                             "available; use fewer --tokens")
                res = {'plain': [], 'chunked': []}
                for kind in ('plain', 'chunked', 'chunked', 'plain'):
                    res[kind].append(run_worker(kind, vocab, lam, args, Path(d)/f'{kind}.pt'))
                gp, gc = torch.load(Path(d)/'plain.pt'), torch.load(Path(d)/'chunked.pt')
                diff = max(((a - b).abs().max()/a.abs().max()).item() for a, b in zip(gp, gc))
                mem = {k: min(r['extra_mib'] for r in v) for k, v in res.items()}
                sec = {k: statistics.median(t for r in v for t in r['times']) for k, v in res.items()}
                mem_ratio, time_ratio = mem['chunked']/mem['plain'], sec['chunked']/sec['plain']
                print(f"| {vocab:,} | {lam:g} | {mem['plain']:.0f} | {mem['chunked']:.0f} | {mem_ratio:.3f} | {sec['plain']:.2f} "
                      f"| {sec['chunked']:.2f} | {time_ratio:.3f} | {diff:.1e} |", flush=True)
                ok &= mem_ratio <= 0.35 and time_ratio <= 1.2 and diff < 1e-4
    print('targets (memory <= 0.35x, time <= 1.2x, gradients equal):', 'met' if ok else 'NOT met')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
