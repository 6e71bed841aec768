"""A user's own text and machine, as the installed `slimlab` command sees them: calibration and distillation from a local
Parquet file, from chat records (rendered with the model's chat template) and from a streamed folder of shards; a model
card in every output folder; bfloat16 on the CPU agreeing with float32; bad data, devices, dtypes and quantization
schemes refused in one line before any model loads, with nothing written."""
import json, subprocess

import pandas as pd
import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from helpers import save_tiny_teacher, slimlab, tiny_recipe

from slimlab.data import TextSource, load_lab_corpus, source_samples, write_jsonl
from slimlab.lab import load_tokenizer

TINY = tiny_recipe('teacher', prune=dict(final=dict(drop_layers=2, intermediate_size=96)), distill=dict(eval_every=2, save_every=2))


def chat_record(doc: dict) -> dict:
    return {'messages': [{'role': 'user', 'content': f"Explain {doc['id']}."}, {'role': 'assistant', 'content': doc['text'][:1500]}]}


@pytest.fixture(scope='module')
def user(tmp_path_factory):
    "A user's folder: a tiny model they saved, lab text as Parquet (column `body`), as chat records, and as streamed JSON-lines shards."
    root = tmp_path_factory.mktemp('user')
    save_tiny_teacher(root/'teacher')
    docs = load_lab_corpus('train')[:150]
    pd.DataFrame({'body': [d['text'] for d in docs]}).to_parquet(root/'train.parquet')
    write_jsonl([chat_record(d) for d in docs], root/'chat.jsonl')
    (root/'shards').mkdir()
    for i in range(3): write_jsonl([{'text': d['text']} for d in docs[i::3]], root/'shards'/f'{i}.jsonl')
    (root/'tiny.yaml').write_text(yaml.safe_dump(TINY))
    return root


@pytest.mark.parametrize('data', ['train.parquet:text_field=body', 'chat.jsonl', 'shards:streaming=true'])
def test_prune_calibrates_on_the_users_text(user, data):
    out = user/f"pruned-{data.split('.')[0].split(':')[0]}"
    r = slimlab('prune', 'teacher', '--out', out.name, '--data', data, '--drop-layers', 1, '--samples', 4, '--seq-len', 64, '--no-progress', cwd=user)
    assert r.returncode == 0, r.stderr
    card = ModelCard.load(out/'README.md')
    assert card.data.tags == ['slimlab', 'pruned'] and f"tokens of {data.split(':')[0]}" in card.text, card.text


def test_chat_records_are_rendered_with_the_chat_template(user):
    "The calibration samples of chat records hold the template's turn markers, which the raw text never contains."
    tok = load_tokenizer(user/'teacher')
    im_start = tok.convert_tokens_to_ids('<|im_start|>')
    chat = source_samples(TextSource(str(user/'chat.jsonl')), tok, n_samples=8, seq_len=128)
    plain = source_samples(TextSource(str(user/'train.parquet'), text_field='body'), tok, n_samples=8, seq_len=128)
    assert (chat == im_start).sum() > 8 and (plain == im_start).sum() == 0
    first = tok.decode(source_samples(TextSource(str(user/'chat.jsonl')), tok, 1, 64, seed=0)[0])
    assert '<|im_start|>' in first or '<|im_end|>' in first


@pytest.mark.parametrize('data', ['train.parquet:text_field=body', 'chat.jsonl', 'shards:streaming=true'])
def test_run_distils_on_the_users_text_and_ships_a_card(user, data):
    out = user/f"run-{data.split('.')[0].split(':')[0]}"
    r = slimlab('run', 'tiny.yaml', '--out', out.name, '--data', data, '--no-progress', cwd=user)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load((out/'recipe.yaml').read_text())
    assert resolved['data']['train']['source'] == data.split(':')[0] and resolved['calibration']['data']['source'] == data.split(':')[0]
    card = ModelCard.load(out/'schedule'/'model'/'README.md')
    assert card.data.tags == ['slimlab', 'pruned', 'distillation']
    assert '## Retention' in card.text and '| student |' in card.text and f"Distillation text: {data.split(':')[0]}" in card.text
    assert (out/'schedule'/'model'/'retention.png').stat().st_size > 0


def test_bfloat16_on_the_cpu_agrees_with_float32(tmp_path):
    "SmolLM2 in bfloat16: half the weight bytes, held-out perplexity within 1% of float32's on the same tokens."
    rows = {}
    for dtype in ('float32', 'bfloat16'):
        r = slimlab('eval', 'smollm2-135m', '--dtype', dtype, '--device', 'cpu', '--max-tokens', 2048, '--seq-len', 256)
        assert r.returncode == 0, r.stderr
        rows[dtype] = float(r.stdout.strip().splitlines()[-1][4:])
    assert abs(rows['bfloat16'] / rows['float32'] - 1) < 0.01, rows


def no_model_load(r: subprocess.CompletedProcess) -> bool:
    "No weights were read: transformers' loading bar never appeared."
    return 'Loading weights' not in r.stderr


@pytest.mark.parametrize('args, expected', [
    (['prune', 'teacher', '--data', 'missing.parquet', '--drop-layers', 1], "data file 'missing.parquet' does not exist"),
    (['prune', 'teacher', '--data', 'train.parquet', '--drop-layers', 1], "train.parquet: text_field='text' is not a column; columns: body"),
    (['prune', 'teacher', '--data', 'empty.jsonl', '--drop-layers', 1], 'empty.jsonl has no records'),
    (['prune', 'teacher', '--data', 'gap.jsonl:format=chat', '--drop-layers', 1], "gap.jsonl: record 1 has no 'messages'"),
    (['prune', 'teacher', '--data', 'chat.jsonl:format=chats', '--drop-layers', 1], "--data: format='chats' is unknown (did you mean 'chat'?)"),
    (['prune', 'teacher', '--device', 'cuda', '--drop-layers', 1], "--device='cuda' is not available here" if not torch.cuda.is_available() else None),
    (['prune', 'teacher', '--dtype', 'int4', '--drop-layers', 1], "--dtype='int4' is unknown; allowed: auto, float32, bfloat16, float16"),
    (['run', 'tiny.yaml', '--data', 'empty.jsonl'], 'data.train: empty.jsonl has no records'),
    (['run', 'tiny.yaml', '--eval-data', 'train.parquet'], "data.eval: train.parquet: text_field='text' is not a column"),
    (['eval', 'teacher', '--data', 'gap.jsonl:format=chat,streaming=true'], "gap.jsonl: record 1 has no 'messages'"),
    (['quantize', 'teacher', '--scheme', 'int3'], "--scheme='int3' is unknown (did you mean 'int8'?); allowed: int8, int4"),
    (['run', 'tiny.yaml', '--set', 'quantize.schemes=[int8, nf4]'], "quantize.schemes[1]='nf4' is unknown"),
    (['run', 'minitron-width', '--set', 'quantize.schemes=[int4]'], "quantize.schemes[0]='int4' stores groups of 32 weights, which do not divide the final student's hidden_size=432"),
])
def test_bad_data_and_hardware_are_one_line_before_any_model_loads(user, args, expected):
    if expected is None: pytest.skip('a GPU is present')
    (user/'empty.jsonl').write_text('')
    write_jsonl([chat_record({'id': 'a', 'text': 'hello'}), {'text': 'no messages here'}], user/'gap.jsonl')
    before = sorted(p.name for p in user.iterdir())
    r = slimlab(*args, *(['--out', 'never'] if args[0] in ('prune', 'run', 'quantize') else []), cwd=user)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and expected in r.stderr, r.stderr
    assert no_model_load(r) and sorted(p.name for p in user.iterdir()) == before


def test_teacher_generated_data_is_one_more_source(user):
    "`slimlab generate` writes the teacher's continuations as JSON lines, which `--data` then reads like any file."
    r = slimlab('generate', 'teacher', '--prompts', 'train.parquet:text_field=body', '--samples', 6, '--prompt-tokens', 16,
                '--max-new-tokens', 8, '--out', 'generated.jsonl', '--no-progress', cwd=user)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in (user/'generated.jsonl').read_text().splitlines()]
    assert len(records) == 6 and all(rec['text'] == rec['prompt'] + rec['completion'] for rec in records)
    r = slimlab('prune', 'teacher', '--out', 'pruned-generated', '--data', 'generated.jsonl', '--drop-layers', 1, '--samples', 2,
                '--seq-len', 16, '--no-progress', cwd=user)
    assert r.returncode == 0, r.stderr
    assert 'tokens of generated.jsonl' in (user/'pruned-generated'/'README.md').read_text()


def test_a_streamed_source_is_read_only_as_far_as_the_budget_needs(user):
    "A streamed file whose 151st record is broken: a run of 256 distillation tokens never reaches it (a full read fails on it)."
    docs = load_lab_corpus('train')[:150]
    write_jsonl([{'text': d['text']} for d in docs] + [{'body': 'no text'}] + [{'text': 'x'}], user/'trap.jsonl')
    r = slimlab('run', 'tiny.yaml', '--out', 'run-trap', '--data', 'trap.jsonl:streaming=true', '--no-progress', cwd=user)
    assert r.returncode == 0, r.stderr
    full = slimlab('eval', 'teacher', '--data', 'trap.jsonl:streaming=true', '--seq-len', 32, cwd=user)  # reads every token
    assert full.returncode == 2 and "trap.jsonl: record 150 has no 'text'" in full.stderr, full.stderr
