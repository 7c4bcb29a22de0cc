"""GPU arrays taken in place (``metricloss._kernels._gpu``), in Numba's CUDA simulator, whose device arrays
(``cuda.to_device``) stand for a GPU input: triplet_loss on them equals the NumPy reference, returns device arrays,
moves only O(B) numbers between host and device, and refuses what it does not run on the GPU by name."""

import numpy as np
import pytest
from numba import cuda

import metricloss as ml
from metricloss._kernels import cuda as cuda_kernels
from metricloss._kernels.cuda import _device

MININGS = ("all", "all_semihard", "hard", "semihard")


def _batch(size, dtype, n_features=6, seed=0):
    rng = np.random.default_rng(seed + size)
    x = rng.standard_normal((size, n_features)).astype(dtype)
    x[1] = x[2]  # a duplicate row: zero distances and ties
    labels = rng.integers(0, 4, size)
    labels[0] = 9  # a class of one
    return x, labels


def _tolerance(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean"])
def test_triplet_loss_on_device_arrays_equals_numpy(mining, distance, dtype, size=17, scale=1.0):
    """Value and gradient on device embeddings (labels on the device too) equal backend="numpy"'s on host
    arrays; the gradient comes back as a device array of the input's dtype, the value as a Python float."""
    x, labels = _batch(size, dtype)
    x *= dtype(scale)
    value, grad = ml.triplet_loss(x, labels, mining=mining, distance=distance, backend="numpy")
    got_value, got_grad = ml.triplet_loss(cuda.to_device(x), cuda.to_device(labels), mining=mining, distance=distance)
    assert isinstance(got_value, float) and ml._arrays.is_gpu_array(got_grad)
    assert got_grad.dtype == dtype
    np.testing.assert_allclose(got_value, value, **_tolerance(dtype))
    np.testing.assert_allclose(got_grad.copy_to_host(), grad, **_tolerance(dtype) | {"atol": 1e-5 * scale})


@pytest.mark.parametrize("mining", MININGS)
def test_rows_too_large_for_the_squared_norms_are_rescaled_on_the_device(mining):
    """Entries near 1e6 in float32 (squared norms past 2^32): rescaled by an exact power of two, as on the host."""
    test_triplet_loss_on_device_arrays_equals_numpy(mining, "euclidean", np.float32, scale=1e6)


def test_options_that_do_not_change_the_device_path_agree_too():
    """Soft margins, kept incomplete anchors, explicit triplets and the other reductions."""
    x, labels = _batch(13, np.float64)
    options = [
        {"mining": "hard", "soft": True},
        {"mining": "all", "soft": True},
        {"mining": "semihard", "soft": True, "distance": "sqeuclidean"},
        {"mining": "hard", "incomplete_anchors": "keep"},
        {"mining": "all", "reduction": "sum"},
        {"mining": "semihard", "reduction": "mean_nonzero"},
        {"triplets": (np.array([1, 2, 3]), np.array([2, 1, 1]), np.array([0, 0, 4]))},
    ]
    labels[:5] = [9, 1, 1, 1, 2]
    for kwargs in options:
        value, grad = ml.triplet_loss(x, labels, backend="numpy", **kwargs)
        got_value, got_grad = ml.triplet_loss(cuda.to_device(x), labels, **kwargs)
        np.testing.assert_allclose(got_value, value, rtol=1e-10, err_msg=str(kwargs))
        np.testing.assert_allclose(got_grad.copy_to_host(), grad, rtol=1e-10, atol=1e-12, err_msg=str(kwargs))


@pytest.mark.parametrize("labels", [np.zeros(5, int), np.arange(5), np.zeros(1, int)])
def test_nothing_valid_gives_zero_and_zero_gradients_on_the_device(labels):
    """One class, all classes distinct, one sample: value 0 and a zero gradient, as device arrays."""
    x = np.random.default_rng(0).standard_normal((labels.size, 3))
    for mining in MININGS:
        value, grad = ml.triplet_loss(cuda.to_device(x), labels, mining=mining)
        assert value == 0.0
        np.testing.assert_array_equal(grad.copy_to_host(), np.zeros_like(x))


# The losses that take GPU embeddings, each with the options that change its path on the device.
GPU_LOSSES = {
    **{f"triplet {mining}": (ml.triplet_loss, {"mining": mining}) for mining in MININGS},
    "contrastive": (ml.contrastive_loss, {}),
    "contrastive, split weights": (ml.contrastive_loss, {"form": "linear", "split_reduction": True, "pos_margin": 0.2}),
    "lifted structure": (ml.lifted_structure_loss, {}),
    "generalized lifted, kept anchors": (ml.generalized_lifted_structure_loss, {"incomplete_anchors": "keep"}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize("name", [name for name in GPU_LOSSES if not name.startswith("triplet")])
def test_the_other_losses_on_device_arrays_equal_numpy(name, distance, dtype):
    """Contrastive and the two lifted structure losses on device embeddings: device arrays out, equal to the NumPy
    reference."""
    loss, kwargs = GPU_LOSSES[name]
    x, labels = _batch(17, dtype)
    value, grad = loss(x, labels, distance=distance, backend="numpy", **kwargs)
    got_value, got_grad = loss(cuda.to_device(x), cuda.to_device(labels), distance=distance, **kwargs)
    assert isinstance(got_value, float) and ml._arrays.is_gpu_array(got_grad)
    assert got_grad.dtype == dtype
    np.testing.assert_allclose(got_value, value, **_tolerance(dtype))
    np.testing.assert_allclose(got_grad.copy_to_host(), grad, **_tolerance(dtype))


@pytest.mark.parametrize("references", [False, True])
@pytest.mark.parametrize("name", GPU_LOSSES)
def test_only_small_arrays_cross_between_host_and_device(monkeypatch, name, references):
    """No host round trip: every copy the kernels' wrappers make between host and device is an O(B) array (class
    lists, per-anchor totals and log-sum-exps, chosen indices) or one per positive pair (semi-hard's choices),
    never the B×F embeddings, the B×B matrices or the gradient."""
    size, n_features = 17, 32
    x, labels = _batch(size, np.float64, n_features=n_features)
    loss, kwargs = GPU_LOSSES[name]
    n_positive_pairs = int(np.sum(labels[:, None] == labels[None, :]))
    if references:  # the batch against a reference set of its own rows, reversed
        kwargs = {**kwargs, "ref_embeddings": cuda.to_device(x[::-1].copy()), "ref_labels": labels[::-1].copy()}
    copied = []
    to_device, to_host = _device._to_device, _device._to_host

    def recording_to_device(a):
        if _device._is_host(a):
            copied.append(("to device", np.shape(a)))
        return to_device(a)

    def recording_to_host(d_a):
        copied.append(("to host", d_a.shape))
        return to_host(d_a)

    for module in (_device, *cuda_kernels.FAMILIES):  # each module that calls them holds its own reference
        for name, recording in (("_to_device", recording_to_device), ("_to_host", recording_to_host)):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, recording)
    loss(cuda.to_device(x), labels, **kwargs)
    assert copied  # the recording saw the wrappers' copies
    for direction, shape in copied:
        assert np.prod(shape) <= max(6 * size, 2 * n_positive_pairs), (direction, shape)


def test_gpu_arrays_refuse_what_does_not_run_on_the_gpu_by_name():
    """The CPU backends, the other distances, a reference set and the losses without a GPU path refuse device
    embeddings with the reason; bad device input is refused as host input is."""
    x, labels = _batch(6, np.float64)
    d_x = cuda.to_device(x)
    with pytest.raises(TypeError, match=r"embeddings is a GPU array .*backend='numba'"):
        ml.triplet_loss(d_x, labels, backend="numba")
    with pytest.raises(NotImplementedError, match=r"distance='cosine'"):
        ml.triplet_loss(d_x, labels, distance="cosine")
    with pytest.raises(TypeError, match=r"^ref_embeddings must be a GPU array, as embeddings is; got ndarray"):
        ml.triplet_loss(d_x, labels, ref_embeddings=x, ref_labels=labels)
    with pytest.raises(TypeError, match=r"^ref_embeddings must have the dtype of embeddings, float64"):
        ml.triplet_loss(d_x, labels, ref_embeddings=cuda.to_device(x.astype(np.float32)), ref_labels=labels)
    with pytest.raises(ValueError, match=r"^ref_labels must be given with ref_embeddings"):
        ml.triplet_loss(d_x, labels, ref_embeddings=d_x)
    with pytest.raises(ValueError, match=r"^ref_labels must have shape \(6,\) to match ref_embeddings"):
        ml.triplet_loss(d_x, labels, ref_embeddings=d_x, ref_labels=labels[:4])
    with pytest.raises(TypeError, match=r"^embeddings must be a host array here; got a GPU array \(FakeCUDAArray"):
        ml.quadruplet_loss(d_x, labels)
    with pytest.raises(ValueError, match=r"^embeddings must be finite"):
        ml.triplet_loss(cuda.to_device(np.where(np.eye(6, 6, dtype=bool), np.nan, x)), labels)
    with pytest.raises(TypeError, match=r"^embeddings must be a float32 or float64 array; got dtype int64"):
        ml.triplet_loss(cuda.to_device(np.ones((6, 3), np.int64)), labels)
    with pytest.raises(ValueError, match=r"^embeddings must be a 2-D array"):
        ml.triplet_loss(cuda.to_device(x[:, 0].copy()), labels)
    with pytest.raises(ValueError, match=r"^embeddings must not be empty; got an array of shape \(0, 3\)"):
        ml.triplet_loss(cuda.to_device(np.zeros((0, 3))), labels[:0])
    with pytest.raises(ValueError, match=r"^labels must have shape \(6,\)"):
        ml.triplet_loss(d_x, labels[:5])
    with pytest.raises(ValueError, match=r"^distance must be one of"):
        ml.triplet_loss(d_x, labels, distance="manhattan")


def record_launches(dtype):
    """Every kernel of the GPU path launched once in ``dtype`` (for the compile-to-PTX test)."""
    test_triplet_loss_on_device_arrays_equals_numpy("all", "euclidean", dtype, size=5, scale=1e6)
    test_triplet_loss_on_device_arrays_equals_numpy("hard", "euclidean", dtype, size=5)


def test_a_numba_device_array_on_a_gpu_is_refused_by_name():
    """A numba device array has no GEMM of its own: on a GPU (an array with ``__cuda_array_interface__`` that no
    array library claims) it is refused, naming the libraries that view it without a copy."""
    from metricloss._kernels._gpu import Device

    class NumbaDeviceArray:  # what array_api_compat sees of one: the interface, no namespace
        @property
        def __cuda_array_interface__(self):
            return {"shape": (2, 2), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(TypeError, match=r"embeddings is a numba device array.*torch.as_tensor.*cupy.asarray"):
        Device(NumbaDeviceArray())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean"])
def test_pairwise_distances_and_their_vjp_on_device_arrays_equal_numpy(distance, dtype):
    """The distance matrix and its VJP on device rows: device arrays out, equal to the NumPy reference (the
    duplicate rows' zero distances included); the cotangent is copied, not overwritten."""
    x, _ = _batch(17, dtype)
    g = np.random.default_rng(1).standard_normal((17, 17)).astype(dtype)
    expected_d, expected_vjp = ml.pairwise_distances_vjp(x, distance=distance, backend="numpy")
    got = ml.pairwise_distances(cuda.to_device(x), distance=distance)
    got_d, got_vjp = ml.pairwise_distances_vjp(cuda.to_device(x), distance=distance)
    d_g = cuda.to_device(g)
    got_grad = got_vjp(d_g)
    assert ml._arrays.is_gpu_array(got) and ml._arrays.is_gpu_array(got_grad)
    for a in (got, got_d):
        np.testing.assert_allclose(a.copy_to_host(), expected_d, **_tolerance(dtype))
    np.testing.assert_allclose(got_grad.copy_to_host(), expected_vjp(g), **_tolerance(dtype))
    np.testing.assert_array_equal(d_g.copy_to_host(), g)
    with pytest.raises(TypeError, match=r"^g must be a GPU array, as x is"):
        got_vjp(g)
    with pytest.raises(ValueError, match=r"^g must have the shape and dtype of the distance matrix"):
        got_vjp(cuda.to_device(g[:5]))
    with pytest.raises(TypeError, match=r"^y must be a GPU array, as x is"):
        ml.pairwise_distances(cuda.to_device(x), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", GPU_LOSSES)
def test_query_vs_reference_batches_on_device_arrays_equal_numpy(name, dtype):
    """Every loss with a GPU path against a GPU reference set (a reference class no query has, a query class no
    reference has): the two gradients come back as device arrays, equal to the NumPy reference's."""
    loss, kwargs = GPU_LOSSES[name]
    x, labels = _batch(9, dtype)
    ref, ref_labels = _batch(17, dtype, seed=5)
    ref_labels[3] = 7
    value, grads = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels, backend="numpy", **kwargs)
    got_value, got_grads = loss(
        cuda.to_device(x), labels, ref_embeddings=cuda.to_device(ref), ref_labels=cuda.to_device(ref_labels), **kwargs
    )
    np.testing.assert_allclose(got_value, value, **_tolerance(dtype))
    assert len(got_grads) == 2
    for got, expected in zip(got_grads, grads, strict=True):
        assert ml._arrays.is_gpu_array(got) and got.dtype == dtype
        np.testing.assert_allclose(got.copy_to_host(), expected, **_tolerance(dtype))


def test_pairwise_distances_between_two_sets_of_device_rows_equal_numpy():
    """D(x, y) and its VJP, (∂L/∂x, ∂L/∂y), for two GPU arrays."""
    x, _ = _batch(9, np.float64)
    y, _ = _batch(17, np.float64, seed=5)
    g = np.random.default_rng(2).standard_normal((9, 17))
    d, vjp = ml.pairwise_distances_vjp(x, y, backend="numpy")
    got_d, got_vjp = ml.pairwise_distances_vjp(cuda.to_device(x), cuda.to_device(y))
    np.testing.assert_allclose(got_d.copy_to_host(), d, rtol=1e-12, atol=1e-12)
    for got, expected in zip(got_vjp(cuda.to_device(g)), vjp(g), strict=True):
        np.testing.assert_allclose(got.copy_to_host(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ml.pairwise_distances(cuda.to_device(x), cuda.to_device(y)).copy_to_host(), d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [5, 17, 33])
def test_the_engines_elementwise_kernels_match_numpy_on_device_arrays(size, dtype):
    """row_sq_norms, scale and gather_entries on device arrays, in place, at sizes that are not multiples of the
    block size, equal the NumPy reference kernels (the squared norms to rounding: float64 sums in another order)."""
    from metricloss._kernels import numpy as reference

    rng = np.random.default_rng(size)
    x = rng.standard_normal((size, 7)).astype(dtype)
    s = rng.standard_normal((size, size)).astype(dtype)
    sq, expected_sq = cuda.device_array(size, dtype), np.empty(size, dtype)
    cuda_kernels.row_sq_norms(cuda.to_device(x), sq)
    reference.row_sq_norms(x, expected_sq)
    np.testing.assert_allclose(sq.copy_to_host(), expected_sq, rtol=1e-6 if dtype == np.float32 else 1e-14)
    scaled, expected = cuda.to_device(s), s.copy()
    cuda_kernels.scale(scaled, -140)  # into float32's subnormals: rounded once, as ldexp rounds
    reference.scale(expected, -140)
    np.testing.assert_array_equal(scaled.copy_to_host(), expected)
    rows, cols = rng.integers(0, size, 2 * size), rng.integers(0, size, 2 * size)
    np.testing.assert_array_equal(cuda_kernels.gather_entries(cuda.to_device(s), rows, cols), s[rows, cols])
