"""The PyTorch adapter: every registered loss called with native tensors (float targets, int64 labels, bool
relevance) through torch.autograd.gradcheck and against metricloss, opcheck, torch.compile, and the distributed loss
with two real processes on the gloo backend."""

import inspect
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from registry import BINARY, DIFFERENTIABLE, LABELS, REGISTRY, REGISTRY_IDS, RELEVANCE, SIGNS
from support import MINED_PER_BATCH_IDS, mined_per_batch

import metricloss as ml
from metricloss.adapters.torch import distributed, wrap

cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)
TARGETS = (SIGNS, BINARY)


def native(array, kind, floating, targets_as):
    """``array`` as a PyTorch user gives it: ``floating`` features and scores, int64 labels, bool relevance, and
    targets (y in {−1, 1} or {0, 1}) as ``floating`` tensors, or as int64 with ``targets_as="int"``."""
    if kind in DIFFERENTIABLE or (kind in TARGETS and targets_as == "float"):
        return torch.tensor(array, dtype=floating)
    if kind == RELEVANCE:
        return torch.tensor(array, dtype=torch.bool)
    assert kind in (LABELS, *TARGETS)
    return torch.tensor(array, dtype=torch.int64)


def tensors(case, seed=0, dtype=np.float64, targets_as="float"):
    """The case's inputs as native tensors (see ``native``)."""
    arrays = case.make_inputs(np.random.default_rng(seed), dtype)
    floating = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    return [native(a, kind, floating, targets_as) for a, kind in zip(arrays, case.arg_kinds, strict=True)]


@cases
def test_gradcheck_in_float64_with_float_targets(case):
    if case.frozen_value is not None:
        pytest.skip(
            "its gradient holds weights constant (circle's detached α), so it is not the value's: the contract "
            "differences the frozen-weight objective instead"
        )
    inputs = tensors(case)
    for t, kind in zip(inputs, case.arg_kinds, strict=True):
        t.requires_grad_(kind in DIFFERENTIABLE)
    loss = wrap(case.loss, **case.hyper)
    differentiable = [t for t in inputs if t.requires_grad]

    def only_floats(*floats):
        it = iter(floats)
        return loss(*[next(it) if t.requires_grad else t for t in inputs])

    assert torch.autograd.gradcheck(only_floats, differentiable)


@cases
@pytest.mark.parametrize("targets_as", ["float", "int"])
def test_native_arguments_give_metricloss_values_and_gradients_in_float32(case, targets_as):
    """Targets as float (or int64) tensors, labels int64, relevance bool: the value and the gradients are
    metricloss's own, and every float tensor the loss does not differentiate (a target) gets no gradient even when
    it asks for one."""
    inputs = tensors(case, seed=1, dtype=np.float32, targets_as=targets_as)
    for t in inputs:
        t.requires_grad_(t.is_floating_point())
    value = wrap(case.loss, **case.hyper)(*inputs)
    value.backward()
    expected_value, expected_grads = case(*[t.detach().numpy() for t in inputs])
    expected_grads = iter(expected_grads if isinstance(expected_grads, tuple) else (expected_grads,))
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected_value, rel=1e-6)
    for t, kind in zip(inputs, case.arg_kinds, strict=True):
        if kind in DIFFERENTIABLE:
            assert t.grad.dtype == torch.float32
            np.testing.assert_array_equal(t.grad.numpy(), next(expected_grads))
        else:
            assert t.grad is None, f"{kind} got a gradient"
    assert next(expected_grads, None) is None


@cases
def test_arguments_as_keywords_out_of_order(case):
    """Every argument after the first passed by name (the loss's parameter names), in reverse order: each gradient
    still meets its argument."""
    names = list(inspect.signature(case.loss).parameters)[1 : len(case.arg_kinds)]
    first, *rest = tensors(case, seed=2)
    for t, kind in zip([first, *rest], case.arg_kinds, strict=True):
        t.requires_grad_(kind in DIFFERENTIABLE)
    value = wrap(case.loss, **case.hyper)(first, **dict(reversed(list(zip(names, rest, strict=True)))))
    value.backward()
    expected_value, expected_grads = case(*[t.detach().numpy() for t in [first, *rest]])
    expected_grads = expected_grads if isinstance(expected_grads, tuple) else (expected_grads,)
    assert value.item() == pytest.approx(expected_value, rel=1e-12)
    got = [t.grad.numpy() for t in [first, *rest] if t.requires_grad]
    for g, expected in zip(got, expected_grads, strict=True):
        np.testing.assert_array_equal(g, expected)


@pytest.mark.parametrize(
    "loss_fn", [ml.triplet_loss, ml.contrastive_loss, ml.lifted_structure_loss], ids=lambda f: f.__name__
)
def test_references_as_keywords_in_any_order(loss_fn):
    rng = np.random.default_rng(4)
    x, refs = torch.tensor(rng.standard_normal((6, 3))), torch.tensor(rng.standard_normal((5, 3)))
    labels, ref_labels = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 0, 1])
    x.requires_grad_(), refs.requires_grad_()
    value = wrap(loss_fn)(x, labels, ref_labels=ref_labels, ref_embeddings=refs)
    value.backward()
    expected_value, (gx, grefs) = loss_fn(
        x.detach().numpy(), labels.numpy(), ref_embeddings=refs.detach().numpy(), ref_labels=ref_labels.numpy()
    )
    assert value.item() == expected_value
    np.testing.assert_array_equal(x.grad.numpy(), gx)
    np.testing.assert_array_equal(refs.grad.numpy(), grefs)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("at", range(2), ids=MINED_PER_BATCH_IDS)
def test_index_arrays_mined_for_each_batch_pass_as_a_tuple_keyword(at, compiled):
    """triplets=(a, p, n) as a tuple of tensors at each call, eagerly and under torch.compile(fullgraph=True) (its
    op made by an eager call first, as a compiled region cannot register one): the value and gradient are
    metricloss's own."""
    loss_fn, hyper, x, labels, triplets = mined_per_batch(np.float64)[at]
    loss = wrap(loss_fn, **hyper)
    given = (torch.as_tensor(labels), tuple(torch.as_tensor(t) for t in triplets))
    if compiled:
        loss(torch.tensor(x), given[0], triplets=given[1])
        loss = torch.compile(loss, fullgraph=True, backend="aot_eager")
    embeddings = torch.tensor(x, requires_grad=True)
    value = loss(embeddings, given[0], triplets=given[1])
    value.backward()
    expected_value, expected_grad = loss_fn(x, labels, triplets=triplets, **hyper)
    assert value.item() == expected_value
    np.testing.assert_array_equal(embeddings.grad.numpy(), expected_grad)


def test_a_tensor_on_a_device_other_than_cpu_or_cuda_is_refused_by_name():
    """A tensor on another device (here "meta", which needs no GPU) is refused before the loss runs, naming the
    devices the adapter takes."""
    loss = wrap(ml.triplet_loss)
    with pytest.raises(ValueError, match=r"argument 0 is on meta; the PyTorch adapter takes CPU and CUDA tensors"):
        loss(torch.empty((4, 2), device="meta"), torch.tensor([0, 0, 1, 1]))


def test_opcheck_passes_for_one_and_several_differentiable_inputs():
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = wrap(ml.contrastive_loss, margin=1.5)
    loss(x, labels)
    torch.library.opcheck(next(iter(loss.ops.values())), ([x, labels],))
    refs = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    ref_loss = wrap(ml.triplet_loss, mining="all")
    ref_loss(x, labels, ref_embeddings=refs, ref_labels=torch.tensor([0, 1, 2, 3, 0, 1]))
    torch.library.opcheck(next(iter(ref_loss.ops.values())), ([x, labels, refs, torch.tensor([0, 1, 2, 3, 0, 1])],))
    ranking = wrap(ml.margin_ranking_loss, margin=0.1)
    scores = [torch.randn(5, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    float_targets = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    ranking(*scores, float_targets)
    torch.library.opcheck(next(iter(ranking.ops.values())), ([*scores, float_targets],))


def test_torch_compile_fullgraph_with_a_float_target_equals_metricloss():
    """The op (made by an eager call, as a compiled region cannot register one) has seen only int targets, so the
    compiled graph meets a float target its forward has not run on: the fake gives its slot a shape."""
    x1, x2 = (torch.randn(7, dtype=torch.float32, requires_grad=True) for _ in range(2))
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0])
    loss = wrap(ml.margin_ranking_loss, margin=0.2)
    loss(x1, x2, y.to(torch.int64))
    compiled = torch.compile(lambda a, b: loss(a, b, y), fullgraph=True, backend="aot_eager")
    compiled_value = compiled(x1, x2)
    compiled_grads = torch.autograd.grad(compiled_value, (x1, x2))
    expected_value, expected_grads = ml.margin_ranking_loss(
        x1.detach().numpy(), x2.detach().numpy(), y.numpy(), margin=0.2
    )
    assert compiled_value.item() == pytest.approx(expected_value, rel=1e-6)
    for got, expected in zip(compiled_grads, expected_grads, strict=True):
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("mining", ml.MININGS)
def test_torch_compile_fullgraph_equals_eager(mining):
    x = torch.randn(16, 4, dtype=torch.float32, requires_grad=True)
    labels = torch.arange(16) // 4
    loss = wrap(ml.triplet_loss, mining=mining, margin=0.5)
    compiled = torch.compile(lambda e: loss(e, labels), fullgraph=True, backend="aot_eager")
    eager_value = loss(x, labels)
    (eager_grad,) = torch.autograd.grad(eager_value, x)
    compiled_value = compiled(x)
    (compiled_grad,) = torch.autograd.grad(compiled_value, x)
    assert compiled_value.item() == eager_value.item()
    assert torch.equal(compiled_grad, eager_grad)


def test_errors_are_raised_in_the_callers_frame():
    with pytest.raises(
        TypeError, match=r"triplet_loss\(\) got an unexpected keyword argument 'marign'; did you mean margin=\?"
    ):
        wrap(ml.triplet_loss, marign=1.0)
    loss = wrap(ml.triplet_loss)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(3,\)"):
        loss(torch.randn(4, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match=r"argument 0 must be a torch\.Tensor; got ndarray"):
        loss(np.zeros((4, 2)), torch.tensor([0, 0, 1, 1]))
    # a hyper-parameter given to the wrapped function instead of to wrap: named, with the fix
    with pytest.raises(
        TypeError, match=r"symmetric=True is a hyper-parameter.*wrap\(multiple_negatives_ranking_loss, symmetric=True\)"
    ):
        wrap(ml.multiple_negatives_ranking_loss)(torch.randn(4, 2), torch.randn(4, 2), symmetric=True)


def test_double_backward_is_refused():
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    value = wrap(ml.contrastive_loss)(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(value, x, create_graph=True)


# --- two real processes ---------------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world_size, port, x, labels, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        rows = slice(rank * len(x) // world_size, (rank + 1) * len(x) // world_size)
        own = torch.tensor(x[rows], requires_grad=True)
        value = distributed(ml.triplet_loss, mining="all", margin=0.7)(own, torch.tensor(labels[rows]))
        value.backward()
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), value=value.item(), grad=own.grad.numpy())
    finally:
        dist.destroy_process_group()


def test_distributed_loss_on_two_gloo_processes_equals_one_process_on_the_whole_batch(tmp_path):
    rng = np.random.default_rng(3)
    x, labels = rng.standard_normal((16, 5)), np.repeat(np.arange(4), 4)
    rng.shuffle(labels)
    mp.spawn(_rank_main, args=(2, _free_port(), x, labels, str(tmp_path)), nprocs=2, join=True)
    expected_value, expected_grad = ml.triplet_loss(x, labels, mining="all", margin=0.7)
    for rank in range(2):
        result = np.load(tmp_path / f"rank{rank}.npz")
        assert float(result["value"]) == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(result["grad"], expected_grad[rank * 8 : (rank + 1) * 8], rtol=1e-12, atol=1e-15)


def test_an_array_argument_bound_as_a_number_is_refused_with_how_to_pass_it():
    with pytest.raises(TypeError, match=r"margin_loss: beta is an array argument, given to the wrapped function"):
        wrap(ml.margin_loss, beta=1.0)
    with pytest.raises(TypeError, match=r"circle_loss\(\) takes no m=; the margin m is margin= here"):
        wrap(ml.circle_loss, m=0.25)


def test_a_learnable_beta_with_references_gets_each_gradient():
    """margin_loss with a learnable β and references returns its gradients in signature order (embeddings, β,
    references), the order the adapter hands them out in; before issue 22 it returned β last and the call raised
    "margin_loss returned gradients of shapes [(4, 8), (3, 8), (1,)]"."""
    rng = np.random.default_rng(5)
    x, refs, beta = rng.standard_normal((4, 8)), rng.standard_normal((3, 8)), np.array([1.0])
    labels, ref_labels = np.array([0, 0, 1, 1]), np.array([0, 1, 1])
    expected_value, expected_grads = ml.margin_loss(
        x, labels, beta=beta, margin=0.1, nu=0.1, ref_embeddings=refs, ref_labels=ref_labels
    )
    xt, rt = torch.tensor(x, requires_grad=True), torch.tensor(refs, requires_grad=True)
    beta_t = torch.nn.Parameter(torch.tensor(beta))
    loss = wrap(ml.margin_loss, margin=0.1, nu=0.1)
    value = loss(xt, torch.tensor(labels), beta=beta_t, ref_embeddings=rt, ref_labels=torch.tensor(ref_labels))
    value.backward()
    assert value.item() == expected_value
    for t, expected in zip((xt, beta_t, rt), expected_grads, strict=True):
        np.testing.assert_array_equal(t.grad.numpy(), expected)
