"""Explorer → saved plan file → `slimlab prune MODEL --plan FILE --out DIR` → the model whose size the explorer showed.

The explorer computes its numbers from configs alone; here the command-line tool applies the saved plan to real
weights in another process, and the stock folder it writes must have exactly the parameter count the explorer showed,
and safetensors files of the size it showed (the weights at the model's dtype, plus a small header). A dense and an
MoE family are covered; the explorer must leave the model it was given unchanged.

On an MoE whose expert count is cut, the explorer's expert merge must be the experts chapter's: the groups of
`expert_groups` and the model of `compress_experts` (measured by the quality probe), for every similarity measure.
"""
import math, subprocess, sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from slimlab.evaluate import token_nll
from slimlab.experts import compress_experts, mlp_inputs
from slimlab.importance import importance
from slimlab.lab import load_model
from slimlab.prune import load_plan
from slimlab.widgets import PruningExplorer

CASES = { # model -> (metrics of its report, slider moves)
    'llama-tiny': (['channel', 'head', 'neuron', 'block_influence'],
                   dict(drop_layers=1, hidden_size=48, num_kv_heads=1, intermediate_size=128)),
    'qwen2_moe-tiny': (['channel', 'head', 'block_influence', 'reap', 'expert_neuron', 'neuron:part=shared_expert'],
                       dict(drop_layers=1, hidden_size=40, heads_per_group=1, num_experts=4, preserve=0.5, expert_size=32,
                            shared_expert_size=64)),
}


@pytest.mark.parametrize('name', CASES)
def test_saved_plan_prunes_to_the_size_shown(name, tmp_path):
    metrics, moves = CASES[name]
    model = load_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = importance(model, torch.randint(0, 1000, (4, 32), generator=torch.Generator().manual_seed(0)), metrics, progress=False)
    explorer = PruningExplorer(model, report, plan_path=tmp_path/'plan.yaml').set(**moves)
    shown = explorer.preview
    assert f"<span class='slimlab-params'>{shown.params:,}</span>" in explorer.numbers.value
    explorer.save_button.click()  # as in the widget
    assert (tmp_path/'plan.yaml').exists(), explorer.saved.value

    out = tmp_path/'pruned'
    res = subprocess.run([str(Path(sys.executable).parent/'slimlab'), 'prune', name, '--plan', str(tmp_path/'plan.yaml'),
                          '--out', str(out), '--no-progress'], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    pruned = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in pruned.parameters()) == shown.params
    disk = sum(f.stat().st_size for f in out.glob('*.safetensors'))
    assert 0 <= disk - shown.bytes < 64*1024, f"safetensors {disk} bytes, explorer showed {shown.bytes}"
    assert load_plan(out/'slimlab_plan.yaml') == explorer.plan
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), 'the explorer changed the model'


def held_out_ppl(model, ids: torch.Tensor) -> float:
    "Perplexity over the rows of `ids`, each scored on its own (as the probe scores them)."
    return math.exp(torch.cat([token_nll(model, row, seq_len=len(row), progress=False) for row in ids]).double().mean().item())


@pytest.mark.parametrize('similarity', ['router', 'weights', 'output'])
def test_expert_merge_is_the_experts_chapter_merge(similarity):
    model = load_model('qwen3_moe-tiny')
    g = torch.Generator().manual_seed(0)
    calibration, probe_ids = torch.randint(0, 1000, (4, 32), generator=g), torch.randint(0, 1000, (2, 16), generator=g)
    report = importance(model, calibration, ['reap', 'expert_neuron'], progress=False)
    inputs = mlp_inputs(model, calibration, progress=False) if similarity == 'output' else None
    explorer = PruningExplorer(model, report, probe_ids=probe_ids, similarity=similarity, block_inputs=inputs)
    ppl = {}
    for preserve in (0.0, 0.5, 1.0):
        explorer.set(num_experts=4, preserve=preserve)
        merged, groups = compress_experts(model, 4, report['reap'].values, 'partial', preserve, similarity, inputs)
        assert explorer.groups == groups
        assert explorer.plan.experts == {i: [group[0] for group in block] for i, block in groups.items()}
        ppl[preserve] = explorer.probe()
        assert ppl[preserve] == pytest.approx(held_out_ppl(merged, probe_ids), rel=1e-5)
    assert all(len(group) == 1 for block in explorer.groups.values() for group in block), 'share 1 drops the removed experts'
    explorer.set(preserve=0.0)
    assert all(sorted(e for group in block for e in group) == list(range(8)) for block in explorer.groups.values()), \
        'share 0 merges every removed expert into a base'
    assert ppl[0.0] != ppl[1.0]
    explorer.set(num_experts=8)
    assert explorer.groups is None and explorer.plan.experts is None


def test_expert_merge_settings_are_checked_first():
    model = load_model('qwen3_moe-tiny')
    report = importance(model, torch.randint(0, 1000, (2, 16)), ['reap'], progress=False)
    with pytest.raises(ValueError, match="similarity='cosine' is unknown; allowed: router, weights, output"):
        PruningExplorer(model, report, similarity='cosine')
    with pytest.raises(ValueError, match="similarity='output' needs block_inputs"):
        PruningExplorer(model, report, similarity='output')
