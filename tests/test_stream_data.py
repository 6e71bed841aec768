"""Streamed training blocks (`slimlab.data.BlockStream`): a resumed stream continues with exactly the next block, in this
process and in a fresh one after the reader was killed with SIGKILL; two processes' blocks interleave to the
one-process stream; a `datasets` streaming IterableDataset read from local JSON lines packs like the lab split it holds;
a DataLoader's batches and the stream's state agree, read in the training process or in one worker; bad settings and
foreign states are refused by name."""
import json, os, signal, subprocess, sys
from itertools import islice
from pathlib import Path

import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from slimlab.data import BlockStream, TextSource, load_lab_corpus, source_blocks, write_jsonl
from slimlab.lab import load_tokenizer

VALID = TextSource('lab', split='valid')
SEQ = 64
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false', 'OMP_NUM_THREADS': '1'}


@pytest.fixture(scope='module')
def tok():
    return load_tokenizer('smollm2-135m')


@pytest.fixture(scope='module')
def ref(tok) -> torch.Tensor:
    "One pass over the lab valid split as `source_blocks` packs it: (N, SEQ)."
    return source_blocks(VALID, tok, SEQ)


@pytest.fixture(scope='module')
def shards(tmp_path_factory) -> Path:
    "The lab valid split as three JSON-lines files in a folder."
    root = tmp_path_factory.mktemp('shards')
    texts = [d['text'] for d in load_lab_corpus('valid')]
    for i, part in enumerate((texts[:6], texts[6:11], texts[11:])): write_jsonl([{'text': t} for t in part], root/f'{i}.jsonl')
    return root


def take(stream, n: int) -> torch.Tensor:
    return torch.stack(list(islice(stream, n)))


@pytest.mark.parametrize('world,rank,window', [(1, 0, 0), (2, 1, 0), (3, 2, 0), (1, 0, 8), (2, 0, 8), (4, 3, 16)])
@pytest.mark.parametrize('cut', [1, 50, 91])
def test_resume_continues_with_exactly_the_next_block(tok, ref, world, rank, window, cut):
    "Read `cut` blocks, save the state, load it into a new stream: the two parts are the uninterrupted stream (across the epoch end too)."
    settings = dict(rank=rank, world=world, shuffle_window=window, seed=3)
    n = len(ref) // world + 40 # past the end of the first epoch
    whole = take(BlockStream(VALID, tok, SEQ, **settings), n)
    first = BlockStream(VALID, tok, SEQ, **settings)
    head = list(islice(first, cut))
    state = json.loads(json.dumps(first.state_dict()))
    assert state['blocks'] == cut
    second = BlockStream(VALID, tok, SEQ, **settings)
    second.load_state_dict(state)
    assert torch.equal(torch.stack(head + list(islice(second, n - cut))), whole)


def test_one_pass_is_source_blocks_and_then_it_starts_over(tok, ref):
    stream = BlockStream(VALID, tok, SEQ)
    got = take(stream, len(ref) + 5)
    assert torch.equal(got[:len(ref)], ref) and torch.equal(got[len(ref):], ref[:5])
    assert stream.state_dict()['epoch'] == 1
    assert torch.equal(torch.stack(list(BlockStream(VALID, tok, SEQ, epochs=2))), torch.cat([ref, ref]))


@pytest.mark.parametrize('window', [0, 16])
def test_two_processes_interleave_to_the_one_process_stream(tok, ref, window):
    one = take(BlockStream(VALID, tok, SEQ, shuffle_window=window), 2*len(ref))
    ranks = [take(BlockStream(VALID, tok, SEQ, rank=r, world=2, shuffle_window=window), len(ref)) for r in range(2)]
    assert torch.equal(torch.stack([b for pair in zip(*ranks) for b in pair]), one)
    if window: assert not torch.equal(one[:len(ref)], ref) # shuffled, not file order
    finite = [torch.stack(list(BlockStream(VALID, tok, SEQ, rank=r, world=2, epochs=1))) for r in range(2)]
    assert len(finite[0]) == len(finite[1]) == len(ref) // 2 # equal shares for the lockstep loop


def test_a_datasets_streaming_iterable_from_local_jsonl(tok, ref, shards):
    "`datasets.load_dataset('json', data_files=..., streaming=True)` — the hub's streaming path — packs and resumes like the lab split."
    files = sorted(str(p) for p in shards.glob('*.jsonl'))
    records = datasets.load_dataset('json', data_files=files, split='train', streaming=True)
    assert isinstance(records, datasets.IterableDataset)
    assert torch.equal(torch.stack(list(BlockStream(records, tok, SEQ, epochs=1))), ref)
    first = BlockStream(records, tok, SEQ, rank=1, world=2)
    head = list(islice(first, 40))
    assert first.state_dict()['doc'] > 0 # the position is a document, read past on resume without tokenizing
    second = BlockStream(records, tok, SEQ, rank=1, world=2)
    second.load_state_dict(first.state_dict())
    assert torch.equal(torch.stack(head + list(islice(second, 40))), ref[1::2][:80])
    folder = BlockStream(TextSource(str(shards)), tok, SEQ, epochs=1) # the same files as a TextSource (opened as a stream)
    assert torch.equal(torch.stack(list(folder)), ref)


def test_a_dataloader_over_the_stream_and_its_state(tok, ref):
    "num_workers=0: the state after k batches of b blocks is the position after k·b blocks; a new loader continues there."
    stream = BlockStream(VALID, tok, SEQ, rank=0, world=2)
    loader = iter(DataLoader(stream, batch_size=4))
    batches = [next(loader) for _ in range(3)]
    assert stream.state_dict()['blocks'] == 12
    resumed = BlockStream(VALID, tok, SEQ, rank=0, world=2)
    resumed.load_state_dict(stream.state_dict())
    batches += list(islice(DataLoader(resumed, batch_size=4), 2))
    assert torch.equal(torch.cat(batches), ref[0::2][:20])
    with pytest.raises(ValueError, match='num_workers=0'):
        next(iter(DataLoader(BlockStream(VALID, tok, SEQ), batch_size=2, num_workers=1)))


def test_one_dataloader_worker_reads_the_stream_with_positions(tok, ref):
    "num_workers=1, positions=True: tokenized in the background; the last position of a batch gives the state after it."
    stream = BlockStream(VALID, tok, SEQ, rank=1, world=2, positions=True)
    batches = list(islice(DataLoader(stream, batch_size=4, num_workers=1), 5))
    assert torch.equal(torch.cat([b['input_ids'] for b in batches]), ref[1::2][:20])
    state = stream.state_at(batches[-1]['position'][-1])
    assert state['blocks'] == 20 and stream.state_dict()['blocks'] == 0 # the worker's copy moved, not this one
    resumed = BlockStream(VALID, tok, SEQ, rank=1, world=2, positions=True)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    more = list(islice(DataLoader(resumed, batch_size=4, num_workers=1), 2))
    assert torch.equal(torch.cat([b['input_ids'] for b in more]), ref[1::2][20:28])
    with pytest.raises(ValueError, match='got num_workers=2, positions=True'):
        next(iter(DataLoader(BlockStream(VALID, tok, SEQ, positions=True), batch_size=2, num_workers=2)))


READER = """
import json, os, signal, sys
from slimlab.data import BlockStream, TextSource
from slimlab.lab import atomic_write, load_tokenizer
folder, out, kill_at, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stream = BlockStream(TextSource(folder), load_tokenizer('smollm2-135m'), 64, rank=1, world=2, shuffle_window=6, seed=7)
checkpoint = os.path.join(out, 'checkpoint.json')
blocks = []
if os.path.exists(checkpoint):
    saved = json.load(open(checkpoint))
    stream.load_state_dict(saved['state']); blocks = saved['blocks']
for block in stream:
    blocks.append(block.tolist())
    if len(blocks) % 5 == 0: atomic_write(checkpoint, json.dumps(dict(state=stream.state_dict(), blocks=blocks)))
    if len(blocks) == kill_at: os.kill(os.getpid(), signal.SIGKILL)
    if len(blocks) == total: break
json.dump(blocks, open(os.path.join(out, 'blocks.json'), 'w'))
"""


def test_resume_in_a_fresh_process_after_sigkill(tok, shards, tmp_path):
    "A reader checkpoints its state every 5 blocks and is killed at block 23; a fresh process resumes from block 20 and ends as a stream never interrupted."
    def reader(out: Path, kill_at: int) -> subprocess.CompletedProcess:
        out.mkdir(exist_ok=True)
        return subprocess.run([sys.executable, '-c', READER, str(shards), str(out), str(kill_at), '70'], capture_output=True, text=True, env=ENV, timeout=300)
    killed = reader(tmp_path/'killed', 23)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((tmp_path/'killed'/'checkpoint.json').read_text())['state']['blocks'] == 20
    resumed = reader(tmp_path/'killed', 0)
    assert resumed.returncode == 0, resumed.stderr
    got = torch.tensor(json.loads((tmp_path/'killed'/'blocks.json').read_text()))
    never_killed = BlockStream(TextSource(str(shards)), tok, SEQ, rank=1, world=2, shuffle_window=6, seed=7)
    assert torch.equal(got, take(never_killed, 70)) # across the end of the first epoch (68 blocks for each process)


@pytest.mark.parametrize('kwargs,message', [
    (dict(seq_len=1), 'seq_len=1 must be an integer >= 2'), (dict(world=0), 'world=0 must be an integer >= 1'),
    (dict(rank=2, world=2), 'rank=2 must be an integer with 0 <= rank < world=2'),
    (dict(rank=-1, world=2), 'rank=-1 must be an integer with 0 <= rank < world=2'),
    (dict(shuffle_window=5, world=2), 'shuffle_window=5 must be 0 (file order) or a multiple of world=2'),
    (dict(epochs=0), 'epochs=0 must be an integer >= 1')])
def test_bad_settings_are_refused_by_name(tok, kwargs, message):
    with pytest.raises(ValueError) as e: BlockStream(VALID, tok, **{'seq_len': SEQ, **kwargs})
    assert message in str(e.value)


@pytest.mark.parametrize('other,message', [
    (dict(src=TextSource('lab', split='test')), "state source="), (dict(seq_len=32), 'state seq_len=64 does not match this stream\'s seq_len=32'),
    (dict(world=2), "state world=1 does not match this stream's world=2"), (dict(shuffle_window=4), 'state shuffle_window=0'),
    (dict(seed=1), "state seed=0 does not match this stream's seed=1")])
def test_a_state_from_another_stream_is_refused_by_name(tok, other, message):
    state = BlockStream(VALID, tok, SEQ).state_dict()
    stream = BlockStream(**{'src': VALID, 'tokenizer': tok, 'seq_len': SEQ, **other})
    with pytest.raises(ValueError) as e: stream.load_state_dict(state)
    assert message in str(e.value)
