"""Evaluating several students against one teacher: `agreement` once per student against one `agreements` pass (the teacher once per window batch).

Usage: .venv/bin/python bench/bench_agreement.py [--students 4] [--tokens 4096] [--seq-len 256] [--repeats 3]
Prints the median seconds of both ways, measured alternately in one run, their ratio, and checks that every per-token
measure is the same both ways.
"""
import argparse, statistics, time

import torch
from transformers.utils import logging

from bench_eval import drop_layers
from slimlab.evaluate import agreement, agreements, held_out_tokens
from slimlab.lab import load_model, load_tokenizer

MEASURES = ('top1', 'kl_fwd', 'kl_rev', 'teacher_nll', 'student_nll')


def students_of(teacher, n: int) -> dict:
    "`n` copies of the teacher, each without a different window of 10 of its 30 blocks (what an experiment's arms look like)."
    return {f"without {s}-{s + 9}": drop_layers(teacher, list(range(s, s + 10))) for s in range(20 - 3*(n - 1), 21, 3)}


def one_by_one(teacher, students: dict, ids, window: dict) -> dict:
    "The evaluation before `agreements`: one `agreement` per student, the teacher run again each time."
    return {n: agreement(teacher, s, ids, **window) for n, s in students.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--students', type=int, default=4)
    p.add_argument('--tokens', type=int, default=4096)
    p.add_argument('--seq-len', type=int, default=256)
    p.add_argument('--repeats', type=int, default=3)
    args = p.parse_args()
    logging.disable_progress_bar()
    teacher = load_model('smollm2-135m')
    students = students_of(teacher, args.students)
    ids = held_out_tokens(load_tokenizer('smollm2-135m'), max_tokens=args.tokens)
    window = dict(seq_len=args.seq_len, stride=args.seq_len, batch_size=4, progress=False)
    ways = {'one agreement per student': lambda: one_by_one(teacher, students, ids, window),
            'agreements (one pass)': lambda: agreements(teacher, students, ids, **window)}
    seconds, results = {w: [] for w in ways}, {}
    for r in range(args.repeats):
        for w in (ways if r % 2 == 0 else reversed(ways)):
            t0 = time.perf_counter(); results[w] = ways[w](); seconds[w].append(time.perf_counter() - t0)
    same = all(torch.equal(getattr(a, m), getattr(results['agreements (one pass)'][n], m))
               for n, a in results['one agreement per student'].items() for m in MEASURES)
    print(f"teacher SmolLM2-135M, {len(students)} students (20 of 30 blocks), {len(ids)} tokens, windows of {args.seq_len}, "
          f"median of {args.repeats} alternating rounds; per-token measures identical: {same}\n")
    base = statistics.median(seconds['one agreement per student'])
    print('| way | median seconds | ratio |\n|---|---|---|')
    for w, s in seconds.items(): print(f"| {w} | {statistics.median(s):.1f} | {base/statistics.median(s):.2f}× |")


if __name__ == '__main__':
    main()
