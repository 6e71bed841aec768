"""Where the time of MTP speculative decoding goes on this CPU: one plain decoding step of the main model against one
draft of the MTP module and one verification pass of L+1 tokens, measured interleaved in one run.

Model: SmolLM2-135M (30 blocks, hidden 576, vocabulary 49,152, tied output layer), frozen; one MTP module started as
`slimlab.mtp.MTPHeads` starts it (the cost of a draft does not depend on its weights). Context: a `--context`-token
prompt of the lab corpus's test split in the main model's KV cache and in the module's.

- decode step: `model(next token, cache)` with the KV cache, as `greedy_decode` runs it (the output layer on 1 position);
- verify L: the decoder on L+1 new tokens with the cache, then the output layer on those positions, as
  `speculative_decode` verifies a round (cache cropped back after each repeat);
- draft: the MTP module on one new position with its cache, then the output layer on it (what `_Drafter.draft` adds
  per drafted token); and the output layer alone on one position (49,152 × 576 multiply-adds).

Each is the median of `--repeats` interleaved repeats. From them, the speed-up of a round that drafts L tokens and
accepts on average `m` of them is (m + 1)·decode / (L·draft + verify L); the table gives the acceptance a round needs
to break even.

Each operation runs in every `--dtypes` (float32 and bfloat16 by default: on a CPU with bfloat16 instructions a
verification of a few tokens costs about one decoding step in bfloat16, while in float32 it grows with the tokens).

Usage: .venv/bin/python bench/bench_mtp.py [--context 96] [--repeats 50] [--threads 1] [--dtypes float32 bfloat16]
"""
import argparse, statistics, time

import torch


def setup(dtype: torch.dtype, context: int):
    "SmolLM2 and a fresh MTP module in `dtype`, a `context`-token prompt in both KV caches; the timed operations."
    from transformers import DynamicCache
    from slimlab.data import LAB_TEXT, source_tokens
    from slimlab.lab import load_model, load_tokenizer
    from slimlab.mtp import MTPHeads, _crop
    model, tok = load_model('smollm2-135m').to(dtype).eval(), load_tokenizer('smollm2-135m')
    heads = MTPHeads(model, depth=1).eval()
    ids = source_tokens(LAB_TEXT, tok, 'test', context + 8)[None]
    prompt, nxt = ids[:, :context], ids[:, context:]
    decoder, head, embed, layer = model.get_decoder(), model.get_output_embeddings(), model.get_input_embeddings(), heads.layers[0]
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        h = decoder(input_ids=prompt, cache=cache, use_cache=True).last_hidden_state
        mcache = DynamicCache(config=heads.config)
        emb = embed(ids[:, 1:context])
        mask, rope, pos = heads.mask_and_rotary(emb, torch.arange(context - 1), cache=mcache)
        layer(h[:, :-1], emb, rope, mask, pos, cache=mcache)
    n = context

    def decode_step():
        model(input_ids=nxt[:, :1], cache=cache, use_cache=True)
        _crop(cache, n)

    def verify(L):
        def run():
            hv = decoder(input_ids=nxt[:, :L + 1], cache=cache, use_cache=True).last_hidden_state
            head(hv).argmax(-1)
            _crop(cache, n)
        return run

    def draft():
        e = embed(nxt[:, :1])
        m, r, p = heads.mask_and_rotary(e, torch.arange(n - 1, n), cache=mcache)
        s = layer(h[:, -1:], e, r, m, p, cache=mcache)
        head(layer.out_norm(s[0, -1])).argmax()
        _crop(mcache, n - 1)

    def head_only(): head(h[0, -1]).argmax()

    return {'decode step': decode_step, 'draft (block + output layer)': draft, 'output layer alone': head_only,
            **{f'verify L={L}': verify(L) for L in (1, 2, 4)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--context', type=int, default=96)
    ap.add_argument('--repeats', type=int, default=50)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'], choices=['float32', 'bfloat16'])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    jobs = {(dt, k): f for dt in args.dtypes for k, f in setup(getattr(torch, dt), args.context).items()}
    times = {k: [] for k in jobs}
    with torch.no_grad():
        for k in jobs: jobs[k]()  # warm-up
        for i in range(args.repeats):  # every operation of every dtype interleaved, the order reversed every other repeat
            for k in (list(jobs) if i % 2 == 0 else list(jobs)[::-1]):
                t = time.perf_counter(); jobs[k](); times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.threads} thread(s), context {args.context}, median of {args.repeats}")
    for dt in args.dtypes:
        d = med[(dt, 'decode step')]
        print(f"\n**{dt}**: decode step {1000*d:.2f} ms ({d/med[(args.dtypes[0], 'decode step')]:.2f}× {args.dtypes[0]})\n")
        print('| operation | median ms | × decode step |\n|---|---|---|')
        for (t, k), v in med.items():
            if t == dt: print(f'| {k} | {1000*v:.2f} | {v/d:.2f} |')
        print('\n| draft_len L | round cost (× decode step) | mean accepted drafts to break even | 1-token acceptance that breaks even at L=1 |\n|---|---|---|---|')
        for L in (1, 2, 4):
            cost = (L*med[(dt, 'draft (block + output layer)')] + med[(dt, f'verify L={L}')])/d
            print(f"| {L} | {cost:.2f} | {cost - 1:.2f} | {'' if L > 1 else f'{cost - 1:.0%}'} |")


if __name__ == '__main__':
    main()
