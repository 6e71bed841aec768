"""Explorer → saved plan file → `slimlab prune MODEL --plan FILE --out DIR` → the model whose size the explorer showed.

The explorer computes its numbers from configs alone; here the command-line tool applies the saved plan to real
weights in another process, and the stock folder it writes must have exactly the parameter count the explorer showed,
and safetensors files of the size it showed (the weights at the model's dtype, plus a small header). A dense and an
MoE family are covered; the explorer must leave the model it was given unchanged.
"""
import subprocess, sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

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
