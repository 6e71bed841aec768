"""`slimlab run RECIPE --dry-run` prints the memory per GPU of a launch (--processes, --gpu-gib, --sharding, --offload,
--teacher, --cache-k) and says whether it fits; bad values and the options without --dry-run are one line on stderr and
status 2, before any work. Each case runs the installed command; the full-size recipe is planned on the meta device."""
import re, subprocess
from functools import partial

import pytest

import helpers
from helpers import ONE_THREAD

TERMS = ('student weights', 'gradients', 'optimizer state', 'teacher weights', 'activations', 'logit chunks', 'total')


slimlab = partial(helpers.slimlab, env=ONE_THREAD, timeout=300)


def dry_run(*options) -> str:
    "The stdout of a successful dry run of slimqwen-full with these launch options."
    r = slimlab('run', 'slimqwen-full', '--dry-run', *options)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def terms(out: str) -> dict[str, float]:
    "GiB per GPU of each term of the (last) training phase a dry run printed."
    found = {}
    for line in out.splitlines():
        if m := re.match(r"^ {4}(" + '|'.join(TERMS) + r") +([\d,.]+) GiB", line): found[m[1]] = float(m[2].replace(',', ''))
    assert set(found) == set(TERMS), out
    return found


def one_line(r: subprocess.CompletedProcess, status: int = 2) -> str:
    "The single line a failed command wrote to stderr, once its exit status is checked."
    assert r.returncode == status, f"status {r.returncode}, not {status}:\n{r.stderr[-3000:]}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines, not one:\n{r.stderr[-3000:]}"
    return lines[0]


@pytest.fixture(scope='module')
def cached() -> str:
    "The example of the docs: 64 GPUs, FSDP, an offline teacher cache."
    return dry_run('--processes', 64, '--sharding', 'fsdp', '--teacher', 'cache')


def test_example_prints_memory_fit_and_cache(cached):
    assert 'recipe slimqwen-full: Qwen/Qwen3-Next-80B-A3B-Instruct' in cached  # the plan is still printed first
    assert 'memory per GPU (64 processes, fsdp, bf16, teacher from a top-64 cache, 80 GiB GPUs):' in cached
    t = terms(cached)
    assert t['teacher weights'] == 0  # the teacher is not loaded: its logits come from the cache
    assert t['total'] == pytest.approx(sum(v for k, v in t.items() if k != 'total'), abs=0.02)
    assert re.search(r"^  fits: yes \(24\.7 GiB of 80 GiB\)$", cached, re.M), cached
    assert re.search(r"^  teacher cache on disk: 47\.0 TB \(120\.00B tokens × 392 bytes: 64 × \(4 \+ 2\) \+ 8\)$", cached, re.M), cached


def test_plain_dry_run_has_defaults():
    out = dry_run()
    assert 'memory per GPU (1 process, no sharding, bf16, teacher online, 80 GiB GPUs):' in out
    assert terms(out)['teacher weights'] > 100  # the whole bf16 teacher on one GPU
    assert re.search(r"^  fits: no \([\d,.]+ GiB of 80 GiB\)$", out, re.M) and 'teacher cache on disk' not in out


def test_more_processes_less_per_gpu_and_cache_has_no_teacher(cached):
    on16, on64 = terms(dry_run('--processes', 16, '--sharding', 'fsdp')), terms(dry_run('--processes', 64, '--sharding', 'zero3'))
    for k in ('student weights', 'gradients', 'optimizer state', 'teacher weights'):
        assert on16[k] == pytest.approx(4*on64[k], rel=0.01), k  # split over 4 times as many GPUs
    assert on16['total'] > on64['total'] > terms(cached)['total']
    assert on64['activations'] == terms(cached)['activations']  # each GPU runs its own micro-batch either way
    assert on64['teacher weights'] > 0 == terms(cached)['teacher weights']


def test_small_gpu_does_not_fit():
    assert re.search(r"^  fits: no \(24\.7 GiB of 24 GiB\)$",
                     dry_run('--processes', 64, '--sharding', 'fsdp', '--teacher', 'cache', '--gpu-gib', 24), re.M)


@pytest.mark.parametrize('options, message', [
    (['--processes', 0], "--processes=0 must be an integer >= 1"),
    (['--sharding', 'xyz'], "--sharding='xyz' is unknown; allowed: none, fsdp, zero3"),
    (['--sharding', 'fdsp'], "--sharding='fdsp' is unknown (did you mean 'fsdp'?); allowed: none, fsdp, zero3"),
    (['--teacher', 'foo'], "--teacher='foo' is unknown; allowed: online, cache"),
    (['--gpu-gib', -1], "--gpu-gib=-1.0 must be a number of GiB above 0 (80: an H100)"),
    (['--cache-k', 32], "--cache-k=32 sizes the teacher cache; it needs --teacher cache"),
])
def test_bad_launch_values(options, message):
    assert one_line(slimlab('run', 'slimqwen-full', '--dry-run', *options)) == f"slimlab: error: {message}"


@pytest.mark.parametrize('option', [['--processes', 8], ['--sharding', 'fsdp'], ['--teacher', 'cache'], ['--offload']])
def test_launch_options_need_dry_run(option, tmp_path):
    line = one_line(slimlab('run', 'minitron-depth', '--out', tmp_path/'run', *option))
    assert line == (f"slimlab: error: {option[0]} sizes the memory per GPU of a dry run; add --dry-run (a real run's processes, "
                    "sharding and precision come from its launcher: accelerate launch --config_file, torchrun)")
    assert not (tmp_path/'run').exists()  # refused before any work
