#!/usr/bin/env bash
# gpu_check.sh: a short check of slimlab's GPU path on one CUDA GPU, about 8 minutes at most on an H100/H200.
#
#   make setup && bash bench/gpu_check.sh            # from the repository root, on a machine with a CUDA GPU
#   OUT=/tmp/check GPU=1 bash bench/gpu_check.sh     # results elsewhere, on another GPU
#
# It installs nothing beyond `make setup` and works in a temporary folder. The steps:
#   1. an Accelerate config for one process with FSDP2 and bf16 mixed precision (distributed_type: FSDP,
#      fsdp_version: 2, mixed_precision: bf16, num_processes: 1) is written to the temporary folder and read back
#      with Accelerate's own loader, which refuses unknown keys;
#   2. the dry run's memory estimate for that launch (`slimlab run RECIPE --dry-run --processes 1 --sharding fsdp`),
#      to compare with what the GPU shows;
#   3. (a) the demo recipe (RECIPE, default minitron-depth at its lab scale) through
#      `accelerate launch --config_file CFG -m slimlab.cli run RECIPE --dtype bfloat16`, the online teacher;
#      (b) the same with the offline teacher (`--set teacher_cache.k=64`): the run writes its teacher's top-64 cache into
#      its folder once, after the teacher correction, and distils every stage from it without running the teacher
#      (the recipe corrects its teacher, so the cache cannot be written beforehand with `slimlab teacher-cache`);
#   4. for each run: throughput (tokens/s of the train records of every metrics.jsonl the run wrote, the teacher
#      correction's and each stage's; `tokens` and `seconds` are cumulative, so a file's rate is its last record's
#      tokens/seconds, and the steady rate leaves out the first record), the peak GPU memory (nvidia-smi's memory.used,
#      sampled every 200 ms in the background, and the same less what the GPU held before the run) and the loss curve
#      (step, tokens, loss of every train record).
# Results: OUT/gpu_check.json (everything) and OUT/gpu_check.txt (a plain summary), next to each step's log; OUT is
# $OUT when set, else bench/gpu_check_out/. The runs themselves go to a temporary folder, deleted when the check passes.
# Any failing step stops the script (set -euo pipefail), names its log and keeps the runs.
#
# Settings (environment): RECIPE, GPU (its index, default 0), BUDGET (seconds for all the runs together, default 420: the
# runs share it, and one that reaches it is stopped and fails the check),
# SETS (extra `--set key=value` words for every run, e.g. "distill.max_tokens=65536"), VENV (default .venv),
# CACHE_RUN_ARGS (the offline teacher's extra words for the run, default: "--set teacher_cache.k=64").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
SLIMLAB=$VENV/bin/slimlab
ACCELERATE=$VENV/bin/accelerate
RECIPE=${RECIPE:-minitron-depth}
GPU=${GPU:-0}
BUDGET=${BUDGET:-420}
OUT=${OUT:-$ROOT/bench/gpu_check_out}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slimlab-gpu-check.XXXXXX")
CFG=$WORK/fsdp2-1gpu-bf16.yaml
CACHE_RUN_ARGS=${CACHE_RUN_ARGS:---set teacher_cache.k=64}
SET_ARGS=()
for s in ${SETS:-}; do SET_ARGS+=(--set "$s"); done
export CUDA_VISIBLE_DEVICES=$GPU HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
SAMPLER=

say() { echo "gpu_check: $*"; }
die() { rmdir "$WORK" 2>/dev/null || true; echo "gpu_check: FAILED: $*${WORK:+ (runs, if any: $WORK)}" >&2; exit 1; }
stop_sampler() { if [[ -n $SAMPLER ]]; then kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=; fi; }
trap 'stop_sampler' EXIT
trap 'echo "gpu_check: FAILED at line $LINENO (exit $?); logs in $OUT, runs in $WORK" >&2' ERR
say "results go to $OUT; the runs to $WORK (deleted when the check passes)"

# --- 0. what the check needs: the set-up's commands, a CUDA GPU that runs bf16, nvidia-smi ---
for exe in "$PY" "$SLIMLAB" "$ACCELERATE"; do [[ -x $exe ]] || die "$exe is missing: run make setup first"; done
command -v nvidia-smi >/dev/null || die "nvidia-smi is not on the PATH: this check needs a CUDA machine"
"$PY" - <<'EOF' || die "no CUDA GPU with bfloat16 that PyTorch can use (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)"
import torch
assert torch.cuda.is_available() and torch.cuda.is_bf16_supported()
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

# --- 1. the Accelerate config: one process, FSDP2, bf16; checked by Accelerate's own loader ---
cat > "$CFG" <<'EOF'
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
mixed_precision: bf16
num_machines: 1
machine_rank: 0
num_processes: 1
main_training_function: main
rdzv_backend: static
same_network: true
use_cpu: false
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_cpu_ram_efficient_loading: true
  fsdp_offload_params: false
  fsdp_activation_checkpointing: false
EOF
cp "$CFG" "$OUT/accelerate-config.yaml"
"$PY" - "$CFG" <<'EOF'
import sys
from accelerate.commands.config.config_args import load_config_from_file
c = load_config_from_file(sys.argv[1])  # refuses unknown keys
got = (c.distributed_type.value, c.fsdp_config['fsdp_version'], str(c.mixed_precision), c.num_processes)
assert got == ('FSDP', 2, 'bf16', 1), got
print(f"gpu_check: accelerate config {sys.argv[1]}: {got}")
EOF

# --- 2. what the dry run estimates for this launch ---
GPU_GIB=$(nvidia-smi -i "$GPU" --query-gpu=memory.total --format=csv,noheader,nounits | head -1 | awk '{printf "%.1f", $1/1024}')
"$SLIMLAB" run "$RECIPE" --dry-run --processes 1 --sharding fsdp --gpu-gib "$GPU_GIB" "${SET_ARGS[@]}" > "$OUT/dry-run.log" 2>&1 \
  || die "the dry run failed; see $OUT/dry-run.log"
say "dry run: $(grep -m1 '^  fits:' "$OUT/dry-run.log")"

# --- 3. the runs, each with nvidia-smi sampling memory.used in the background ---
gpu_used() { nvidia-smi -i "$GPU" --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }

measured() {  # measured NAME COMMAND...: run a step within what is left of BUDGET; its output shown and kept in OUT/NAME.log, memory in OUT/NAME.mem
  local name=$1; shift
  echo "$(gpu_used)" > "$OUT/$name.base"
  nvidia-smi -i "$GPU" --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/$name.mem" &
  SAMPLER=$!
  local t0=$SECONDS status=0 left=$((DEADLINE - SECONDS))
  (( left > 0 )) || die "no time left of BUDGET=${BUDGET}s for $name"
  say "$name (at most ${left}s): $*"
  timeout -k 15 "$left" "$@" 2>&1 | tee "$OUT/$name.log" || status=$?  # pipefail: the status of the step, not of tee
  stop_sampler
  echo $((SECONDS - t0)) > "$OUT/$name.seconds"
  if (( status != 0 )); then
    (( status == 124 || status == 137 )) && die "$name ran out of the BUDGET of ${BUDGET}s; see $OUT/$name.log"
    die "$name exited with status $status; see $OUT/$name.log"
  fi
}

DEADLINE=$((SECONDS + BUDGET))
run_args=(launch --config_file "$CFG" -m slimlab.cli run "$RECIPE" --dtype bfloat16 --no-progress "${SET_ARGS[@]}")
measured online "$ACCELERATE" "${run_args[@]}" --out "$WORK/online"
# shellcheck disable=SC2086  # the setting is a list of words
measured cache "$ACCELERATE" "${run_args[@]}" --out "$WORK/cache-run" $CACHE_RUN_ARGS
CASES=(online cache)

# --- 4. throughput, peak memory and loss curves, as JSON and as text ---
"$PY" - "$OUT" "$WORK" "$RECIPE" "$GPU_GIB" "${CASES[@]}" <<'EOF'
import json, re, sys
from pathlib import Path
out, work, recipe, gpu_gib, cases = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5:]
run_dirs = {'online': work/'online', 'cache': work/'cache-run'}

def train_records(path):
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return [r for r in rows if r.get('split') == 'train']

def throughput(rows):
    last, first = rows[-1], rows[0]
    steady = (last['tokens'] - first['tokens'])/(last['seconds'] - first['seconds']) if len(rows) > 1 and last['seconds'] > first['seconds'] else None
    return dict(tokens=last['tokens'], seconds=last['seconds'], tokens_per_s=last['tokens']/last['seconds'] if last['seconds'] else None,
                steady_tokens_per_s=steady)

def memory(name):
    samples = [int(x) for x in (out/f'{name}.mem').read_text().split() if x.isdigit()]
    base = int((out/f'{name}.base').read_text().split()[0])
    peak = max(samples) if samples else None
    return dict(samples=len(samples), before_mib=base, peak_mib=peak, peak_gib=peak/1024 if peak else None,
                peak_over_before_gib=(peak - base)/1024 if peak else None)

estimate = re.search(r"^  fits: (yes|no) \(([\d,.]+) GiB of ([\d,.]+) GiB\)$", (out/'dry-run.log').read_text(), re.M)
result = dict(recipe=recipe, gpu_gib=gpu_gib, accelerate_config=str(out/'accelerate-config.yaml'),
              estimate=dict(fits=estimate[1], peak_gib=float(estimate[2].replace(',', ''))) if estimate else None, runs={})
for case in cases:
    runs = {}
    for path in sorted(run_dirs[case].rglob('metrics.jsonl')):
        rows = train_records(path)
        if rows: runs[str(path.parent.relative_to(run_dirs[case]))] = dict(**throughput(rows), loss_curve=[[r['step'], r['tokens'], r['loss']] for r in rows])
    if not runs: sys.exit(f"gpu_check: FAILED: the {case} run wrote no train records under {run_dirs[case]}")
    result['runs'][case] = dict(wall_seconds=int((out/f'{case}.seconds').read_text()), memory=memory(case), log=str(out/f'{case}.log'), trainings=runs)
(out/'gpu_check.json').write_text(json.dumps(result, indent=1))

lines = [f"slimlab GPU check: {recipe}, one process, FSDP2, bf16, one GPU of {gpu_gib:g} GiB"]
if estimate: lines.append(f"dry-run estimate for this launch: {estimate[2]} GiB per GPU (fits: {estimate[1]})")
for case, r in result['runs'].items():
    m = r['memory']
    lines.append(f"\n{case} teacher: {r['wall_seconds']} s wall-clock; peak GPU memory {m['peak_gib']:.2f} GiB "
                 f"({m['peak_over_before_gib']:.2f} GiB over the {m['before_mib']} MiB held before)")
    for where, t in r['trainings'].items():
        steady = f", {t['steady_tokens_per_s']:,.0f} after the first record" if t['steady_tokens_per_s'] else ''
        curve = ' '.join(f"{loss:.3f}" for _, _, loss in t['loss_curve'])
        lines += [f"  {where}: {t['tokens']:,} tokens in {t['seconds']:.1f} s = {t['tokens_per_s']:,.0f} tokens/s{steady}",
                  f"    loss every logged step: {curve}"]
(out/'gpu_check.txt').write_text('\n'.join(lines) + '\n')
print('\n'.join(lines))
EOF
rm -rf "$WORK"
say "results: $OUT/gpu_check.json and $OUT/gpu_check.txt (logs: $OUT/*.log)"
