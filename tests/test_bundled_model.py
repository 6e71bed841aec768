"""The bundled SmolLM2: GGUF -> safetensors conversion into a fresh cache is exact and atomic, and a later load reads the
cached folder as it is (no second conversion, the same weights). How fast it loads is a benchmark: bench/bench_load.py."""
import os, subprocess, sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from slimlab.lab import bundled_gguf_path, bundled_model_dir, convert_gguf, load_model


@pytest.fixture(scope='module')
def fresh_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp('cache')
    mp.setenv('SLIMLAB_CACHE', str(cache))
    yield cache
    mp.undo()


def test_concurrent_first_use_converts_once_and_both_succeed(fresh_cache):
    "Two processes hitting a fresh cache at once (parallel notebook tests on a new machine) both get the model."
    code = "from slimlab.lab import bundled_model_dir; print(bundled_model_dir('smollm2-135m'))"
    procs = [subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, 'SLIMLAB_CACHE': str(fresh_cache)}) for _ in range(2)]
    results = [(p.wait(), p.stdout.read().strip(), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), [err[-500:] for _, _, err in results]
    assert {out for _, out, _ in results} == {str(fresh_cache/'models'/'smollm2-135m')}


def test_conversion_matches_gguf_and_reloads_unchanged(fresh_cache):
    folder = bundled_model_dir('smollm2-135m')
    assert folder.parent.parent == fresh_cache and (folder/'model.safetensors').exists()
    assert not list(folder.parent.glob('*.tmp-*')), 'no temporary folder may be left behind'
    gguf = bundled_gguf_path('smollm2-135m')
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    converted = load_model('smollm2-135m')
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314, 253, 1345]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, reference(ids).logits)
    # a stock folder: no quantization config survives the conversion
    assert 'quantization_config' not in (folder/'config.json').read_text()
    written = (folder/'model.safetensors').stat().st_mtime_ns
    reloaded = load_model('smollm2-135m')  # the second load reads the cached folder: nothing is converted again
    assert bundled_model_dir('smollm2-135m') == folder and (folder/'model.safetensors').stat().st_mtime_ns == written
    first, second = converted.state_dict(), reloaded.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_convert_refuses_existing_folder(tmp_path):
    with pytest.raises(FileExistsError, match='already exists'):
        convert_gguf(bundled_gguf_path('smollm2-135m'), tmp_path)
