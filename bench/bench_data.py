"""Calibration samples from a large local JSON-lines file, streamed and not: peak resident memory, wall time and the disk
the `datasets` cache takes, each in a fresh process, at two file sizes (the second 10× the first).

    .venv/bin/python bench/bench_data.py [--mb 100]    # files of 100 MB and 1,000 MB (default)
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from slimlab.data import TextSource, source_samples
from slimlab.lab import load_tokenizer
tok = load_tokenizer('smollm2-135m')
t0 = time.perf_counter()
samples = source_samples(TextSource(sys.argv[1], streaming=sys.argv[2] == 'stream'), tok, n_samples=64, seq_len=256)
print(json.dumps(dict(seconds=time.perf_counter() - t0, peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      shape=list(samples.shape))))
"""


def write_file(path: Path, megabytes: int):
    "A JSON-lines file of about `megabytes` MB: the lab corpus's documents, repeated."
    from slimlab.data import load_lab_corpus
    lines = [json.dumps({'text': d['text']}) + '\n' for d in load_lab_corpus('train')]
    with open(path, 'w') as f:
        written = 0
        while written < megabytes * 1e6:
            for line in lines: f.write(line); written += len(line)


def measure(path: Path, mode: str) -> dict:
    "One fresh process drawing the samples; the datasets cache in its own folder, measured after."
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, '-c', CHILD, str(path), mode], capture_output=True, text=True, check=True,
                             env={**os.environ, 'HF_DATASETS_CACHE': cache, 'HF_DATASETS_OFFLINE': '1'})
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row['cache_mb'] = sum(f.stat().st_size for f in Path(cache).rglob('*') if f.is_file()) / 1e6
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--mb', type=int, default=100, help='size of the smaller file in MB; the larger is 10x (default: 100)')
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print('| file | mode | peak RSS MiB | seconds | datasets cache MB |\n|---|---|---|---|---|')
        for mb in (args.mb, 10 * args.mb):
            path = Path(d)/f'data-{mb}.jsonl'
            write_file(path, mb)
            size = path.stat().st_size / 1e6
            for mode in ('stream', 'load'):
                r = measure(path, mode)
                print(f"| {size:,.0f} MB | {'streamed' if mode == 'stream' else 'loaded'} | {r['peak_mib']:,.0f} | {r['seconds']:.1f} | {r['cache_mb']:,.0f} |",
                      flush=True)
            path.unlink()


if __name__ == '__main__':
    main()
