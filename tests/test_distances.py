"""pairwise_distances, paired_distances and their VJPs: against scipy's cdist, by finite differences, and at the
numerically hard places (the diagonal, duplicated rows, rows 1e-7 apart, rows of norm 1e4, zero rows)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import metricloss as ml
from metricloss.testing import TOLERANCES, assert_close, check_grad

DTYPES = [np.float32, np.float64]
METRICS = ["euclidean", "sqeuclidean", "cosine"]
BACKENDS = ["numpy", "numba"]


def _cdist(x, y, metric):
    return cdist(x.astype(np.float64), y.astype(np.float64), metric=metric)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_equals_scipy_cdist(dtype, metric, backend):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 16)).astype(dtype), rng.standard_normal((25, 16)).astype(dtype)
    d = ml.pairwise_distances(x, y, distance=metric, backend=backend)
    assert d.dtype == dtype
    assert_close(d, _cdist(x, y, metric))
    d_self = ml.pairwise_distances(x, distance=metric, backend=backend)
    assert_close(d_self, _cdist(x, x, metric))
    assert np.all(np.diag(d_self) == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_1e_minus_7_apart_at_norm_1e4_keep_their_relative_accuracy(dtype, backend):
    """The GEMM form alone would return pure rounding here (‖x‖² ≈ 1e8 against d² ≈ 1e-14 · scale)."""
    rng = np.random.default_rng(1)
    base = 1e4 * rng.standard_normal((6, 8))
    offsets = 1e-7 * rng.standard_normal((6, 8)) * (1e4 if dtype == np.float32 else 1.0)
    x = np.concatenate([base, base + offsets]).astype(dtype)
    d = ml.pairwise_distances(x, backend=backend)
    assert_close(d, _cdist(x, x, "euclidean"))
    close = np.diag(d[:6, 6:])  # the pairs 1e-7 (float32: 1e-3) apart
    expected = np.diag(_cdist(x, x, "euclidean")[:6, 6:])
    np.testing.assert_allclose(close, expected, rtol=TOLERANCES[np.dtype(dtype)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_duplicated_rows_are_exactly_zero_apart(metric, backend):
    rng = np.random.default_rng(2)
    x = 100 * rng.standard_normal((5, 7))
    x = np.concatenate([x, x[::-1], 3 * x[:1]])  # duplicates, and a parallel row for the cosine
    d = ml.pairwise_distances(x, distance=metric, backend=backend)
    for i in range(5):
        assert d[i, 9 - i] == 0.0
    if metric == "cosine":  # a parallel row: zero up to the rounding of the two normalisations
        assert 0.0 <= d[0, 10] <= 1e-15


def test_numpy_and_numba_backends_agree_on_a_large_batch():
    x = np.random.default_rng(3).standard_normal((300, 64))
    x[150:] = x[:150] + 1e-6  # many pairs in the cancellation zone
    np.testing.assert_allclose(
        ml.pairwise_distances(x, backend="numba"),
        ml.pairwise_distances(x, backend="numpy"),
        rtol=1e-12,
        atol=0,
    )


def test_a_zero_row_has_cosine_distance_one_and_no_gradient():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    d, vjp = ml.pairwise_distances_vjp(x, distance="cosine")
    np.testing.assert_array_equal(d[0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(d[:, 0], [1.0, 1.0, 1.0])
    grad = vjp(np.ones_like(d))
    np.testing.assert_array_equal(grad[0], [0.0, 0.0])
    assert np.isfinite(grad).all()


def test_the_euclidean_gradient_at_distance_zero_is_zero():
    """Subgradient 0 at d = 0, by a branch: duplicates pull nothing from each other."""
    x = np.array([[1.0, 2.0], [1.0, 2.0]])
    _, vjp = ml.pairwise_distances_vjp(x)
    np.testing.assert_array_equal(vjp(np.ones((2, 2))), np.zeros((2, 2)))


def _vjp_as_loss(x, y, metric, g):
    """L = Σ g ∘ D(x, y), whose gradient is the VJP applied to g."""
    d, vjp = ml.pairwise_distances_vjp(x, y, distance=metric)
    return float(np.sum(g * d)), vjp(g)


@pytest.mark.parametrize("metric", METRICS)
def test_vjp_matches_central_differences(metric):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    g_self, g_cross = rng.standard_normal((6, 6)), rng.standard_normal((6, 5))
    check_grad(lambda a: _vjp_as_loss(a, None, metric, g_self), x)
    check_grad(lambda a, b: _vjp_as_loss(a, b, metric, g_cross), x, y)


@pytest.mark.parametrize("metric", METRICS)
def test_vjp_on_a_batch_large_enough_for_directional_checks(metric):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 16))
    g = rng.standard_normal((64, 64))
    check_grad(lambda a: _vjp_as_loss(a, None, metric, g), x, max_full_size=0, n_directions=8)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_paired_distances_equal_the_diagonal_of_pairwise(metric, dtype):
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((9, 4)).astype(dtype), rng.standard_normal((9, 4)).astype(dtype)
    d = ml.paired_distances(x1, x2, distance=metric)
    assert d.dtype == dtype
    assert_close(d, np.diag(_cdist(x1, x2, metric)))


def test_errors_name_the_argument():
    x = np.ones((3, 2))
    expected = "distance must be one of 'euclidean', 'sqeuclidean', 'cosine', 'dot', 'snr'; got 'l2'"
    with pytest.raises(ValueError, match=expected):
        ml.pairwise_distances(x, distance="l2")
    with pytest.raises(ValueError, match="y must have 2 features to match x; got shape"):
        ml.pairwise_distances(x, np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"g must have the shape of the distance matrix, \(3, 3\); got \(3,\)"):
        ml.pairwise_distances_vjp(x)[1](np.ones(3))
    with pytest.raises(ValueError, match="x2 must have the same shape as x1"):
        ml.paired_distances(x, np.ones((2, 2)))
    with pytest.raises(ValueError, match="backend must be one of 'numpy', 'numba', 'cuda'; got 'gpu'"):
        ml.pairwise_distances(x, backend="gpu")


def test_lists_are_accepted_and_mixed_dtypes_promote():
    d = ml.pairwise_distances([[0.0, 0.0], [3.0, 4.0]], np.array([[0.0, 0.0]], dtype=np.float32))
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d, [[0.0], [5.0]])


def test_scikit_learn_s_keyword_metric_is_refused_with_metricloss_s_name():
    """One name for the distance across metricloss: ``metric=`` (scikit-learn's) is not an alias; it gets the name."""
    x = np.eye(3)
    for function in (ml.pairwise_distances, ml.pairwise_distances_vjp, ml.recall_at_k):
        args = (x, np.arange(3)) if function is ml.recall_at_k else (x,)
        with pytest.raises(TypeError, match=r"takes no metric=; the distance is distance= here"):
            function(*args, metric="cosine")
    with pytest.raises(TypeError, match=r"paired_distances\(\) takes no metric=; the distance is distance= here"):
        ml.paired_distances(x, x, metric="cosine")


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("with_y", [False, True])
def test_similarities_and_their_vjp_match_brute_force_and_central_differences(similarity, with_y):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    unit = np.divide(x, np.linalg.norm(x, axis=1, keepdims=True), out=np.zeros_like(x), where=x.any(axis=1)[:, None])
    other, other_unit = (y, y / np.linalg.norm(y, axis=1, keepdims=True)) if with_y else (x, unit)
    expected = x @ other.T if similarity == "dot" else unit @ other_unit.T
    s = ml.pairwise_similarities(x, y if with_y else None, similarity=similarity)
    assert_close(s, expected, rtol=1e-12)
    g = rng.standard_normal(s.shape)

    def value_and_grad(*arrays):
        s, vjp = ml.pairwise_similarities_vjp(*arrays, similarity=similarity)
        return float(np.sum(g * s)), vjp(g)

    check_grad(value_and_grad, *((x, y) if with_y else (x,)))


def test_a_zero_row_has_cosine_similarity_zero_and_no_gradient():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    s, vjp = ml.pairwise_similarities_vjp(x, similarity="cosine")
    np.testing.assert_array_equal(s, [[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(vjp(np.ones((2, 2)))[0], [0.0, 0.0])


@pytest.mark.parametrize("threads", ["serial", "parallel"])
@pytest.mark.parametrize("n", [1, 5, 16, 17, 33, 100])
@pytest.mark.parametrize("dtype", DTYPES)
def test_symmetrize_kernel_is_s_plus_its_transpose_exactly(dtype, n, threads, monkeypatch):
    """The pullback's s ← s + sᵀ, both kernel modules, on sizes that are and are not multiples of the Numba
    kernel's tile (16), on one thread and in parallel: each entry is one rounded sum, so equal bit for bit."""
    from metricloss._kernels import numba as numba_kernels
    from metricloss._kernels import numpy as numpy_kernels
    from metricloss._kernels.numba import _jit

    monkeypatch.setattr(_jit, "SERIAL_BELOW", 0)
    monkeypatch.setattr(_jit, "THREADS", threads)
    s = np.random.default_rng(n).standard_normal((n, n)).astype(dtype)
    for kernels in (numpy_kernels, numba_kernels):
        out = s.copy()
        kernels.symmetrize(out)
        np.testing.assert_array_equal(out, s + s.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_row_norm_scale_and_gather_kernels_agree_between_numpy_and_numba(dtype):
    """row_sq_norms (float64 sums), scale by a power of two (bit for bit ldexp's, into the subnormals, past 2^1023
    and back) and gather_entries give the NumPy reference's results in the Numba kernels."""
    from metricloss._kernels import numba as compiled
    from metricloss._kernels import numpy as reference

    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 9)).astype(dtype)
    expected, got = np.empty(37, dtype), np.empty(37, dtype)
    reference.row_sq_norms(x, expected)
    compiled.row_sq_norms(x, got)
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(expected, np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)), rtol=1e-7)
    for exponent in (-1070, -140, 130, -3, 1063):
        expected, got = x.copy(), x.copy()
        with np.errstate(over="ignore"):
            reference.scale(expected, exponent)
        compiled.scale(got, exponent)
        np.testing.assert_array_equal(got, expected)
    tiny, expected = np.full((1, 1), 1e-320), np.full((1, 1), 1e-320)  # a subnormal row scaled up by 2^1063
    compiled.scale(tiny, 1063)
    reference.scale(expected, 1063)
    np.testing.assert_array_equal(tiny, expected)
    assert tiny[0, 0] == np.ldexp(1e-320, 1063)
    rows, cols = rng.integers(0, 37, 50), rng.integers(0, 9, 50)
    np.testing.assert_array_equal(compiled.gather_entries(x, rows, cols), reference.gather_entries(x, rows, cols))
    assert compiled.gather_entries(x, rows, cols).dtype == np.float64
