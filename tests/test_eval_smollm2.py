"""Held-out evaluation of the real SmolLM2 on the lab corpus: sane perplexity, and a 2-layer-dropped copy measurably worse."""
import math
from dataclasses import replace

import pytest
import torch

from slimlab.data import load_lab_corpus, token_stream
from slimlab.evaluate import agreement, perplexity, sliding_windows
from slimlab.lab import load_model, load_tokenizer
from slimlab.prune import apply_plan, keep_all_plan


@pytest.fixture(scope='module')
def smol():
    model, tokenizer = load_model('smollm2-135m'), load_tokenizer('smollm2-135m')
    return model, tokenizer, token_stream([d['text'] for d in load_lab_corpus('test')], tokenizer)


def drop_layers(model, drop):
    "A stock copy of `model` without the decoder layers `drop`."
    plan = keep_all_plan(model)
    return apply_plan(model, replace(plan, layers=[i for i in plan.layers if i not in drop]))


def test_smollm2_heldout_perplexity_is_sane(smol):
    model, _, ids = smol
    ids = ids[:1025]
    ppl = perplexity(model, ids, seq_len=1025, stride=1025, progress=False)
    with torch.no_grad(): loss = model(input_ids=ids[None], labels=ids[None]).loss.item()
    assert math.isclose(math.log(ppl.value), loss, rel_tol=1e-4)
    # the chapter measures 11.6 on the whole split; a broken model or tokenizer gives hundreds or more
    assert 3 < ppl.value < 40, ppl


def test_two_dropped_layers_are_measurably_worse(smol):
    model, tokenizer, ids = smol
    ids = ids[:1537]
    ag = agreement(model, drop_layers(model, [26, 27]), ids, seq_len=512, stride=256,
                   teacher_tokenizer=tokenizer, student_tokenizer=tokenizer, progress=False)
    # the agreement pass gives the teacher's own perplexity on the same windows
    assert ag.teacher_ppl.value == pytest.approx(perplexity(model, ids, seq_len=512, stride=256, progress=False).value, rel=1e-4)
    lo, hi = ag.comparison().ratio_ci()
    assert 1.05 < lo <= ag.comparison().ppl_ratio <= hi, ag.comparison()  # paired: the damage is outside the noise
    assert 0.5 < ag.top1_rate < 0.97 and ag.mean_kl_fwd > 0.05 and ag.mean_kl_rev > 0.05, ag
    # a model agrees perfectly with itself
    assert agreement(model, model, ids[:300], seq_len=300, progress=False).top1_rate == 1.0


def test_test_split_matches_a_plain_loss_loop(smol):
    "Perplexity of 2k test-split tokens equals transformers' own loss on the same windows, non-scored context masked with -100."
    model, _, ids = smol
    ids = ids[:2049]  # four disjoint windows; the chapter measures the whole split the same way
    seq_len = 512
    total, count = 0.0, 0
    with torch.no_grad():
        for w in sliding_windows(len(ids), seq_len, seq_len):  # disjoint: each window scores only tokens no other window scores
            window = ids[w.begin:w.end][None]
            labels = window.clone()
            labels[:, :w.score_from - w.begin] = -100  # context only (one shared token; the last window reaches back)
            n = w.end - w.score_from
            total += model(input_ids=window, labels=labels).loss.double().item()*n
            count += n
    ppl = perplexity(model, ids, seq_len=seq_len, stride=seq_len, progress=False)
    assert count == ppl.n_tokens == len(ids) - 1
    assert ppl.value == pytest.approx(math.exp(total/count), rel=1e-4)
