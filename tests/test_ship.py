"""Shipping (chapter 14): a quantized folder reloads with plain transformers in a fresh process and computes the same
logits; int4 < int8 < float32 on disk; bad input fails in one line with nothing written; push fails in one line offline
and makes the right calls against a fake hub."""
import json, subprocess, sys
from pathlib import Path

import pytest
import torch

import huggingface_hub
from slimlab.lab import Job, load_model, load_tokenizer
from slimlab.ship import QUANT_RECORD, QUANT_SCHEMES, push, quantize_model, run_quantize, save_quantized, weight_bytes

ATOL = 1e-5 # logits of the reloaded model vs the quantized model before saving (both dequantize the same integers)

RELOAD = """
import sys, torch
from transformers import AutoModelForCausalLM
assert not any(m.startswith('slimlab') for m in sys.modules)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
ids = torch.load(sys.argv[2])
with torch.no_grad(): torch.save(model(ids).logits, sys.argv[3])
assert not any(m.startswith('slimlab') for m in sys.modules)
"""


@pytest.fixture(scope='module')
def ids():
    return torch.randint(0, 1000, (2, 32), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('scheme', list(QUANT_SCHEMES))
def test_round_trip_without_slimlab(tmp_path, ids, scheme):
    "Saved, then reloaded by plain transformers in another process: the same logits as before saving, within ATOL."
    model = quantize_model(load_model('llama-small'), scheme)
    with torch.no_grad(): before = model(ids).logits
    save_quantized(model, tmp_path/'q', load_tokenizer('llama-small'))
    torch.save(ids, tmp_path/'ids.pt')
    r = subprocess.run([sys.executable, '-c', RELOAD, str(tmp_path/'q'), str(tmp_path/'ids.pt'), str(tmp_path/'out.pt')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path/'out.pt'), before, atol=ATOL, rtol=0)
    with torch.no_grad(): float_logits = load_model('llama-small')(ids).logits
    assert (before - float_logits).abs().max() > ATOL  # the weights really were rounded


def test_sizes_on_disk(tmp_path):
    "int4 < int8 < float32, the quantized ones through the job."
    model = load_model('llama-small')
    model.save_pretrained(tmp_path/'float32'); load_tokenizer('llama-small').save_pretrained(tmp_path/'float32')
    sizes = {'float32': weight_bytes(tmp_path/'float32')}
    for s in QUANT_SCHEMES: sizes[s] = weight_bytes(run_quantize(tmp_path/'float32', tmp_path/s, s, Job(log=None)))
    assert sizes['int4'] < sizes['int8'] < sizes['float32'], sizes
    rec = json.loads((tmp_path/'int4'/QUANT_RECORD).read_text())
    assert (rec['scheme'], rec['group_size'], rec['library']) == ('int4', 32, 'compressed-tensors')


def test_bad_scheme_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError) as e: run_quantize('llama-tiny', tmp_path/'out', 'int16')
    assert str(e.value) == "scheme='int16' is unknown (did you mean 'int8'?); allowed: int8, int4"
    assert not any(tmp_path.iterdir())


def test_out_folder_with_results_is_refused(tmp_path):
    out = run_quantize('llama-tiny', tmp_path/'out', 'int8', Job(log=None))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(FileExistsError, match='already holds results; pass overwrite=True'): run_quantize('llama-tiny', out, 'int4')
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    run_quantize('llama-tiny', out, 'int4', Job(overwrite=True, log=None))
    assert json.loads((out/QUANT_RECORD).read_text())['scheme'] == 'int4'


@pytest.fixture
def card_folder(tmp_path):
    out = run_quantize('llama-tiny', tmp_path/'tiny-int8', 'int8', Job(log=None))
    (out/'README.md').write_text('# tiny int8\n')
    return out


def test_push_offline_is_one_line(card_folder, monkeypatch):
    "The real HfApi, offline: one OSError line that says the hub could not be reached and names the repository."
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(OSError) as e: push(card_folder, 'someone/tiny-int8')
    msg = str(e.value)
    assert '\n' not in msg and "could not be reached to push 'someone/tiny-int8'" in msg, msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_push_without_network_is_one_line(card_folder):
    "No HF_HUB_OFFLINE: the connection itself fails (this machine has no route to the hub) and gives the same one line."
    code = ("import sys; from slimlab.ship import push\n"
            "try: push(sys.argv[1], 'someone/tiny-int8')\n"
            "except OSError as e: print(e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, '-c', code, str(card_folder)], capture_output=True, text=True, timeout=300,
                       env={**__import__('os').environ, 'HF_HUB_OFFLINE': '0', 'HF_HUB_ETAG_TIMEOUT': '5'})
    if r.returncode == 0: pytest.skip('the hub is reachable from this machine')
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stdout.count('\n') == 1 and "could not be reached to push 'someone/tiny-int8'" in r.stdout, r.stdout


class FakeHfApi:
    "Records the calls a push makes."
    calls: list = []
    endpoint = 'https://huggingface.co'
    def __init__(self, token=None): self.calls.append(('init', token))
    def create_repo(self, repo_id, **kw): self.calls.append(('create_repo', repo_id, kw))
    def upload_folder(self, **kw): self.calls.append(('upload_folder', kw))


@pytest.fixture
def fake_hub(monkeypatch):
    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, 'HfApi', FakeHfApi)
    return FakeHfApi.calls


def test_push_calls(card_folder, fake_hub):
    url = push(card_folder, 'someone/tiny-int8', private=True, token='hf_x')
    assert url == 'https://huggingface.co/someone/tiny-int8'
    (_, token), (_, repo, create), (_, upload) = fake_hub
    assert (token, repo, create['exist_ok'], create['private']) == ('hf_x', 'someone/tiny-int8', True, True)
    assert (upload['repo_id'], Path(upload['folder_path'])) == ('someone/tiny-int8', card_folder)
    assert '.slimlab-owned' in upload['ignore_patterns']


@pytest.mark.parametrize('missing', ['README.md', 'config.json'])
def test_push_refuses_a_bad_folder_before_the_hub(card_folder, fake_hub, missing):
    (card_folder/missing).unlink()
    with pytest.raises(ValueError, match=f'has no {missing}; push a saved model folder with its model card'):
        push(card_folder, 'someone/tiny-int8')
    assert fake_hub == []  # no HfApi made, nothing created, nothing uploaded
