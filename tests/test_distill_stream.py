"""Distillation from a streamed source (`slimlab.data.BlockStream` of a local JSONL file, packed as it is read).

- A streamed run killed with SIGKILL after its first checkpoint resumes at the stream position the checkpoint saved and
  ends with exactly the weights and loss curve of an uninterrupted run.
- Two `torchrun` processes (gloo, CPU), each reading its share of the stream (blocks rank, rank + 2, ...), follow one
  process accumulating two micro-batches of the same stream: relative 1e-4 on every logged term and on the final
  weights (the tolerance of tests/test_distill_multiproc.py)."""
import json, sys
from pathlib import Path

import pytest

from helpers import DISTILL_WORKER, TOLERANCE, TWO, assert_close_weights, assert_same_weights, kill_after_first_checkpoint, run
from slimlab.data import load_lab_corpus, write_jsonl
from slimlab.distill import checkpoint_path, read_metrics


@pytest.fixture(scope='module')
def text_file(tmp_path_factory) -> Path:
    "Forty documents of the lab corpus as a JSONL file."
    return write_jsonl(load_lab_corpus('valid')[:40], tmp_path_factory.mktemp('data')/'docs.jsonl')


def test_killed_streamed_run_resumes_exactly(text_file, tmp_path):
    steps = ['--stream', str(text_file), '--steps', '20', '--save-every', '4']
    run([sys.executable, str(DISTILL_WORKER), str(tmp_path/'straight'), *steps])
    killed_at = kill_after_first_checkpoint([sys.executable, str(DISTILL_WORKER), str(tmp_path/'killed'), *steps], tmp_path/'killed')
    position = json.loads((killed_at/'state.json').read_text())['stream']
    assert position['blocks'] == int(killed_at.name.split('-')[1])*2  # micro-batches of 2 blocks, accumulation 1
    run([sys.executable, str(DISTILL_WORKER), str(tmp_path/'killed'), *steps, '--resume'])
    assert_same_weights(tmp_path/'straight', tmp_path/'killed')
    assert [r['loss'] for r in read_metrics(tmp_path/'killed', 'train')] == [r['loss'] for r in read_metrics(tmp_path/'straight', 'train')]


def test_two_processes_stream_equal_one_with_accumulation(text_file, tmp_path):
    common = ['--stream', str(text_file), '--steps', '6', '--micro', '2', '--save-every', '3']
    run([sys.executable, str(DISTILL_WORKER), str(tmp_path/'one'), *common, '--accum', '2'])
    run([*TWO, str(DISTILL_WORKER), str(tmp_path/'two'), *common, '--accum', '1', '--processes', '2'])
    one, two = read_metrics(tmp_path/'one', 'train'), read_metrics(tmp_path/'two', 'train')
    assert [r['tokens'] for r in one] == [r['tokens'] for r in two] and len(one) == 6
    for a, b in zip(one, two):
        for key in ('loss', 'lm', 'kd'): assert b[key] == pytest.approx(a[key], rel=TOLERANCE), (a['step'], key)
    at_3 = {name: json.loads((checkpoint_path(tmp_path/name, 3)/'state.json').read_text())['stream'] for name in ('one', 'two')}
    assert (at_3['one']['blocks'], at_3['two']['blocks']) == (12, 6)  # blocks read by each process by step 3
    assert [at_3['one'][k] for k in ('doc', 'offset')] == [at_3['two'][k] for k in ('doc', 'offset')]  # the same place in the source
    assert_close_weights(tmp_path/'one', tmp_path/'two')
