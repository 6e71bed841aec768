"""MTP on several families: speculative decoding reproduces greedy decoding exactly, incremental drafts equal drafts
recomputed from scratch, the base folder of a sidecar checkpoint is a stock checkpoint, and what cannot work fails
clearly."""
import json

import pytest
import torch
import transformers

from slimlab.anatomy import Anatomy
from slimlab.lab import load_model
from slimlab.mtp import MTP_FILE, MTPHeads, _Drafter, greedy_decode, load_mtp, save_with_mtp, speculative_decode


@pytest.mark.parametrize('name', ['llama-small', 'qwen3-tiny', 'qwen3_moe-tiny', 'mixtral-tiny', 'qwen2_moe-tiny'])
def test_speculative_equals_greedy(name):
    torch.manual_seed(0)
    model = load_model(name)
    heads = MTPHeads(model, depth=2)
    for prompt_len, draft_len in ((3, 1), (9, 2), (5, 4)):
        prompt = torch.randint(0, 1000, (1, prompt_len))
        plain = greedy_decode(model, prompt, 20)
        spec = speculative_decode(model, heads, prompt, 20, draft_len)
        assert spec.tokens == plain.tokens
        assert 1 + sum(a + 1 for a in spec.accepted) >= 20


@pytest.mark.parametrize('name', ['qwen3_moe-tiny'])  # chapter 09 tests the tiny Llama
def test_incremental_drafts_equal_recomputed(name):
    torch.manual_seed(1)
    model = load_model(name)
    heads, embed, head = MTPHeads(model, depth=2), Anatomy(model).embed, model.get_output_embeddings()
    drafter, toks = _Drafter(model, heads, 2), torch.randint(0, 1000, (6,)).tolist()
    with torch.no_grad():
        for r in range(6):
            h = model.get_decoder()(torch.tensor([toks])).last_hidden_state
            toks = toks + [int(head(h[0, -1]).argmax())]
            drafts = drafter.draft(toks, h[0])
            n, seq = len(toks) - 1, torch.tensor([toks + drafts[:1]])
            ref_h = model.get_decoder()(seq).last_hidden_state
            for k in (1, 2):
                state = heads(ref_h[:, :n + k], seq[:, :n + k], embed)[k - 1][0, n - 1]
                assert drafts[k - 1] == int(head(state).argmax())
            toks = toks + drafts[:r % 3]


def test_sidecar_checkpoint_is_stock(tmp_path):
    model = load_model('llama-small')
    heads = MTPHeads(model, depth=3)
    folder = save_with_mtp(model, heads, tmp_path/'m')
    assert (folder/MTP_FILE).is_file()
    assert not any('mtp' in k.lower() for k in json.loads((folder/'config.json').read_text()))
    stock, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values())  # no missing, unexpected or mismatched keys
    ids = torch.randint(0, 1000, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(stock(ids).logits, model(ids).logits)
        reloaded = load_mtp(stock, folder)
        h = stock.model(ids).last_hidden_state
        for a, b in zip(reloaded(h, ids, stock.model.embed_tokens), heads(h, ids, model.model.embed_tokens)): torch.testing.assert_close(a, b)


def test_what_cannot_work_fails_clearly():
    nxt = load_model('qwen3_next-tiny')
    heads = MTPHeads(nxt, depth=1)  # training-mode heads work on the hybrid family
    with pytest.raises(ValueError, match='linear-attention layers'):
        speculative_decode(nxt, heads, torch.randint(0, 1000, (1, 4)), 4)
    tiny = load_model('llama-tiny')
    with pytest.raises(ValueError, match='MTP depth=0 must be an integer >= 1'): MTPHeads(tiny, depth=0)
    with pytest.raises(ValueError, match='MTP depth 4 needs sequences longer than 4 tokens; got T=4'):
        ids = torch.randint(0, 1000, (1, 4))
        MTPHeads(tiny, depth=4)(tiny.model(ids).last_hidden_state, ids, tiny.model.embed_tokens)
    with pytest.raises(ValueError, match='MTP heads are for llama'):
        speculative_decode(load_model('qwen3-tiny'), MTPHeads(tiny), torch.randint(0, 1000, (1, 4)), 4)
    with pytest.raises(ValueError, match='draft_len=0 must be at least 1'):
        speculative_decode(tiny, MTPHeads(tiny), torch.randint(0, 1000, (1, 4)), 4, draft_len=0)


@pytest.mark.parametrize('name', ['qwen3-tiny', 'qwen3_moe-tiny', 'mixtral-tiny', 'gemma3_text-tiny'])
def test_pass_through_start_on_families(name):
    "The DeepSeek-V3 start on other families: projection [I | 0], the last block and the final norm copied (Gemma's offset norm included)."
    model = load_model(name)
    heads, a = MTPHeads(model, depth=2), Anatomy(model)
    d = a.config.hidden_size
    for layer in heads.layers:
        assert torch.equal(layer.proj.weight, torch.cat([torch.eye(d), torch.zeros(d, d)], 1).to(layer.proj.weight.dtype))
        assert all(torch.equal(p, q) for p, q in zip(layer.out_norm.state_dict().values(), a.final_norm.state_dict().values()))
        assert all(torch.equal(p, q) for p, q in zip(layer.block.state_dict().values(), a.blocks[-1].state_dict().values()))
    h = torch.randn(1, 5, d)
    with torch.no_grad():  # the embedding does not reach the states at the start
        s1 = heads(h, torch.randint(0, 1000, (1, 6))[:, :5], a.embed)
        s2 = heads(h, torch.randint(0, 1000, (1, 6))[:, :5], a.embed)
    for x, y in zip(s1, s2): torch.testing.assert_close(x, y)
