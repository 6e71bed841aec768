"""Throughput of SmolLM2 and of copies without some decoder layers: prefill and decode tokens/s, measured interleaved in one run.

Usage: .venv/bin/python bench/bench_eval.py [--repeats 5] [--prompt-len 128] [--new-tokens 32]
Prints a markdown table (tokens/s, ratio to the full model) and the memory at 2048 tokens of context.
"""
import argparse, copy

from transformers.utils import logging

from slimlab.anatomy import Anatomy
from slimlab.evaluate import measure_speed, memory_bytes, speed_ratios
from slimlab.lab import load_model

STUDENTS = {'without layers 26-27 (28 of 30)': [26, 27], 'without layers 15-29 (15 of 30)': list(range(15, 30))}


def drop_layers(model, drop):
    "A copy of `model` without the decoder layers `drop` (benchmark scaffolding; chapter 5 prunes properly)."
    student = copy.deepcopy(model)
    a = Anatomy(student)
    for i in sorted(drop, reverse=True): del a.blocks[i]
    student.config.num_hidden_layers = len(a.blocks)
    for i in range(len(a.blocks)): a.attention(i).layer_idx = i
    return student


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--prompt-len', type=int, default=128)
    p.add_argument('--new-tokens', type=int, default=32)
    args = p.parse_args()
    logging.disable_progress_bar()
    teacher = load_model('smollm2-135m')
    models = {'SmolLM2-135M': teacher} | {name: drop_layers(teacher, drop) for name, drop in STUDENTS.items()}
    speeds = measure_speed(models, args.prompt_len, args.new_tokens, (1, 8), args.repeats)
    ratios = speed_ratios(speeds, 'SmolLM2-135M')
    print(f"prompt {args.prompt_len} tokens, {args.new_tokens} decode steps, median of {args.repeats} interleaved rounds\n")
    print('| model | batch | prefill tok/s | decode tok/s | prefill ratio | decode ratio | memory @2048 (MiB) |\n|---|---|---|---|---|---|---|')
    for s in speeds:
        pre, dec = ratios[s.model, s.batch_size]
        print(f"| {s.model} | {s.batch_size} | {s.prefill:.0f} | {s.decode:.0f} | {pre:.2f}× | {dec:.2f}× | "
              f"{memory_bytes(models[s.model], 2048)['total']/2**20:.0f} |")


if __name__ == '__main__':
    main()
