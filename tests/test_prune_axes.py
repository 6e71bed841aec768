"""`slimlab prune` cuts every axis alone, on every tiny family that has it (issue 21: a width, head or expert cut
without --drop-layers crashed).

Each cut writes a folder that plain `AutoModelForCausalLM.from_pretrained` loads with the new size in its config and
runs forward; an axis a family lacks, a ratio that rounds to nothing and fewer experts than top-k fail with one line and
exit code 2. To keep process starts down, the cuts of one family run in one process that calls the console command's
`main` once per command line (the `slimlab` script is `sys.exit(main())`); the issue's own commands and the refusals
run through the `slimlab` script itself.
"""
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from helpers import slimlab

from slimlab.lab import scaled_names

FAST = ['--samples', '2', '--seq-len', '32', '--no-progress']
DENSE = ['llama-tiny', 'mistral-tiny', 'qwen2-tiny', 'qwen3-tiny', 'gemma2-tiny', 'gemma3_text-tiny', 'phi3-tiny', 'olmo2-tiny',
         'granite-tiny', 'smollm3-tiny']
MOE = ['qwen3_moe-tiny', 'olmoe-tiny', 'gpt_oss-tiny', 'deepseek_v3-tiny', 'mixtral-tiny', 'qwen2_moe-tiny', 'qwen3_next-tiny']
SHARED = ['qwen2_moe-tiny', 'qwen3_next-tiny']  # MoE families with a shared expert
EXPERTS_FIELD = {'mixtral': 'num_local_experts', 'gpt_oss': 'num_local_experts', 'deepseek_v3': 'n_routed_experts'}  # config field of the routed experts (default: num_experts)
EXPERT_SIZE_FIELD = {'mixtral': 'intermediate_size', 'olmoe': 'intermediate_size', 'gpt_oss': 'intermediate_size'}  # config field of an expert's width (default: moe_intermediate_size)

COUPLED = ['olmoe-tiny']  # num_heads × head_dim must equal hidden_size: heads and hidden channels are cut together
AXES = {  # option -> (value, families it applies to); every tiny family: 4 blocks, hidden 64, 4 heads in 2 KV groups
    'drop-layers': ('1', DENSE + MOE),
    'hidden-size': ('0.5', [f for f in DENSE + MOE if f not in COUPLED]),
    'num-heads': ('2', [f for f in DENSE + MOE if f not in COUPLED]),
    'num-kv-heads': ('1', [f for f in DENSE + MOE if f not in COUPLED]),
    'intermediate-size': ('0.5', DENSE + ['deepseek_v3-tiny']),  # DeepSeek's first block is dense
    'num-experts': ('4', MOE), 'expert-size': ('0.5', MOE), 'shared-expert-size': ('0.5', SHARED),
}
CUTS = [(family, axis) for axis, (_, families) in AXES.items() for family in families]
MISSING = [(family, axis) for axis, (_, families) in AXES.items() for family in DENSE + MOE if family not in families]

DRIVER = """
import contextlib, io, json, sys, traceback
from slimlab.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main(argv)
        except Exception: rc, err = 1, io.StringIO(traceback.format_exc())
    results.append(dict(rc=rc, stdout=out.getvalue(), stderr=err.getvalue()))
open(sys.argv[2], 'w').write(json.dumps(results))
"""


def model_type(family: str) -> str:
    return family.split('-')[0]


def expected_config(family: str, axis: str) -> dict:
    "The config fields a cut of `axis` sets on a tiny `family` model."
    t = model_type(family)
    if t == 'deepseek_v3' and axis == 'num-kv-heads': return dict(num_attention_heads=1, num_key_value_heads=1)  # a K/V per head
    return {'drop-layers': dict(num_hidden_layers=3), 'hidden-size': dict(hidden_size=32),
            'num-heads': dict(num_attention_heads=2, num_key_value_heads=2),
            'num-kv-heads': dict(num_attention_heads=2, num_key_value_heads=1), 'intermediate-size': dict(intermediate_size=96),
            'num-experts': {EXPERTS_FIELD.get(t, 'num_experts'): 4, 'num_experts_per_tok': 2},
            'expert-size': {EXPERT_SIZE_FIELD.get(t, 'moe_intermediate_size'): 24},
            'shared-expert-size': dict(shared_expert_intermediate_size=48)}[axis]


def refusal(family: str, axis: str) -> str:
    "The message for an axis `family` does not have."
    field, t = axis.replace('-', '_'), model_type(family)
    if family in COUPLED and axis in ('hidden-size', 'num-heads', 'num-kv-heads'):
        heads, hidden = {'hidden-size': (4, 32), 'num-heads': (2, 64), 'num-kv-heads': (2, 64)}[axis]
        return (f"olmoe builds its query norm hidden_size wide, so num_heads × head_dim must equal hidden_size; this plan keeps "
                f"{heads} heads × 16 = {heads*16} and hidden_size {hidden}: cut hidden_size and the heads together")
    if axis == 'intermediate-size': return f"intermediate_size applies to dense MLPs; every block of this {t} model is MoE"
    if t == 'deepseek_v3': return "shared_expert_size=0.5 cannot be cut on its own in deepseek_v3: its shared expert is n_shared_experts"
    if family in MOE: return f"shared_expert_size applies to MoE models with a shared expert; {t} has none"
    return f"{field} applies to MoE models; {t} has no routed experts here"


def out_dir(root: Path, family: str, axis: str) -> Path:
    return root/f"{family}--{axis}"


def run_family(root: Path, family: str) -> dict:
    "Every single-axis `slimlab prune` of `family` in one process: (family, axis) -> rc, stdout, stderr."
    axes = [axis for f, axis in CUTS + MISSING if f == family]
    argvs = [['prune', family, f'--{axis}', AXES[axis][0], '--out', str(out_dir(root, family, axis)), *FAST] for axis in axes]
    results = root/f"{family}.json"
    subprocess.run([sys.executable, '-c', DRIVER, json.dumps(argvs), str(results)], check=True,
                   env={**os.environ, 'TOKENIZERS_PARALLELISM': 'false'})
    return {(family, axis): r for axis, r in zip(axes, json.loads(results.read_text()))}


@pytest.fixture(scope='module')
def cuts(tmp_path_factory):
    "The results of every single-axis prune of every tiny family, two families at a time, and their output root."
    root = tmp_path_factory.mktemp('axes')
    with ThreadPoolExecutor(2) as pool: per_family = list(pool.map(lambda f: run_family(root, f), DENSE + MOE))
    return {k: v for r in per_family for k, v in r.items()}, root


def test_every_tiny_family_is_covered():
    assert sorted(DENSE + MOE) == sorted(n for n in scaled_names() if n.endswith('-tiny'))


@pytest.mark.parametrize('family, axis', CUTS, ids=[f"{f}--{a}" for f, a in CUTS])
def test_single_axis_cut_is_a_stock_model(cuts, family, axis):
    results, root = cuts
    r = results[family, axis]
    assert r['rc'] == 0, r['stderr']
    assert 'pruned model written to' in r['stdout']
    model = AutoModelForCausalLM.from_pretrained(out_dir(root, family, axis)).eval()
    expected = expected_config(family, axis)
    if axis != 'drop-layers': expected['num_hidden_layers'] = 4  # a width, head or expert cut keeps every block
    assert {k: getattr(model.config, k) for k in expected} == expected
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    with torch.no_grad(): logits = model(ids).logits
    assert logits.shape == (2, 8, model.config.vocab_size) and torch.isfinite(logits).all()


@pytest.mark.parametrize('family, axis', MISSING, ids=[f"{f}--{a}" for f, a in MISSING])
def test_axis_a_family_lacks_is_one_line(cuts, family, axis):
    results, root = cuts
    r = results[family, axis]
    assert r['rc'] == 2
    assert r['stderr'].count('\n') == 1 and r['stderr'].startswith(f"slimlab: error: {refusal(family, axis)}"), r['stderr']
    assert not out_dir(root, family, axis).exists()


@pytest.mark.parametrize('args, message', [
    (['llama-tiny', '--drop-layers', '0.01'], "drop_layers=0.01 rounds to 0 of 4 blocks (0.01 × 4 = 0.04): it removes none; "
                                              "the smallest ratio that removes one is 0.13, or give a count in 1..3"),
    (['llama-tiny', '--hidden-size', '0.01'], "hidden_size=0.01 rounds to 0 of 64 (0.01 × 64 = 0.64): it keeps none; "
                                              "the smallest ratio that keeps one is 0.016, or give a count in 1..64"),
    (['llama-tiny', '--drop-layers', '0'], "drop_layers=0 removes no block; allowed 1..3, or a ratio in (0, 1)"),
    (['mixtral-tiny', '--num-experts', '1'], "num_experts=1 must be at least top_k (num_experts_per_tok=2): allowed 2..8"),
    (['qwen3_next-tiny', '--num-experts', '0.2'], "num_experts=0.2 (1) must be at least top_k (num_experts_per_tok=2)"),
], ids=['drop-ratio-0.01', 'hidden-ratio-0.01', 'drop-0', 'experts-below-top-k', 'experts-ratio-below-top-k'])
def test_refusal_through_the_script(tmp_path, args, message):
    r = slimlab('prune', *args, '--out', str(tmp_path/'out'), *FAST)
    assert r.returncode == 2
    assert r.stderr.count('\n') == 1 and r.stderr.startswith(f"slimlab: error: {message}"), r.stderr
    assert not (tmp_path/'out').exists()


def test_width_cut_alone_through_the_script(tmp_path):
    "The issue's command: a hidden-size cut without --drop-layers."
    r = slimlab('prune', 'llama-tiny', '--hidden-size', '32', '--out', str(tmp_path/'w'), *FAST)
    assert r.returncode == 0, r.stderr
    config = AutoModelForCausalLM.from_pretrained(tmp_path/'w').config
    assert (config.hidden_size, config.num_hidden_layers) == (32, 4)


def test_smollm2_mlp_cut(tmp_path):
    "The bundled SmolLM2 with its MLPs cut 1536 -> 1152, every block kept."
    r = slimlab('prune', 'smollm2-135m', '--intermediate-size', '1152', '--out', str(tmp_path/'smol'), *FAST)
    assert r.returncode == 0, r.stderr
    model = AutoModelForCausalLM.from_pretrained(tmp_path/'smol').eval()
    assert (model.config.intermediate_size, model.config.num_hidden_layers, model.config.hidden_size) == (1152, 30, 576)
    ids = torch.randint(0, model.config.vocab_size, (1, 8))
    with torch.no_grad(): logits = model(ids).logits
    assert logits.shape == (1, 8, 49152) and torch.isfinite(logits).all()
