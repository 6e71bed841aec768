"""Every supported family, on its tiny config built from the stock transformers config class (issue 23).

One calibration pass gives every score that applies to the family; a fused family (Phi-3) scores and cuts exactly as the
same weights laid out unfused (Llama); the depth cut keeps the per-block config lists of the kept blocks.
The parameter counts, the identity plan and the saved cut are checked for every family in the anatomy and pruning
chapters and in tests/test_prune_roundtrip.py and tests/test_prune_axes.py.
"""
import pytest
import torch
import transformers

from slimlab.anatomy import FAMILY_REGISTRY, Anatomy
from slimlab.importance import METRICS, importance
from slimlab.lab import FAMILIES, SIZES, load_model, scaled_config, scaled_names
from slimlab.prune import ModelShape, apply_plan, make_plan, random_scores, sync_config

TINY = [n for n in scaled_names() if n.endswith('-tiny')]


def every_request(a: Anatomy) -> list[str]:
    "Every metric that applies to the model, and every value of its choice options that applies (`metric:option=value`)."
    requests = []
    for name, m in METRICS.items():
        if (m.moe_only and not a.num_experts) or m.tokenizer: continue  # a task score needs a real tokenizer: tests/test_recipes.py, chapter 06
        options = {k: m.allowed(k, a) for k in m.choices}
        parts = options.get('part')
        if parts is not None and not parts: continue
        requests += [f"{name}:part={p}" for p in parts] if parts else [name]
    return requests


def test_every_family_has_scaled_configs():
    assert sorted(FAMILIES) == sorted(FAMILY_REGISTRY)
    assert all(f"{f}-{s}" in scaled_names() for f in FAMILIES for s in SIZES)


@pytest.mark.parametrize('name', TINY)
def test_one_calibration_pass_gives_every_score(name):
    model = load_model(name)
    a = Anatomy(model)
    requests = every_request(a)
    report = importance(model, torch.randint(0, 1000, (4, 24)), requests, batch_size=2, progress=False)
    assert sorted(report.scores) == sorted(requests)
    for label, score in report.scores.items():
        assert torch.isfinite(score.values).any(), label
    assert report['channel'].values.shape == (2*a.num_layers + 1, a.hidden_size)


def llama_twin(phi):
    "A Llama model holding a Phi-3 model's weights with q/k/v and gate/up unfused (the two families compute the same function)."
    c = phi.config
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_parameters['rope_theta'],
        tie_word_embeddings=False)).eval()
    q, kv, width = c.num_attention_heads*c.hidden_size//c.num_attention_heads, c.num_key_value_heads*c.hidden_size//c.num_attention_heads, c.intermediate_size
    state = {}
    for k, v in phi.state_dict().items():
        if 'qkv_proj' in k:
            for part, rows in zip('qkv', v.split([q, kv, kv])): state[k.replace('qkv_proj', f'{part}_proj')] = rows
        elif 'gate_up_proj' in k:
            for part, rows in zip(('gate', 'up'), v.split([width, width])): state[k.replace('gate_up_proj', f'{part}_proj')] = rows
        else: state[k] = v
    llama.load_state_dict(state)
    return llama


def test_fused_family_scores_and_cuts_as_its_unfused_twin():
    phi = load_model('phi3-tiny')
    llama = llama_twin(phi)
    ids = torch.randint(0, 1000, (2, 16))
    with torch.no_grad(): torch.testing.assert_close(phi(ids).logits, llama(ids).logits)
    requests = ['channel', 'head', 'neuron', 'taylor:part=head', 'taylor:part=neuron']
    scores = [importance(m, ids, requests, progress=False) for m in (phi, llama)]
    for label in requests: torch.testing.assert_close(scores[0][label].values, scores[1][label].values, rtol=1e-4, atol=1e-6)
    targets = dict(drop_layers=1, hidden_size=48, num_kv_heads=1, num_heads=1, intermediate_size=0.5)
    cuts = [apply_plan(m, make_plan(m, random_scores(phi, seed=3), **targets)) for m in (phi, llama)]
    with torch.no_grad(): torch.testing.assert_close(cuts[0](ids).logits, cuts[1](ids).logits)


@pytest.mark.parametrize('name, field', [('smollm3-tiny', 'no_rope_layers'), ('gemma2-tiny', 'layer_types'),
                                         ('gemma3_text-tiny', 'layer_types')])
def test_depth_cut_keeps_the_kept_blocks_entries(name, field):
    model = load_model(name)
    plan = make_plan(model, random_scores(model, seed=0), drop_layers=1)
    config = sync_config(model.config, plan)
    assert getattr(config, field) == [getattr(model.config, field)[i] for i in plan.layers]
    assert ModelShape.of(apply_plan(model, plan)).num_layers == len(plan.layers)


def zeroed_copy(model, layer_neurons: dict[int, list[int]]):
    "A copy of an MoE model in which the given neurons of every expert of each block write nothing (their down weights are zero)."
    import copy
    zeroed = copy.deepcopy(model)
    a = Anatomy(zeroed)
    for i, neurons in layer_neurons.items():
        t = a.expert_layout.read(a.experts(i))
        down = t.down.detach().clone()
        down[:, :, neurons] = 0
        with torch.no_grad():
            for name, value in a.expert_layout.native(t._replace(down=down)).items(): getattr(a.experts(i), name).copy_(value)
    return zeroed


@pytest.mark.parametrize('name', ['gpt_oss-tiny', 'qwen3_moe-tiny', 'olmoe-tiny'])
def test_expert_neuron_cut_equals_zeroing_them(name):
    "Whatever the layout (gate/up stacked or interleaved, transposed, biased), cutting expert neurons computes what zeroing them does."
    model = load_model(name)
    a, plan = Anatomy(model), make_plan(model, random_scores(model, seed=2), expert_size=0.5)
    removed = {i: sorted(set(range(a.expert_size)) - set(plan.expert_neurons[i][0])) for i in a.moe_layers}
    scores = random_scores(model, seed=2)
    scores['expert_neurons'] = torch.zeros_like(scores['expert_neurons'])
    for i, r in removed.items(): scores['expert_neurons'][i, :, [n for n in range(a.expert_size) if n not in r]] = 1  # the same neurons in every expert
    cut = apply_plan(model, make_plan(model, scores, expert_size=0.5))
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad(): torch.testing.assert_close(cut(ids).logits, zeroed_copy(model, removed)(ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['gpt_oss-tiny', 'deepseek_v3-tiny', 'qwen2-tiny'])
def test_head_cut_equals_zeroing_the_heads(name):
    "A cut query head takes everything that is its own: gpt-oss's attention sink, DeepSeek's rows of q_b and kv_b, Qwen2's q bias."
    import copy
    model = load_model(name)
    a = Anatomy(model)
    plan = make_plan(model, random_scores(model, seed=4), num_heads=2)  # one query head per KV group, or 2 of 4 latent heads
    zeroed = copy.deepcopy(model)
    for i in a.attention_layers:
        o = Anatomy(zeroed).attention_projections(i)['o']
        with torch.no_grad():
            for h in set(range(a.num_heads)) - set(plan.heads[i]): o.weight[:, h*a.v_head_dim:(h + 1)*a.v_head_dim] = 0
    cut = apply_plan(model, plan)
    assert ModelShape.of(cut).num_heads == 2
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad(): torch.testing.assert_close(cut(ids).logits, zeroed(ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kept, dense_prefix', [([1, 2, 3], 0), ([0, 2, 3], 1), ([0, 1], 1)])
def test_depth_cut_keeps_the_dense_prefix(kept, dense_prefix):
    "DeepSeek-V3: the first `first_k_dense_replace` blocks are dense; a depth cut counts the dense blocks it keeps."
    from slimlab.prune import keep_all_plan
    model = load_model('deepseek_v3-tiny')  # block 0 dense, blocks 1-3 MoE
    plan = keep_all_plan(model)
    plan.layers = kept  # the per-block lists name every source block
    cut = apply_plan(model, plan)
    assert cut.config.first_k_dense_replace == dense_prefix
    assert [Anatomy(cut).is_moe_layer(j) for j in range(len(kept))] == [i >= 1 for i in kept]


@pytest.mark.parametrize('args, message', [
    (['deepseek_v3-tiny', '--num-experts', '3'],
     "num_experts=3 must be a multiple of n_group=2: the router picks experts within 2 groups, and a cut keeps as many of each; allowed: 4, 6"),
    (['deepseek_v3-tiny', '--num-experts', '2', '--top-k', '1'],
     "plan.experts[1] keeps [1, 1] experts of the 2 groups (n_group); grouped routing needs the same number in each, at least 2"),
    (['deepseek_v3-tiny', '--num-experts', '4', '--top-k', '3'],
     "top_k=3 is more than the 2 experts the router may pick (topk_group=1 groups of 2); allowed 1..2"),
    (['olmoe-tiny', '--num-heads', '2', '--hidden-size', '48'],
     "olmoe builds its query norm hidden_size wide, so num_heads × head_dim must equal hidden_size; this plan keeps 2 heads × 16 = 32"),
], ids=['deepseek-groups', 'deepseek-group-of-one', 'deepseek-top-k', 'olmoe-coupled'])
def test_a_cut_the_family_cannot_take_is_one_line(tmp_path, args, message, capsys):
    from slimlab.cli import main
    assert main(['prune', *args, '--out', str(tmp_path/'out'), '--samples', '2', '--seq-len', '16', '--no-progress']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(f"slimlab: error: {message}"), err
    assert not (tmp_path/'out').exists()


def test_an_unsupported_architecture_is_refused_before_its_weights(tmp_path, capsys):
    from slimlab.cli import main
    transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2).save_pretrained(tmp_path/'gpt2')  # a config without weights
    for command in (['info', str(tmp_path/'gpt2')], ['prune', str(tmp_path/'gpt2'), '--hidden-size', '0.5', '--out', str(tmp_path/'out')]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("slimlab: error: architecture 'gpt2' is not supported; supported: llama, mistral, qwen2") and err.count('\n') == 1, err
        assert "see 'Adding a family' in the anatomy chapter" in err
    assert not (tmp_path/'out').exists()


@pytest.mark.parametrize('name', ['deepseek_v3-tiny', 'gpt_oss-tiny', 'olmoe-tiny'])
def test_schedule_cuts_an_moe_family(name):
    "A one-shot schedule to fewer, narrower experts: a target set to None keeps its axis, and DeepSeek's shared expert follows."
    from slimlab.schedules import make_schedule, check_schedule
    config = scaled_config(name)
    final = dict(drop_layers=1, num_experts=4, expert_size=24, hidden_size=None, intermediate_size=None)
    shapes = check_schedule(config, make_schedule(config, final, 'one-shot', total_tokens=1024), final)
    assert (shapes[-1].num_layers, shapes[-1].num_experts, shapes[-1].expert_size) == (3, 4, 24)
    assert shapes[-1].shared_expert_size == (24 if name.startswith('deepseek') else 0)


def test_explorer_follows_the_family_rules():
    "The pruning explorer: OLMoE's hidden size follows the head sliders; DeepSeek's shared expert follows the expert width (no slider)."
    from slimlab.importance import default_metrics
    from slimlab.widgets import PruningExplorer
    ids = torch.randint(0, 1000, (4, 16))
    olmoe = load_model('olmoe-tiny')
    ex = PruningExplorer(olmoe, importance(olmoe, ids, progress=False))
    ex.set(num_kv_heads=1)
    assert ex.values['hidden_size'] == 2*16 and ModelShape.of(ex.cut_model()).hidden_size == 32
    deepseek = load_model('deepseek_v3-tiny')
    ex = PruningExplorer(deepseek, importance(deepseek, ids, default_metrics(Anatomy(deepseek)) + ['neuron:part=shared_expert'], progress=False))
    assert 'shared_expert_size' not in ex.sliders
    ex.set(expert_size=24)
    assert ModelShape.of(ex.cut_model()).shared_expert_size == 24


def test_deepseek_routing_rules():
    "DeepSeek-V3: router scores are sigmoids, top-k is bounded by the groups even without an expert cut, merging across groups is refused, the KV cache holds the latents."
    from slimlab.anatomy import kv_cache_bytes_per_token
    from slimlab.experts import ExpertCompression, check_compression
    from slimlab.lab import full_size_config
    model, ids = load_model('deepseek_v3-tiny'), torch.randint(0, 1000, (2, 16))
    a, logits = Anatomy(model), []
    handle = a.router(1).register_forward_hook(lambda m, args, out: logits.append(out[0].detach()))
    with torch.no_grad(): model(ids)
    handle.remove()
    soft = importance(model, ids, ['expert_soft'], progress=False)['expert_soft'].values
    torch.testing.assert_close(soft[1], logits[0].float().sigmoid().mean(0))
    with pytest.raises(ValueError, match=r"top_k=6 is more than the 4 experts the router may pick \(topk_group=1 groups of 4\)"):
        make_plan(model, random_scores(model), top_k=6)
    with pytest.raises(ValueError, match="strategy='partial' would merge experts across the 2 routing groups"):
        check_compression(model, 4, ExpertCompression('partial'))
    check_compression(model, 4, ExpertCompression('drop'))
    assert kv_cache_bytes_per_token(full_size_config('deepseek-v3')) == 61*(512 + 64)*2
