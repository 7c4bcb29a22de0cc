"""The PyTorch adapter: every registered loss through torch.autograd.gradcheck, opcheck, torch.compile, and the
distributed loss with two real processes on the gloo backend."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from registry import DIFFERENTIABLE, REGISTRY, REGISTRY_IDS

import metricloss as ml
from metricloss.adapters.torch import distributed, wrap

cases = pytest.mark.parametrize("case", REGISTRY, ids=REGISTRY_IDS)


def tensors(case, seed=0, dtype=np.float64):
    arrays = case.make_inputs(np.random.default_rng(seed), dtype)
    return [
        torch.tensor(a, requires_grad=kind in DIFFERENTIABLE) for a, kind in zip(arrays, case.arg_kinds, strict=True)
    ]


@cases
def test_gradcheck_in_float64(case):
    inputs = tensors(case)
    loss = wrap(case.loss, **case.hyper)
    differentiable = [t for t in inputs if t.requires_grad]

    def only_floats(*floats):
        it = iter(floats)
        return loss(*[next(it) if t.requires_grad else t for t in inputs])

    assert torch.autograd.gradcheck(only_floats, differentiable)


@cases
def test_value_and_gradients_equal_metricloss_in_float32(case):
    inputs = tensors(case, seed=1, dtype=np.float32)
    value = wrap(case.loss, **case.hyper)(*inputs)
    value.backward()
    expected_value, expected_grads = case(*[t.detach().numpy() for t in inputs])
    expected_grads = expected_grads if isinstance(expected_grads, tuple) else (expected_grads,)
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected_value, rel=1e-6)
    for t, expected in zip([t for t in inputs if t.requires_grad], expected_grads, strict=True):
        assert t.grad.dtype == torch.float32
        np.testing.assert_array_equal(t.grad.numpy(), expected)


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
    with pytest.raises(TypeError, match="triplet_loss: got an unexpected keyword argument 'marign'"):
        wrap(ml.triplet_loss, marign=1.0)
    loss = wrap(ml.triplet_loss)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(3,\)"):
        loss(torch.randn(4, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match=r"argument 0 must be a torch\.Tensor; got ndarray"):
        loss(np.zeros((4, 2)), torch.tensor([0, 0, 1, 1]))


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
