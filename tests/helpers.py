"""What the tests that start other processes share: the console command, the distillation workers, a kill after the
first checkpoint, and comparisons of the weights two runs end with. Imported by the test files (pytest puts tests/ on
the import path)."""
import os, signal, subprocess, sys, time
from pathlib import Path

import torch
from safetensors.torch import load_file

from slimlab.distill import complete_checkpoints

BIN = Path(sys.executable).parent  # the virtual environment's scripts: `slimlab` is installed there
OFFLINE = {'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
ONE_THREAD = {'OMP_NUM_THREADS': '1'}  # deterministic, and fair to the other process of a two-process test
ENV = {**os.environ, **OFFLINE, **ONE_THREAD}  # what the workers run with
DISTILL_WORKER = Path(__file__).with_name('distill_worker.py')
TWO = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']  # two gloo processes
TOLERANCE = 1e-4  # relative: an all-reduce of two gradients sums in another order than accumulation


def slimlab(*args, cwd=None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    "Run the console command offline (with `env` added to the environment); the finished process."
    return subprocess.run([str(BIN/'slimlab'), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **OFFLINE, **(env or {})})


def run(cmd: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    "Run a worker command with `ENV`; unless `ok` is False, fail the test with its output when it fails."
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    if ok: assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out


def kill_after_first_checkpoint(cmd: list[str], run_dir: Path, wait: float = 240) -> Path:
    "Start `cmd`, SIGKILL it as soon as `run_dir` holds a complete checkpoint; that checkpoint's folder."
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + wait
    while not complete_checkpoints(run_dir) and proc.poll() is None and time.monotonic() < deadline: time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed (rc {proc.returncode}):\n{err[-3000:]}"
    assert complete_checkpoints(run_dir), f"no checkpoint in {run_dir} after {wait} s:\n{err[-3000:]}"
    assert not (run_dir/'model').exists(), "the killed run wrote its final model"
    return complete_checkpoints(run_dir)[-1]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    "The final weights of a distillation run."
    return load_file(run_dir/'model'/'model.safetensors')


def assert_same_weights(a: Path, b: Path):
    "Two runs end with bit-identical weights."
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys(), sorted(wa.keys() ^ wb.keys())
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def assert_close_weights(a: Path, b: Path, tolerance: float = TOLERANCE):
    "Two runs end with weights equal within a relative `tolerance` (absolute: the tolerance times a tensor's largest entry)."
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys(), sorted(wa.keys() ^ wb.keys())
    for k in wa: torch.testing.assert_close(wb[k], wa[k], rtol=tolerance, atol=tolerance*wa[k].abs().max().item(), msg=lambda m: f"{k}: {m}")


def snapshot(folder: Path) -> dict:
    "Every file under `folder` with its bytes."
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def save_tiny_teacher(folder: Path, seed: int = 0) -> Path:
    "A random tiny Llama and its tokenizer saved as a model folder, as a user's own teacher would be."
    from slimlab.lab import load_model, load_tokenizer
    load_model('llama-tiny', seed=seed).save_pretrained(folder); load_tokenizer('llama-tiny').save_pretrained(folder)
    return folder


def tiny_recipe(teacher: str | Path = 'llama-tiny', **sections) -> dict:
    """A recipe that runs in seconds: two of the tiny teacher's blocks removed, 256 tokens of distillation, short
    calibration and report; `sections` replace or extend its sections (`distill=dict(save_every=2)` updates distill)."""
    recipe = dict(name='tiny', teacher=str(teacher), prune=dict(final=dict(drop_layers=2)), calibration=dict(samples=4, seq_len=32),
                  loss=dict(chunk=128), data=dict(validation_tokens=128), report=dict(seq_len=32, max_tokens=256, speed_batch_sizes=[]),
                  distill=dict(max_tokens=256, micro_batch_size=2, seq_len=32, warmup_steps=1, eval_every=0, save_every=0))
    for name, value in sections.items():
        recipe[name] = recipe[name] | value if isinstance(value, dict) and isinstance(recipe.get(name), dict) else value
    return recipe
