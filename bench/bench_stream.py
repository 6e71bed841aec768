"""Streamed training blocks (`slimlab.data.BlockStream`) over a local JSON-lines file and one 10x larger: peak resident
memory (VmHWM) of reading every block once, beside that of reading the records alone; throughput; the cost of a resume.
Each measurement is a fresh process with one tokenizer thread.

    .venv/bin/python bench/bench_stream.py [--mb 20] [--seq-len 2048]    # files of 20 MB and 200 MB (default)
"""
import argparse, json, os, subprocess, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_data import write_file # the lab corpus's train documents, repeated to a size

CHILD = """
import json, sys, time
from itertools import islice
from slimlab.data import BlockStream, TextSource, source_texts
from slimlab.lab import load_tokenizer
def mib(key): return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(key + ':')) / 1024
mode, path, seq_len, rank, world, half = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
tok = load_tokenizer('smollm2-135m')
def stream(): return BlockStream(TextSource(path), tok, seq_len, rank=rank, world=world, epochs=1)
if mode == 'resume': # read half the blocks, then time a fresh stream from the saved state to its first block
    s = stream(); t0 = time.perf_counter(); list(islice(s, half)); read = time.perf_counter() - t0
    t0 = time.perf_counter(); r = stream(); r.load_state_dict(s.state_dict()); next(iter(r)); resume = time.perf_counter() - t0
    print(json.dumps(dict(read_seconds=read, resume_seconds=resume, doc=s.state_dict()['doc'])))
    sys.exit()
items = stream() if mode == 'blocks' else source_texts(TextSource(path, streaming=True)) # texts: the records alone, untokenized
if mode == 'texts': next(items)
ready, t0, n = mib('VmHWM'), time.perf_counter(), 0
for item in items: n += 1
print(json.dumps(dict(items=n, seconds=time.perf_counter() - t0, ready_mib=ready, peak_mib=mib('VmHWM'))))
"""
ENV = {**os.environ, 'HF_DATASETS_OFFLINE': '1', 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false',
       'RAYON_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'}


def child(mode: str, path: Path, seq_len: int, rank: int = 0, world: int = 1, half: int = 0) -> dict:
    "One fresh process; its `datasets` cache in its own temporary folder."
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, '-c', CHILD, mode, str(path), str(seq_len), str(rank), str(world), str(half)],
                             capture_output=True, text=True, check=True, env={**ENV, 'HF_DATASETS_CACHE': cache})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mb', type=int, default=20, help='size of the smaller file in MB; the larger is 10x (default: 20)')
    p.add_argument('--seq-len', type=int, default=2048, help='tokens per block (default: 2048)')
    args = p.parse_args()
    rows, texts = [], []
    with tempfile.TemporaryDirectory() as d:
        print('| file | read | items | peak RSS MiB | RSS at the first item MiB | seconds | tokens/s tokenized |\n|---|---|---|---|---|---|---|')
        for mb in (args.mb, 10*args.mb):
            path = Path(d)/f'data-{mb}.jsonl'
            write_file(path, mb)
            size = path.stat().st_size/1e6
            t = child('texts', path, args.seq_len)
            texts.append(t)
            print(f"| {size:,.0f} MB | records only (no tokenizer) | {t['items']:,} | {t['peak_mib']:,.0f} | {t['ready_mib']:,.0f} | {t['seconds']:.1f} | |", flush=True)
            for world in ((1, 2) if mb == args.mb else (1,)):
                r = child('blocks', path, args.seq_len, rank=0, world=world)
                tokens = r['items']*world*args.seq_len # every process tokenizes the whole stream
                rows.append(dict(r, mb=size, world=world))
                print(f"| {size:,.0f} MB | BlockStream, rank 0 of {world} | {r['items']:,} blocks | {r['peak_mib']:,.0f} | {r['ready_mib']:,.0f} | "
                      f"{r['seconds']:.1f} | {tokens/r['seconds']/1e6:.2f} M |", flush=True)
            if mb == args.mb: resume = child('resume', path, args.seq_len, half=rows[0]['items']//2)
            path.unlink()
    small, large = rows[0], rows[-1]
    print(f"\nBlockStream peak RSS, {large['mb']:,.0f} MB / {small['mb']:,.0f} MB: {large['peak_mib']/small['peak_mib']:.3f} "
          f"(records only: {texts[1]['peak_mib']/texts[0]['peak_mib']:.3f})")
    print(f"resume at block {small['items']//2:,} of {small['items']:,} (document {resume['doc']:,}): "
          f"{resume['resume_seconds']:.1f} s to the first block, against {resume['read_seconds']:.1f} s to read up to it")


if __name__ == '__main__':
    main()
