"""Held-out perplexity of the real SmolLM2 on the lab corpus: sane, and equal to transformers' own loss on one block."""
import math

import torch

from slimlab.data import load_lab_corpus, token_stream
from slimlab.evaluate import perplexity
from slimlab.lab import load_model, load_tokenizer


def test_smollm2_heldout_perplexity_is_sane():
    model, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    ids = token_stream([d['text'] for d in load_lab_corpus('test')], tokenizer)[:1025]
    ppl = perplexity(model, ids, seq_len=1025, stride=1025, progress=False)
    with torch.no_grad(): loss = model(input_ids=ids[None], labels=ids[None]).loss.item()
    assert math.isclose(math.log(ppl.value), loss, rel_tol=1e-4)
    # the chapter measures 11.6 on the whole split; a broken model or tokenizer gives hundreds or more
    assert 3 < ppl.value < 40, ppl
