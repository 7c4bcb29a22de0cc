"""The array seam (metricloss._arrays): every public function takes another array library's host arrays and gives
back that library's arrays, with NumPy's results. The losses are checked configuration by configuration in
test_contract.py (the array-kinds rung); here: the distances and their VJPs, the miners, the metrics, JAX arrays,
and the refusals."""

import array_api_strict
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import metricloss as ml


def _batch(dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 5)).astype(dtype), np.repeat(np.arange(4), 3)


def test_distance_matrices_and_their_vjps_take_and_return_torch_tensors():
    """The matrix, and the VJP's gradient for a torch cotangent, are torch tensors equal to NumPy's."""
    x, _ = _batch()
    g = np.random.default_rng(1).standard_normal((12, 12))
    for matrix, matrix_vjp in [
        (ml.pairwise_distances, ml.pairwise_distances_vjp),
        (ml.pairwise_similarities, ml.pairwise_similarities_vjp),
    ]:
        got = matrix(torch.from_numpy(x))
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), matrix(x))
        d, vjp = matrix_vjp(torch.from_numpy(x))
        grad = vjp(torch.from_numpy(g))
        assert isinstance(d, torch.Tensor) and isinstance(grad, torch.Tensor)
        np.testing.assert_array_equal(grad.numpy(), matrix_vjp(x)[1](g))


def test_miners_return_index_arrays_of_the_input_library():
    """Mined triplets and pairs come back as arrays of the embeddings' library, the indices NumPy finds."""
    x, labels = _batch()
    for kind, to_numpy in [(torch.from_numpy, torch.Tensor.numpy), (array_api_strict.asarray, np.from_dlpack)]:
        got = ml.mine_triplets(kind(x), kind(labels), kind="all")
        for got_indices, indices in zip(got, ml.mine_triplets(x, labels, kind="all"), strict=True):
            assert not isinstance(got_indices, np.ndarray)
            np.testing.assert_array_equal(to_numpy(got_indices), indices, strict=True)
    got_pairs = ml.mine_pairs(torch.from_numpy(x), labels)
    assert all(isinstance(indices, torch.Tensor) for indices in got_pairs)


def test_metrics_of_torch_tensors_are_the_same_floats():
    x, labels = _batch()
    assert ml.retrieval_metrics(torch.from_numpy(x), torch.from_numpy(labels)) == ml.retrieval_metrics(x, labels)
    assert ml.precision_at_1(torch.from_numpy(x), torch.from_numpy(labels)) == ml.precision_at_1(x, labels)


def test_jax_arrays_in_jax_arrays_out():
    """A JAX array (the adapters aside): read without a copy where JAX allows, the gradient a JAX array."""
    x, labels = _batch(np.float32)
    value, grad = ml.triplet_loss(x, labels)
    got_value, got_grad = ml.triplet_loss(jnp.asarray(x), jnp.asarray(labels))
    assert type(got_value) is float and got_value == value
    assert isinstance(grad, np.ndarray) and not isinstance(got_grad, np.ndarray)
    np.testing.assert_array_equal(np.asarray(got_grad), grad)


def test_a_tensor_that_requires_grad_is_read_and_gets_a_plain_tensor_back():
    """The loss returns the gradient itself: a leaf tensor that requires grad is read through .detach(), and the
    gradient is a tensor of its own, not attached to any graph."""
    x, labels = _batch()
    leaf = torch.tensor(x, requires_grad=True)
    value, grad = ml.contrastive_loss(leaf, torch.from_numpy(labels))
    assert value == ml.contrastive_loss(x, labels)[0]
    assert not grad.requires_grad and leaf.grad is None


def test_numpy_labels_beside_torch_embeddings_are_fine():
    x, labels = _batch()
    value, grad = ml.triplet_loss(torch.from_numpy(x), labels)
    assert isinstance(grad, torch.Tensor) and value == ml.triplet_loss(x, labels)[0]


def test_two_array_libraries_in_one_call_are_refused_by_name():
    x, labels = _batch()
    with pytest.raises(TypeError, match=r"one array library .* embeddings \(torch.Tensor\), labels \(array_api_strict"):
        ml.triplet_loss(torch.from_numpy(x), array_api_strict.asarray(labels))


def test_a_dtype_numpy_cannot_read_is_refused_by_name():
    x, labels = _batch(np.float32)
    with pytest.raises(TypeError, match=r"^embeddings must be an array NumPy can read .* torch.bfloat16"):
        ml.triplet_loss(torch.from_numpy(x).bfloat16(), labels)


def test_float16_from_another_library_gets_numpys_refusal():
    """float16 arrives as NumPy float16 and is refused as on NumPy input, naming the conversion."""
    x, labels = _batch(np.float32)
    with pytest.raises(TypeError, match=r"^embeddings must be a float32 or float64 array; got dtype float16"):
        ml.triplet_loss(torch.from_numpy(x).half(), labels)


# --- the engine's array-API lines, on another library's arrays -----------------------------------------------------


class _KernelsOnNumpyViews:
    """The Numba kernels on NumPy views of another library's host arrays, as the GPU path's kernels see numba views of
    its arrays (metricloss._kernels._gpu): so that the lines around the kernels run on that library's arrays."""

    def __init__(self):
        from metricloss._kernels import numba as kernels

        self._kernels = kernels

    def __getattr__(self, name):
        function = getattr(self._kernels, name)

        def on_views(*args):
            return function(*(_numpy_view(a) for a in args))

        return on_views


def _numpy_view(value):
    if isinstance(value, tuple):
        return tuple(_numpy_view(item) for item in value)
    if isinstance(value, torch.Tensor | type(array_api_strict.asarray(0.0))):
        return np.from_dlpack(value)
    return value


@pytest.mark.parametrize("kind", ["torch", "array-api-strict"])
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize("scale", [1.0, 1e30], ids=["plain", "rescaled"])
@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
def test_the_euclidean_vjps_array_api_lines_run_on_another_librarys_arrays(kind, distance, scale, references):
    """The Euclidean distance VJP's lines around its kernels (the GEMMs, the copies, the rescaling's checks, the
    pullback's column of ones) are the array API's: on torch tensors or array-api-strict arrays (the kernels on
    NumPy views of them) they give that library's arrays, equal to NumPy's to rounding (torch's GEMM is its own)."""
    from metricloss import _pairwise

    to_library = torch.from_numpy if kind == "torch" else array_api_strict.asarray
    rng = np.random.default_rng(0)
    x = scale * rng.standard_normal((9, 4))
    y = scale * rng.standard_normal((6, 4)) if references else None
    g = rng.standard_normal((9, 6 if references else 9))
    d, pullback = _pairwise.distance_matrix_vjp(x, y, distance, ml._kernels.get_kernels("numba"))
    grads = pullback(g.copy())
    library_y = None if y is None else to_library(y)
    got_d, got_pullback = _pairwise.distance_matrix_vjp(to_library(x), library_y, distance, _KernelsOnNumpyViews())
    got_grads = got_pullback(to_library(g.copy()))
    assert type(got_d) is type(to_library(x))
    np.testing.assert_allclose(np.from_dlpack(got_d), d, rtol=1e-12)
    for got, expected in zip(got_grads if references else (got_grads,), grads if references else (grads,), strict=True):
        assert type(got) is type(to_library(x))
        np.testing.assert_allclose(np.from_dlpack(got), expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
