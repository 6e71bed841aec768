"Progressive pruning: schedule invariants, and a run killed (SIGKILL) in its last stage that resumes to the uninterrupted result, with and without MTP heads and an FDD term, from the pruned weights or a random init, experts dropped or partially preserved."
import json, os, signal, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch

from slimlab.lab import scaled_config
from slimlab.prune import ModelShape
from slimlab.schedules import SCHEDULES, Stage, check_schedule, final_shape, make_schedule, relative_targets

ROOT = Path(__file__).resolve().parent.parent

FINALS = {
    'llama-tiny': dict(drop_layers=2, hidden_size=48, num_heads=2, num_kv_heads=2, intermediate_size=0.5),
    'qwen2_moe-tiny': dict(drop_layers=2, hidden_size=48, num_experts=4, expert_size=24, shared_expert_size=48, top_k=1),
    'qwen3_moe-small': dict(drop_layers=4, num_heads=4, num_kv_heads=2, num_experts=10, expert_size=96, top_k=3),
}

@pytest.mark.parametrize('model', list(FINALS))
@pytest.mark.parametrize('name', SCHEDULES)
@pytest.mark.parametrize('stages', [1, 2, 3, 4])
def test_make_schedule_invariants(model, name, stages):
    cfg, final = scaled_config(model), FINALS[model]
    sched = make_schedule(cfg, final, name, stages, total_tokens=10_000)
    shapes = check_schedule(cfg, sched, final)
    assert shapes[-1] == final_shape(cfg, final)
    assert len(sched) == (1 if name == 'one-shot' else stages)
    assert sum(s.tokens for s in sched) == 10_000 and all(s.tokens > 0 for s in sched)
    chain = [ModelShape.of(cfg), *shapes]
    for before, after in zip(chain, chain[1:]):
        assert before != after
        assert after.num_heads // after.num_kv_heads <= before.num_heads // before.num_kv_heads
        assert relative_targets(before, after)  # something is cut


def test_schedule_json_roundtrip():
    cfg = scaled_config('llama-tiny')
    sched = make_schedule(cfg, FINALS['llama-tiny'], 'joint', 2, total_tokens=1000)
    again = [Stage(**d) for d in json.loads(json.dumps([s.__dict__ for s in sched]))]
    assert again == sched and check_schedule(cfg, again) == check_schedule(cfg, sched)


WORKER = textwrap.dedent('''
    import os, signal, sys, torch
    from dataclasses import replace
    from pathlib import Path
    torch.set_num_threads(1)
    import slimlab.distill as D
    from slimlab.lab import load_model, load_tokenizer
    from slimlab.lab import Job
    from slimlab.importance import Calibration
    from slimlab.experts import ExpertCompression
    from slimlab.losses import SLIMQWEN_BETA
    from slimlab.schedules import PruneSchedule, StageTraining, make_schedule, run_schedule
    run_dir, kill, name, extras, init, strategy = Path(sys.argv[1]), sys.argv[2] == 'kill', sys.argv[3], sys.argv[4] == 'extras', sys.argv[5], sys.argv[6]
    tok = load_tokenizer('llama-tiny')
    blocks, stream = D.lab_data(tok, seq_len=64, eval_tokens=512)
    model = load_model(name, seed=0)
    loss = replace(D.minitron_loss(), chunk=128)
    if extras: loss = replace(loss, beta=SLIMQWEN_BETA, dynamics_weight=0.1)  # one MTP module and an FDD term, trained in every stage
    config = D.DistillConfig(max_tokens=1, micro_batch_size=2, seq_len=64, lr=2e-3, lr_floor=2e-4, warmup_steps=1, log_every=1,
                             eval_every=2, save_every=2, loss=loss)
    final = dict(llama_tiny=dict(drop_layers=2, hidden_size=48, intermediate_size=96),
                 qwen2_moe_tiny=dict(drop_layers=2, hidden_size=48, num_experts=4, expert_size=24))[name.replace('-', '_')]
    sched = make_schedule(model, final, 'depth-first' if init == 'pruned' else 'one-shot', 2, total_tokens=8*128)  # a random init is one cut
    real_save = D.save_checkpoint
    def save_then_die(accelerator, run_dir_, state, keep_last):
        path = real_save(accelerator, run_dir_, state, keep_last)
        if kill and Path(run_dir_).name == f'stage-{len(sched)}' and state['step'] == 2: os.kill(os.getpid(), signal.SIGKILL)
        return path
    D.save_checkpoint = save_then_die
    run_schedule(model, sched, run_dir, D.DistillData(blocks, stream, tok), config, model, PruneSchedule(final, experts=ExpertCompression(strategy)),
                 Calibration(4, 64), StageTraining(mtp_depth=1 if extras else 0, feature_distance='cosine', init=init),
                 Job(resume=len(sys.argv) > 7, progress=False, log=None))
''')

def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', WORKER, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize('name, extras, init, strategy', [('llama-tiny', 'extras', 'pruned', 'drop'), ('qwen2_moe-tiny', 'extras', 'pruned', 'drop'),
                                                           ('qwen2_moe-tiny', 'extras', 'random', 'drop'),
                                                           ('qwen2_moe-tiny', 'extras', 'pruned', 'partial')])  # plain runs resume in the chapter's own test
def test_killed_in_last_stage_resumes_exactly(tmp_path, name, extras, init, strategy):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from slimlab.distill import complete_checkpoints, finished_run, read_metrics
    from slimlab.mtp import MTP_FILE, load_mtp
    straight = _run(tmp_path/'straight', 'run', name, extras, init, strategy)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _run(tmp_path/'killed', 'kill', name, extras, init, strategy)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    k = tmp_path/'killed'
    stages = [f'stage-{i}' for i in range(1, 3 if init == 'pruned' else 2)]
    assert all(finished_run(k/s) for s in stages[:-1]) and not finished_run(k/stages[-1]) and not (k/'model').exists()
    assert [p.name for p in complete_checkpoints(k/stages[-1])] == ['step-00000002']
    assert not json.loads((k/'schedule.json').read_text())['done']
    resumed = _run(k, 'run', name, extras, init, strategy, 'resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    files = ['model.safetensors'] + ([MTP_FILE] if extras == 'extras' else [])
    assert sorted(p.name for p in (k/'model').iterdir() if p.suffix == '.safetensors') == sorted(files)
    for file in files:  # the student and its MTP heads are bit-identical to the uninterrupted run's
        a, b = load_file(tmp_path/'straight'/'model'/file), load_file(k/'model'/file)
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    for stage in stages:
        assert ([r['loss'] for r in read_metrics(tmp_path/'straight'/stage)] == [r['loss'] for r in read_metrics(k/stage)])
    done = json.loads((k/'schedule.json').read_text())
    assert done['done'] and [r['ppl'] for r in done['records']] == [r['ppl'] for r in json.loads((tmp_path/'straight'/'schedule.json').read_text())['records']]
    student = AutoModelForCausalLM.from_pretrained(k/'model')  # a stock folder, no slimlab needed
    assert student.config.hidden_size == 48
    if extras == 'extras':
        assert done['training'] == dict(mtp_depth=1, features='cosine', init=init,
                                       experts=None if strategy == 'drop' else dict(strategy=strategy, preserve=0.5, similarity='router', align=False))
    if strategy != 'drop':  # the stage that halves the experts merged them, and the resumed run folded the saved groups
        assert (k/'stage-2'/'expert_groups.json').exists() and not (k/'stage-1'/'expert_groups.json').exists()
        heads = load_mtp(student, k/'model')
        assert (heads.depth, heads.config.hidden_size) == (1, 48)
        ids = torch.randint(0, 1000, (2, 16))
        with torch.no_grad(): states = heads(student.get_decoder()(ids).last_hidden_state, ids, student.get_input_embeddings())
        assert states[0].shape == (2, 15, 48)
        for stage in stages:
            rows = read_metrics(k/stage, 'train')
            assert rows and all(r['mtp_lm'] > 0 and r['dynamics'] > 0 for r in rows)
