"""Distillation from a streamed source (`slimlab.data.BlockStream` of a local JSONL file, packed as it is read).

- A streamed run killed with SIGKILL after its first checkpoint resumes at the stream position the checkpoint saved and
  ends with exactly the weights and loss curve of an uninterrupted run.
- Two `torchrun` processes (gloo, CPU), each reading its share of the stream (blocks rank, rank + 2, ...), follow one
  process accumulating two micro-batches of the same stream: relative 1e-4 on every logged term and on the final
  weights (the tolerance of tests/test_distill_multiproc.py)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slimlab.data import load_lab_corpus, write_jsonl
from slimlab.distill import checkpoint_path, complete_checkpoints, read_metrics

WORKER = Path(__file__).with_name('distill_worker.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false')
TOLERANCE = 1e-4  # relative


def run(cmd: list[str]):
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir/'model'/'model.safetensors')


@pytest.fixture(scope='module')
def text_file(tmp_path_factory) -> Path:
    "Forty documents of the lab corpus as a JSONL file."
    return write_jsonl(load_lab_corpus('valid')[:40], tmp_path_factory.mktemp('data')/'docs.jsonl')


def test_killed_streamed_run_resumes_exactly(text_file, tmp_path):
    steps = [str(WORKER), '--stream', str(text_file), '--steps', '20', '--save-every', '4']
    run([sys.executable, steps[0], str(tmp_path/'straight'), *steps[1:]])
    proc = subprocess.Popen([sys.executable, steps[0], str(tmp_path/'killed'), *steps[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    deadline = time.monotonic() + 240
    while not complete_checkpoints(tmp_path/'killed') and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed (rc {proc.returncode}):\n{err[-3000:]}"
    killed_at = complete_checkpoints(tmp_path/'killed')[-1]
    position = json.loads((killed_at/'state.json').read_text())['stream']
    assert position['blocks'] == int(killed_at.name.split('-')[1])*2  # micro-batches of 2 blocks, accumulation 1
    run([sys.executable, steps[0], str(tmp_path/'killed'), *steps[1:], '--resume'])
    a, b = weights(tmp_path/'straight'), weights(tmp_path/'killed')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"weights differ after resuming from {killed_at.name}"
    assert [r['loss'] for r in read_metrics(tmp_path/'killed', 'train')] == [r['loss'] for r in read_metrics(tmp_path/'straight', 'train')]


def test_two_processes_stream_equal_one_with_accumulation(text_file, tmp_path):
    common = ['--stream', str(text_file), '--steps', '6', '--micro', '2', '--save-every', '3']
    run([sys.executable, str(WORKER), str(tmp_path/'one'), *common, '--accum', '2'])
    run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(WORKER), str(tmp_path/'two'), *common,
         '--accum', '1', '--processes', '2'])
    one, two = read_metrics(tmp_path/'one', 'train'), read_metrics(tmp_path/'two', 'train')
    assert [r['tokens'] for r in one] == [r['tokens'] for r in two] and len(one) == 6
    for a, b in zip(one, two):
        for key in ('loss', 'lm', 'kd'): assert b[key] == pytest.approx(a[key], rel=TOLERANCE), (a['step'], key)
    at_3 = {name: json.loads((checkpoint_path(tmp_path/name, 3)/'state.json').read_text())['stream'] for name in ('one', 'two')}
    assert (at_3['one']['blocks'], at_3['two']['blocks']) == (12, 6)  # blocks read by each process by step 3
    assert [at_3['one'][k] for k in ('doc', 'offset')] == [at_3['two'][k] for k in ('doc', 'offset')]  # the same place in the source
    wa, wb = weights(tmp_path/'one'), weights(tmp_path/'two')
    for k in wa: torch.testing.assert_close(wb[k], wa[k], rtol=TOLERANCE, atol=TOLERANCE*wa[k].abs().max().item())
