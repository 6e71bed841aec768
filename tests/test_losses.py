"""Losses at realistic sizes: the chunked head loss equals the plain one at SmolLM2's vocabulary for every divergence
and with Granite's and Gemma's logit transforms on either side, never allocates a (tokens, vocab) tensor, and its gradient at λ = 1 does not depend on the labels' values; the
composite loss on a real pruned student equals its definition in value and parameter gradients; bad input fails
before any work. (Chapter 08 tests every divergence, weight, temperature and top-k teacher on small tensors.)"""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from slimlab.lab import load_model
from slimlab.losses import (KD_LOSSES, IGNORE_INDEX, CompositeConfig, CompositeLoss, Divergence, FeatureDistiller, OutputLayer, Schedule, TeacherHead,
                            TeacherStates, block_outputs, chunked_head_loss, head_loss, layer_map_from_plan, output_layer, shift_labels,
                            topk_logits)
from slimlab.prune import ModelShape, PruningPlan, apply_plan

V, D = 49152, 64


def random_inputs(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = torch.randn(n, D, generator=g), torch.randn(V, D, generator=g)/D**0.5
    th, tw = torch.randn(n, D, generator=g), 2*torch.randn(V, D, generator=g)/D**0.5
    y = torch.randint(0, V, (n,), generator=g)
    y[::7] = IGNORE_INDEX
    return h, w, th, tw, y


@pytest.mark.parametrize('kind', KD_LOSSES)
def test_chunked_equals_plain_at_smollm2_vocab(kind):
    h0, w0, th, tw, y = random_inputs()
    div = Divergence(kind, temperature=2.0, alpha=0.1, beta=0.4)
    results = []
    for chunked in (False, True):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        if chunked: res = chunked_head_loss(h, OutputLayer(w), y, TeacherHead(th, OutputLayer(tw)), 0.4, 0.6, div, chunk=64)
        else: res = head_loss(h @ w.T, y, th @ tw.T, 0.4, 0.6, div)
        res.total.backward()
        results.append((res.total, res.lm, res.kd, h.grad, w.grad))
    for a, b in zip(*results): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('student, teacher', [((8.0, None), (1.0, None)), ((1.0, 2.0), (1.0, None)), ((1.0, None), (1.0, 2.0)),
                                              ((4.0, 2.0), (8.0, None))])
def test_chunked_equals_plain_with_logit_transforms(student, teacher):
    "Granite's divisor and Gemma's soft-cap (c = 2 bends most of these logits), on either side: values and gradients of h, W and b."
    h0, w0, th, tw, y = random_inputs()
    b0 = torch.randn(V, generator=torch.Generator().manual_seed(3))
    t_head = OutputLayer(tw, None, *teacher)
    results = []
    for chunked in (False, True):
        h, w, b = (x.clone().requires_grad_() for x in (h0, w0, b0))
        head = OutputLayer(w, b, *student)
        if chunked: res = chunked_head_loss(h, head, y, TeacherHead(th, t_head), 0.4, 0.6, Divergence('skew_forward_kl', temperature=2.0), chunk=64)
        else: res = head_loss(head.logits(h), y, t_head.logits(th), 0.4, 0.6, Divergence('skew_forward_kl', temperature=2.0))
        res.total.backward()
        results.append((res.total, res.lm, res.kd, h.grad, w.grad, b.grad))
    for a, b in zip(*results): torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def chunked_kd_only(divergence, labels, n=45, v=1000, chunk=16):
    "Loss terms and gradients of hidden states, weight and bias of the chunked loss with λ = 1 (the divergence alone)."
    g = torch.Generator().manual_seed(1)
    h, w, b = torch.randn(n, D, generator=g), torch.randn(v, D, generator=g)/D**0.5, torch.randn(v, generator=g)
    th, tw = torch.randn(n, D, generator=g), 3*torch.randn(v, D, generator=g)/D**0.5
    h, w, b = (x.requires_grad_() for x in (h, w, b))
    labels = labels.clone()
    labels[::5] = IGNORE_INDEX
    res = chunked_head_loss(h, OutputLayer(w, b), labels, TeacherHead(th, OutputLayer(tw)), 0.0, 1.0, divergence, chunk=chunk)
    (1.7*res.total).backward()
    return [res.total, res.lm, res.kd, h.grad, w.grad, b.grad]


@pytest.mark.parametrize('kind', KD_LOSSES)
def test_zero_lm_weight_gradient_ignores_the_labels(kind):
    "With λ = 1 the labels only select positions: other targets at the same positions leave the gradients bit for bit equal."
    y = torch.randint(0, 1000, (45,), generator=torch.Generator().manual_seed(2))
    first = chunked_kd_only(Divergence(kind, temperature=2.0), y)
    second = chunked_kd_only(Divergence(kind, temperature=2.0), (y + 1) % 1000)
    assert first[1] != second[1]  # the cross-entropy is still reported
    for a, b in zip(first[3:], second[3:]): assert torch.equal(a, b)


class LargestTensor(TorchDispatchMode):
    "Records the largest number of elements of any tensor an operation returns."
    def __init__(self):
        super().__init__(); self.largest = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor): self.largest = max(self.largest, t.numel())
        return out


def test_chunked_never_builds_full_vocab_logits():
    n, chunk = 2048, 128
    h0, w0, th, tw, y = random_inputs(n)
    h, w = h0.requires_grad_(), w0.requires_grad_()
    with LargestTensor() as probe:
        chunked_head_loss(h, OutputLayer(w), y, TeacherHead(th, OutputLayer(tw)), 0.5, 0.5, Divergence('skew_reverse_kl'), chunk=chunk).total.backward()
    assert probe.largest <= chunk*V  # a chunk's logits (V x d weight gradients are smaller here)
    with LargestTensor() as probe:  # a soft-capped head keeps the transform's slope, also one chunk wide
        chunked_head_loss(h, OutputLayer(w, None, 8.0, 30.0), y, TeacherHead(th, OutputLayer(tw, None, 1.0, 30.0)), 0.5, 0.5, chunk=chunk).total.backward()
    assert probe.largest <= chunk*V
    with LargestTensor() as probe:
        head_loss(h @ w.T, y, th @ tw.T, 0.5, 0.5).total.backward()
    assert probe.largest == n*V  # the plain loss does


def test_composite_on_a_pruned_student_equals_its_definition():
    torch.manual_seed(0)
    teacher = load_model('llama-small')
    plan = PruningPlan(ModelShape.of(teacher), layers=[0, 1, 2, 4, 5, 7])
    ids = torch.randint(0, 1000, (2, 33))
    with torch.no_grad(), block_outputs(teacher) as t_blocks: t_hidden = teacher.model(ids).last_hidden_state
    config = CompositeConfig(divergence=Divergence('skew_forward_kl'), feature_weight=0.05, dynamics_weight=0.05, chunk=16)
    grads = []
    for chunked in (True, False):
        student = apply_plan(teacher, plan)
        features = FeatureDistiller(256, 256, layer_map_from_plan(plan), kind='cosine')
        with block_outputs(student) as s_blocks: s_hidden = student.model(ids).last_hidden_state
        lam, beta = config.lam(0.3), config.beta(0.3)
        if chunked:
            total = CompositeLoss(config, features)(0.3, ids, s_hidden, output_layer(student),
                                                    TeacherStates(t_hidden, output_layer(teacher), t_blocks), student_blocks=s_blocks).total
        else:
            main = head_loss((s_hidden @ student.lm_head.weight.T).flatten(0, 1), shift_labels(ids).flatten(),
                             (t_hidden @ teacher.lm_head.weight.T).flatten(0, 1), 1 - lam, lam, config.divergence)
            total = main.total + 0.05*features.value_loss(s_blocks, t_blocks) + 0.05*features.dynamics_loss(s_blocks, t_blocks)
        total.backward()
        grads.append([total] + [p.grad for p in student.parameters()])
    for a, b in zip(*grads): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def library_skew_kl(s_logits, t_logits, skew_alpha=0.4, temperature=2.0):
    "The logit term of optipfair's compute_distillation_loss (the book's author's library), float64: T²·KL(p ‖ a·q + (1−a)·p), a the student's share."
    p, q = (t_logits.double()/temperature).softmax(-1), (s_logits.double()/temperature).softmax(-1)
    return (p*(p.log() - (skew_alpha*q + (1 - skew_alpha)*p).log())).sum(-1)*temperature**2


def test_scarce_data_book_arm_is_the_book_library_loss():
    "The scarce-data experiment's skew-kl-book arm trains on 0.5·CE (T = 1) + 0.5·the library's skew KL (a = 0.4, T = 2), chunked, at SmolLM2's vocabulary."
    from slimlab.findings import arm_recipes, read_experiment
    loss = arm_recipes(read_experiment('scarce-data'), 'smoke')['skew-kl-book'].loss
    assert loss.dynamics_weight == 0 and loss.lam(0.0) == loss.lam(1.0) == 0.5
    h0, w0, th, tw, y = random_inputs(n=200, seed=3)
    h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    res = chunked_head_loss(h, OutputLayer(w), y, TeacherHead(th, OutputLayer(tw)), 0.5, 0.5, loss.divergence, chunk=64)
    h_ref, w_ref = h0.double().requires_grad_(), w0.double().requires_grad_()
    s_logits, keep = h_ref @ w_ref.T, y != IGNORE_INDEX
    ref = 0.5*F.cross_entropy(s_logits, y) + 0.5*library_skew_kl(s_logits, (th @ tw.T).double())[keep].mean()
    res.total.backward(); ref.backward()
    for a, b in ((res.total, ref), (h.grad, h_ref.grad), (w.grad, w_ref.grad)): torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('make, message', [
    (lambda: CompositeConfig(lam=Schedule('linear', 1.0, -0.5, name='lambda')), 'lambda end=-0.5 must be in [0, 1]'),
    (lambda: Schedule('warmup', name='beta'), "beta schedule 'warmup' is unknown; allowed: constant, linear, cosine, step"),
    (lambda: Divergence('kl'), "divergence kind 'kl' is unknown"),
    (lambda: chunked_head_loss(torch.randn(4, D), OutputLayer(torch.randn(V + 64, D)), torch.zeros(4, dtype=torch.long),
                               TeacherHead(torch.randn(4, D), OutputLayer(torch.randn(V, D))), 0.5, 0.5), 'differ only by padding'),
    (lambda: chunked_head_loss(torch.randn(4, D), OutputLayer(torch.randn(V + 64, D)), torch.zeros(4, dtype=torch.long),
                               TeacherHead(torch.randn(4, D), OutputLayer(torch.randn(V, D))), 0.5, 0.5, vocab_size=V + 1), 'differ by more than padding'),
    (lambda: chunked_head_loss(torch.randn(4, D), OutputLayer(torch.randn(V, D)), torch.zeros(5, dtype=torch.long)), 'hidden states have 4 rows but labels 5'),
    (lambda: chunked_head_loss(torch.randn(4, D), OutputLayer(torch.randn(V, D)), torch.zeros(4, dtype=torch.long), topk_logits(torch.randn(4, V), 8),
                               0.0, 1.0, Divergence('reverse_kl')), "'reverse_kl' cannot be computed from a teacher's top-k"),
])
def test_bad_input_fails_clearly(make, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]').replace('(', r'\(').replace(')', r'\)')):
        make()


def test_a_bare_weight_is_not_an_output_layer():
    "The pre-OutputLayer call, a weight tensor where the head goes, fails with the fix in the message."
    with pytest.raises(TypeError, match=r'head must be an OutputLayer .*see output_layer\(model\)\), got Tensor'):
        chunked_head_loss(torch.randn(4, D), torch.randn(V, D), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match='teacher.head must be an OutputLayer'):
        chunked_head_loss(torch.randn(4, D), OutputLayer(torch.randn(V, D)), torch.zeros(4, dtype=torch.long),
                          TeacherHead(torch.randn(4, D), torch.randn(V, D)), 0.5, 0.5)
