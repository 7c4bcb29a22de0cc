"""backend="cuda" end to end on host arrays (copied in and out), in Numba's CUDA simulator: the same value and
gradient as backend="numpy", and a clear refusal, never a CPU fallback, where a kernel has no CUDA version."""

import numpy as np
import pytest
from registry import REGISTRY

import metricloss as ml
from metricloss._kernels import BACKENDS, get_kernels
from metricloss.losses.triplet import triplet_loss


def _batch(size, dtype):
    rng = np.random.default_rng(size)
    return rng.standard_normal((size, 6)).astype(dtype), rng.integers(0, 4, size)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mining", ["all", "all_semihard", "hard", "semihard"])
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "dot", "snr"])
def test_triplet_loss_cuda_equals_numpy(mining, dtype, distance):
    """Value and gradient of triplet_loss with backend="cuda" equal backend="numpy"'s; float32 in, float32 out."""
    x, labels = _batch(17, dtype)
    value, grad = triplet_loss(x, labels, mining=mining, distance=distance, backend="numpy")
    got_value, got_grad = triplet_loss(x, labels, mining=mining, distance=distance, backend="cuda")
    assert got_grad.dtype == dtype
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(got_value, value, **tolerance)
    np.testing.assert_allclose(got_grad, grad, **tolerance)


def test_triplet_loss_cuda_with_reference_set_equals_numpy():
    """Anchors against a separate reference set (self_offset NO_SELF): the non-symmetric batch-all path."""
    x, labels = _batch(9, np.float64)
    ref, ref_labels = _batch(17, np.float64)
    kwargs = {"ref_embeddings": ref, "ref_labels": ref_labels, "mining": "all"}
    value, grads = triplet_loss(x, labels, backend="numpy", **kwargs)
    got_value, got_grads = triplet_loss(x, labels, backend="cuda", **kwargs)
    np.testing.assert_allclose(got_value, value, rtol=1e-10)
    for a, b in zip(got_grads, grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_cuda_backend_is_listed_and_refuses_kernels_it_lacks(monkeypatch):
    """ "cuda" is a backend; a kernel of the reference without a CUDA version (here one added to the numpy package
    for the test) raises NotImplementedError naming it, never runs on the CPU."""
    from metricloss._kernels import numpy as numpy_kernels

    assert "cuda" in BACKENDS
    cuda_kernels = get_kernels("cuda")
    assert cuda_kernels.__name__ == "metricloss._kernels.cuda"
    monkeypatch.setattr(numpy_kernels, "__all__", [*numpy_kernels.__all__, "a_kernel_without_cuda"])
    with pytest.raises(NotImplementedError, match=r"no CUDA version of the kernel 'a_kernel_without_cuda'"):
        cuda_kernels.a_kernel_without_cuda(np.zeros((2, 2)))
    for name in cuda_kernels.IMPLEMENTED:
        assert callable(getattr(cuda_kernels, name))


def test_missing_numba_cuda_names_the_extra(monkeypatch):
    """Without the numba-cuda package, backend="cuda" raises an ImportError naming pip install metricloss[cuda]."""
    from metricloss._kernels import _cuda

    real = _cuda.importlib.util.find_spec
    monkeypatch.setattr(_cuda.importlib.util, "find_spec", lambda name: None if name == "numba_cuda" else real(name))
    with pytest.raises(ImportError, match=r"pip install metricloss\[cuda\]"):
        get_kernels("cuda")


def test_no_gpu_without_simulator_is_refused(monkeypatch):
    """With no usable GPU and the simulator off, backend="cuda" raises a RuntimeError saying so and how to proceed."""
    from numba import cuda

    from metricloss._kernels import _cuda

    monkeypatch.setattr(_cuda, "simulator_enabled", lambda: False)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"no usable CUDA GPU.*NUMBA_ENABLE_CUDASIM=1"):
        get_kernels("cuda")


@pytest.mark.parametrize("case", [case for case in REGISTRY if case.backends], ids=lambda case: case.id)
def test_every_registered_loss_with_kernels_runs_on_the_cuda_backend_as_on_numpy(case):
    """Every loss configuration of the contract registry that takes a backend: backend="cuda" gives
    backend="numpy"'s value and gradients (float64; float32 in the kernel tests), never a NotImplementedError."""
    arrays = case.make_inputs(np.random.default_rng(9), np.float64)
    value, grad = case(*arrays, backend="numpy")
    got_value, got_grad = case(*arrays, backend="cuda")
    assert got_value == pytest.approx(value, rel=1e-9, abs=1e-12)
    grads, got_grads = (g if isinstance(g, tuple) else (g,) for g in (grad, got_grad))
    for got, expected in zip(got_grads, grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_the_miners_and_distances_run_on_the_cuda_backend_as_on_numpy():
    """Every public function that takes a backend besides the losses (the miners, the distance matrices and their
    pullbacks): backend="cuda" returns what backend="numpy" does (the same indices; distances to rounding)."""
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((17, 5)), rng.integers(0, 4, 17)
    ref, ref_labels = x[::-1].copy(), labels[::-1].copy()
    calls = {
        "triplet_counts": lambda b: ml.triplet_counts(x, labels, backend=b),
        "mine_triplets": lambda b: ml.mine_triplets(x, labels, backend=b),
        "mine_pairs": lambda b: ml.mine_pairs(x, labels, backend=b),
        "batch_triplets": lambda b: ml.batch_triplets(x, labels, backend=b),
        "mine_dataset": lambda b: ml.sampling.mine_dataset(x, labels, backend=b),
        "rank_window_negatives": lambda b: ml.sampling.rank_window_negatives(
            x, ref, n=2, lo=1, hi=5, query_labels=labels, ref_labels=ref_labels, backend=b, rng=0
        ),
        "distance_weighted_negatives": lambda b: ml.mining.distance_weighted_negatives(x, labels, backend=b, rng=0),
        "pairwise_distances": lambda b: ml.pairwise_distances(x, ref, backend=b),
        "pairwise_distances_vjp": lambda b: ml.pairwise_distances_vjp(x, backend=b)[1](np.ones((17, 17))),
        "pairwise_similarities": lambda b: ml.pairwise_similarities(x, similarity="cosine", backend=b),
    }
    for name, call in calls.items():
        expected, got = call("numpy"), call("cuda")
        if isinstance(expected, dict):  # triplet_counts: counts by kind
            assert got.keys() == expected.keys()
            expected, got = tuple(expected.values()), tuple(got.values())
        expected, got = (r if isinstance(r, tuple) else (r,) for r in (expected, got))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
