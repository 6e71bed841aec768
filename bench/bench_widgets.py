"""Latency of the pruning explorer on SmolLM2: the time from a slider move to updated numbers and pictures, in one run.

The explorer is built on SmolLM2-135M with an importance report of every single-sweep metric (8 calibration samples
x 256 tokens, as in the widgets chapter) and no quality probe. Each move sets one slider's value exactly as the
browser does (`slider.value = v`), which runs the explorer's callback synchronously: slider values -> targets ->
`make_plan` -> `sync_config` -> counts (`Preview`), then the pictures of the axes that changed, rendered to PNG.
The sequence moves every slider several times and switches the depth metric; it is repeated `--repeats` times.
Reported: per slider and overall median / 90th percentile / max in ms, the share spent drawing pictures, and the
ratio of the slowest move to the target (default 0.5 s). Exit status 1 when the slowest move misses the target.

Usage: .venv/bin/python bench/bench_widgets.py [--repeats 3] [--threads 1] [--target 0.5]
"""
import argparse, statistics, sys, time
from collections import defaultdict

import torch
from transformers.utils import logging

from slimlab.data import calibration_samples
from slimlab.importance import importance
from slimlab.lab import load_model, load_tokenizer
from slimlab.widgets import PruningExplorer

MOVES = [('drop_layers', 2), ('drop_layers', 4), ('drop_layers', 8), ('hidden_size', 504), ('hidden_size', 432),
         ('hidden_size', 360), ('num_kv_heads', 2), ('heads_per_group', 2), ('num_kv_heads', 1), ('heads_per_group', 3),
         ('num_kv_heads', 3), ('intermediate_size', 1280), ('intermediate_size', 1024), ('intermediate_size', 768),
         ('layers metric', 'angular_distance'), ('layers metric', 'block_influence'), ('drop_layers', 0),
         ('hidden_size', 576), ('intermediate_size', 1536)]


def percentile(values: list[float], q: float) -> float:
    "The q-th percentile (nearest rank)."
    s = sorted(values)
    return s[min(len(s) - 1, round(q/100*(len(s) - 1)))]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=3, help='passes over the move sequence (default: 3)')
    p.add_argument('--threads', type=int, default=1, help="torch intra-op threads (0: torch's default)")
    p.add_argument('--target', type=float, default=0.5, help='seconds the slowest move must stay under (default: 0.5)')
    args = p.parse_args()
    if args.repeats < 1: p.error(f"--repeats={args.repeats} must be at least 1")
    if args.threads: torch.set_num_threads(args.threads)
    logging.disable_progress_bar()
    model, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    report = importance(model, calibration_samples(tokenizer, n_samples=8, seq_len=256, seed=0), progress=False)
    t0 = time.perf_counter()
    explorer = PruningExplorer(model, report)
    build = time.perf_counter() - t0

    drawing = [0.0]  # time spent in the picture step of the current move
    draw = explorer._draw
    def timed_draw():
        t = time.perf_counter(); draw(); drawing[0] += time.perf_counter() - t
    explorer._draw = timed_draw

    times, draws, slowest = defaultdict(list), [], (0.0, '')
    for r in range(args.repeats):
        for name, value in MOVES:
            control = explorer.menus['layers'] if name == 'layers metric' else explorer.sliders[name]
            drawing[0] = 0.0
            t = time.perf_counter()
            control.value = value  # runs the explorer's callback, as a move in the browser does
            times[name].append(time.perf_counter() - t)
            draws.append(drawing[0])
            slowest = max(slowest, (times[name][-1], f"{name}={value} in pass {r + 1}"))
            if explorer.error: sys.exit(f"move {name}={value} gave no model: {explorer.error}")
    every = [t for ts in times.values() for t in ts]
    worst = max(every)
    print(f"SmolLM2-135M, report: {', '.join(report.scores)}; {torch.get_num_threads()} thread(s); "
          f"explorer built in {build:.2f} s; {len(every)} moves ({args.repeats} x {len(MOVES)})")
    print(f"{'control':<18} {'moves':>5} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for name, ts in times.items():
        ms = [1000*t for t in ts]
        print(f"{name:<18} {len(ms):>5} {statistics.median(ms):>10.1f} {percentile(ms, 90):>8.1f} {max(ms):>8.1f}")
    ms = [1000*t for t in every]
    print(f"{'all':<18} {len(ms):>5} {statistics.median(ms):>10.1f} {percentile(ms, 90):>8.1f} {max(ms):>8.1f}")
    print(f"pictures: {100*sum(draws)/sum(every):.0f}% of the update time; plan and counts: the rest")
    print(f"slowest move ({slowest[1]}) / target = {worst:.3f} s / {args.target} s = {worst/args.target:.2f}")
    sys.exit(0 if worst < args.target else 1)


if __name__ == '__main__':
    main()
