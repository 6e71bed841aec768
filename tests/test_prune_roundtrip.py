"""Every family at tiny size: a real plan's saved folder is a stock checkpoint.

It loads with plain `AutoModelForCausalLM.from_pretrained` in a process that never imports slimlab, gives the same
logits as the in-memory pruned model, and `generate` works on it.
"""
import json, subprocess, sys

import pytest
import torch

from slimlab.anatomy import Anatomy
from slimlab.lab import load_model, scaled_names
from slimlab.prune import ModelShape, apply_plan, make_plan, random_scores, save_pruned, target_shape

FAMILIES = [n for n in scaled_names() if n.endswith('-tiny')]

RELOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM
folder, ids = sys.argv[1], torch.tensor(json.loads(sys.argv[2]))
model = AutoModelForCausalLM.from_pretrained(folder).eval()
assert not any(m.startswith('slimlab') for m in sys.modules)
with torch.no_grad(): logits = model(ids).logits
out = model.generate(ids[:1], max_new_tokens=4, do_sample=False)
torch.save({'logits': logits, 'generated': out}, folder + '/reloaded.pt')
"""


def cut_everything(model):
    "Targets that touch every axis the model has."
    s = ModelShape.of(model)
    targets = dict(drop_layers=1, hidden_size=0.75, num_kv_heads=1, num_heads=s.num_heads//s.num_kv_heads - 1 or 1,
                   intermediate_size=0.5)
    if s.num_experts: targets |= dict(num_experts=0.5, expert_size=0.5, top_k=1)
    if s.shared_expert_size and not Anatomy(model).family.shared_expert_count_field: targets['shared_expert_size'] = 0.5  # else it follows expert_size
    if Anatomy(model).family.heads_fill_hidden: targets['hidden_size'] = targets['num_heads']*s.head_dim  # cut together
    return targets


@pytest.mark.parametrize('name', FAMILIES)
def test_saved_plan_is_a_stock_checkpoint(name, tmp_path):
    model = load_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = make_plan(model, random_scores(model, seed=1), **cut_everything(model))
    pruned = apply_plan(model, plan)
    assert ModelShape.of(pruned) == target_shape(plan) != ModelShape.of(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), 'the teacher must not change'
    folder = save_pruned(pruned, tmp_path/'pruned', plan=plan)
    ids = torch.randint(0, 1000, (2, 10))
    subprocess.run([sys.executable, '-c', RELOAD, str(folder), json.dumps(ids.tolist())], check=True)
    reloaded = torch.load(folder/'reloaded.pt')
    with torch.no_grad(): expected = pruned(ids).logits
    torch.testing.assert_close(reloaded['logits'], expected, rtol=0, atol=0)  # identical
    assert reloaded['generated'].shape == (1, 14)
