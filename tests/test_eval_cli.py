"""`slimlab eval` as a user runs it: perplexity of a text file, a teacher comparison with its report, one-line errors."""
import csv, os, subprocess, sys
from dataclasses import replace
from pathlib import Path

import pytest

from slimlab.data import token_stream
from slimlab.evaluate import perplexity
from slimlab.lab import load_model, load_tokenizer
from slimlab.prune import apply_plan, keep_all_plan

BIN = Path(sys.executable).parent
TEXT = ("A heap is a binary tree for which every parent node has a value less than or equal to any of its children. "
        "This implementation uses arrays for which heap[k] <= heap[2*k+1] and heap[k] <= heap[2*k+2] for all k.\n\n"
        "To create a heap, use a list initialized to [], or transform a populated list into a heap with heapify().\n\n")


def run(*args):
    return subprocess.run([str(BIN/'slimlab'), 'eval', *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'})


def test_text_file_perplexity_matches_the_library(tmp_path):
    text = tmp_path/'heap.txt'; text.write_text(TEXT*3)
    r = run('smollm2-135m', '--data', text, '--seq-len', 128)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith('ppl='), r.stdout
    tok = load_tokenizer('smollm2-135m')
    expected = perplexity(load_model('smollm2-135m'), token_stream([text.read_text()], tok), seq_len=128, progress=False)
    assert float(last[4:]) == pytest.approx(expected.value, rel=1e-4)
    assert 1 < expected.value < 30  # English prose about heaps is easy for SmolLM2; a broken pipeline gives thousands


def test_teacher_comparison_writes_report_once(tmp_path):
    teacher = load_model('llama-tiny')
    student = apply_plan(teacher, replace(keep_all_plan(teacher), layers=[0, 1]))
    student.save_pretrained(tmp_path/'student')  # no tokenizer files: the teacher's is borrowed
    text = tmp_path/'heap.txt'; text.write_text(TEXT)
    out = tmp_path/'report'
    args = [tmp_path/'student', '--teacher', 'llama-tiny', '--data', text, '--seq-len', 32,
            '--tasks', 'slimlab_cloze', '--limit', 3, '--out', out]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith('ppl=')
    assert any('top-1 agreement' in l for l in lines) and any('decode ×' in l for l in lines) and any('slimlab_cloze/acc=' in l for l in lines)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith('.')) == ['report.csv', 'report.md', 'retention.png']
    with open(out/'report.csv') as f: rows = list(csv.DictReader(f))
    assert [row['model'] for row in rows] == ['llama-tiny', str(tmp_path/'student')]
    assert float(lines[-1][4:]) == pytest.approx(float(rows[1]['ppl']), rel=1e-4)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run(*args)
    assert again.returncode == 2 and again.stderr.count('\n') == 1 and 'already holds results' in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize('args, expected', [
    (['llama-tiny', '--out', '{tmp}/r'], '--out writes a retention report against a teacher; pass --teacher'),
    (['llama-tiny', '--data', '{tmp}/missing.txt'], "missing.txt' does not exist"),
    (['llama-tiny', '--seq-len', '1'], '--seq-len=1 must be at least 2'),
    (['llama-tiny', '--max-tokens', '1'], '--max-tokens=1 must be at least 2'),
    (['llama-tiny', '--tasks', 'no_such_task'], 'tasks no_such_task unknown; allowed: slimlab_cloze, slimlab_continuation'),
    (['llama-tiny', '--teacher', 'llama-tiny'], '--teacher llama-tiny is MODEL itself'),
    (['smollm3', '--teacher', 'llama-tiny'], "model 'smollm3' is unknown"),
    (['llama-tiny', '--teacher', 'llama-3.1-8b', '--out', '{tmp}/r'], 'full-size config without weights'),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, expected):
    r = run(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count('\n') == 1 and expected in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_user_files_are_checked_before_any_work(tmp_path):
    "An empty text file, a window above the model's positions, a folder without weights: one line each, nothing written."
    from slimlab.lab import load_config
    (tmp_path/'empty.txt').write_text('')
    load_config('llama-tiny').save_pretrained(tmp_path/'no_weights')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    for args, expected in [(['llama-tiny', '--data', tmp_path/'empty.txt'], 'empty.txt has no records'),
                           (['llama-tiny', '--seq-len', 10**6], "seq_len=1000000 is above the model's limit of 2048 positions"),
                           ([tmp_path/'no_weights', '--teacher', 'llama-tiny', '--out', tmp_path/'r'], 'has no weights; expected one of')]:
        r = run(*args)
        assert r.returncode == 2 and r.stderr.count('\n') == 1 and expected in r.stderr, (args, r.stderr)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before
