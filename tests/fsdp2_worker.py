"""Worker of the FSDP2 test: a tiny Llama student with two MTP depths distilled from a tiny Llama teacher for a few AdamW
steps — in one process without sharding (the reference), or in each process of a `torchrun` launch with student and
teacher sharded by `slimlab.scale` (FSDP2 `fully_shard` on gloo).

Usage: python tests/fsdp2_worker.py OUT_DIR [--steps 4]
       torchrun --standalone --nproc_per_node 2 tests/fsdp2_worker.py OUT_DIR [--steps 4]
Writes OUT_DIR/untied.json and OUT_DIR/tied.json (per step: the loss terms of each micro-batch, the gradient norm) and
OUT_DIR/untied.pt, OUT_DIR/tied.pt (the final weights of the student module, whole).
"""
import argparse, json, os
from pathlib import Path

import torch

VOCAB, SEQ, MICRO, PROCESSES = 256, 24, 2, 2 # a micro-batch is MICRO × SEQ tokens; one per process per step
CHUNK = 16 # tokens per chunk of logits: each head's 46-48 positions run in 3 chunks
TEACHER_WIDTH, STUDENT_WIDTH = 64, 48
TERMS = ('total', 'lm', 'kd', 'mtp_lm', 'mtp_kd')
LR, CLIP = 1e-2, 0.5
TOLERANCE = 1e-4 # of the test, relative: the reference must train far beyond it


def llama(hidden: int, layers: int, tied: bool, seed: int):
    "A tiny random Llama (float32)."
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2*hidden, num_hidden_layers=layers,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tied))


def build(tied: bool) -> tuple:
    "(teacher, student, loss, MTP heads), the same in every process."
    from slimlab.losses import CompositeConfig, CompositeLoss, Schedule
    from slimlab.mtp import MTPHeads
    teacher, student = llama(TEACHER_WIDTH, 3, tied, seed=1).eval().requires_grad_(False), llama(STUDENT_WIDTH, 2, tied, seed=0).train()
    torch.manual_seed(2)
    heads = MTPHeads(student, depth=2, init='random')
    loss = CompositeLoss(CompositeConfig(lam=Schedule('linear', 0.8, 0.4, name='lambda'), beta=Schedule('constant', 0.5, name='beta'),
                                         chunk=CHUNK))
    return teacher, student, loss, heads


def batches(steps: int) -> torch.Tensor:
    "(steps, PROCESSES, MICRO, SEQ) token ids: [s, r] is what process r reads at step s, and the reference's r-th micro-batch."
    return torch.randint(0, VOCAB, (steps, PROCESSES, MICRO, SEQ), generator=torch.Generator().manual_seed(0))


def optimizer(module) -> torch.optim.Optimizer: return torch.optim.AdamW(module.parameters(), lr=LR, weight_decay=0.01)


def reference(tied: bool, steps: int) -> tuple[list, dict]:
    "One process, nothing sharded (`DistillStudent`, `teacher_states`): each step accumulates the PROCESSES micro-batches, each weighted 1/PROCESSES."
    from slimlab.distill import DistillStudent, teacher_states
    teacher, student, loss, heads = build(tied)
    module = DistillStudent(student, loss, heads)
    start = {k: v.detach().clone() for k, v in module.state_dict().items()}
    opt, rows, data = optimizer(module), [], batches(steps)
    for s in range(steps):
        micro = []
        for ids in data[s]:
            terms = module(ids, s/(steps - 1), teacher_states(teacher, ids))
            (terms.total/PROCESSES).backward()
            micro.append({k: v for k, v in terms.as_dict().items() if k in TERMS})
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), CLIP)
        opt.step(); opt.zero_grad(set_to_none=True)
        rows.append({'step': s, 'micro': micro, 'grad_norm': norm.item()})
    moved = min(((v - start[k]).abs().max()/start[k].abs().max()).item() for k, v in module.state_dict().items())
    assert moved > 100*TOLERANCE, f"a tensor moved by only {moved:.2g} of its scale: not everything trained"
    return rows, module.state_dict()


def check_sharded(module, name: str):
    "Every parameter of the module is a DTensor whose local part is a shard of its rows."
    from torch.distributed.tensor import DTensor
    for n, p in module.named_parameters():
        assert isinstance(p, DTensor), f"{name}: {n} is not sharded ({type(p).__name__})"
        assert p.to_local().shape[0] <= -(-p.shape[0]//PROCESSES), f"{name}: {n} holds {p.to_local().shape[0]} of {p.shape[0]} rows"


def sharded(tied: bool, steps: int) -> tuple[list, dict]:
    "Each process: student and teacher sharded, its own micro-batch per step; FSDP reduce-scatters (averages) the gradients."
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from slimlab.scale import shard_student, shard_teacher, sharded_micro_step
    teacher, student, loss, heads = build(tied)
    module, teacher = shard_student(student, loss, heads), shard_teacher(teacher)
    check_sharded(module, 'student'); check_sharded(teacher, 'teacher')
    opt, rows, data = optimizer(module), [], batches(steps)
    for s in range(steps):
        terms = sharded_micro_step(module, teacher, data[s, dist.get_rank()], s/(steps - 1))
        check_sharded(teacher, 'teacher after the forward')  # nothing of the teacher stays gathered
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), CLIP).full_tensor()
        opt.step(); opt.zero_grad(set_to_none=True)
        check_sharded(module, 'student after the step')
        micro = [None]*PROCESSES
        dist.all_gather_object(micro, {k: v for k, v in terms.as_dict().items() if k in TERMS})
        rows.append({'step': s, 'micro': micro, 'grad_norm': norm.item()})
    return rows, get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out_dir')
    p.add_argument('--steps', type=int, default=4, help='optimizer steps')
    args = p.parse_args()
    torch.set_num_threads(1)
    out, world = Path(args.out_dir), int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group('gloo')
        assert dist.get_world_size() == PROCESSES, f"{dist.get_world_size()} processes started, {PROCESSES} expected"
    for tied in (False, True):
        rows, weights = (sharded if world > 1 else reference)(tied, args.steps)
        if int(os.environ.get('RANK', '0')) == 0:
            out.mkdir(parents=True, exist_ok=True)
            name = 'tied' if tied else 'untied'
            (out/f'{name}.json').write_text(json.dumps(rows))
            torch.save({k: v.detach().clone() for k, v in weights.items()}, out/f'{name}.pt')
    if world > 1: dist.destroy_process_group()


if __name__ == '__main__':
    main()
