"""Every CUDA kernel (``metricloss._kernels.cuda``) against the NumPy reference, in Numba's CUDA
simulator, at batch sizes that are not multiples of the block size, in float32 and float64 (test_cuda_ptx.py
compiles every launched signature to PTX)."""

import numpy as np
import pytest

from metricloss._batch import class_index
from metricloss._kernels import NO_SELF, get_kernels
from metricloss._kernels import numpy as numpy_kernels

cuda_kernels = get_kernels("cuda")
SIZES = (5, 17, 33)
DTYPES = (np.float32, np.float64)


def _batch(size, dtype, seed=0, n_classes=4):
    """Embeddings, labels with a lone sample among them, and their exact distance matrix (ties included)."""
    rng = np.random.default_rng(seed + size)
    labels = rng.integers(0, n_classes, size)
    labels[0] = n_classes  # a class of one: an anchor without positives
    x = rng.standard_normal((size, 3)).astype(dtype)
    x[1] = x[2]  # a duplicate row: zero distances and ties
    d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)).astype(dtype)
    return x, labels, d


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("root", [False, True])
def test_gram_to_distances_matches_reference(size, dtype, root):
    """The Gram → distance conversion, close pairs (the duplicate rows, the diagonal) recomputed directly."""
    x, _, _ = _batch(size, dtype)
    y = x[::-1].copy()
    sq_x, sq_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    ratio = 1e-3 if dtype == np.float32 else 1e-7
    expected, got = x @ y.T, x @ y.T
    numpy_kernels.gram_to_distances(expected, x, y, sq_x, sq_y, ratio, root)
    cuda_kernels.gram_to_distances(got, x, y, sq_x, sq_y, ratio, root)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_pair_scale_and_symmetrize_match_reference(size, dtype):
    """g / d with 0 where d = 0, and s + sᵀ, elementwise (every entry is owned by one thread)."""
    _, _, d = _batch(size, dtype)
    g = np.random.default_rng(size).standard_normal(d.shape).astype(dtype)
    expected, got = g.copy(), g.copy()
    numpy_kernels.pair_scale(expected, d, False)
    cuda_kernels.pair_scale(got, d, False)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    numpy_kernels.symmetrize(expected)
    cuda_kernels.symmetrize(got)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    np.testing.assert_array_equal(got, got.T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_scatter_adds_match_reference(size, dtype):
    """Repeated indices accumulate, rows and entries alike."""
    rng = np.random.default_rng(size)
    index = rng.integers(0, size, 3 * size)
    values = rng.standard_normal((index.size, 4)).astype(dtype)
    start = rng.standard_normal((size, 4)).astype(dtype)
    expected, got = start.copy(), start.copy()
    numpy_kernels.scatter_add_rows(expected, index, values)
    cuda_kernels.scatter_add_rows(got, index, values)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    cols = rng.integers(0, 4, index.size)
    expected, got = start.copy(), start.copy()
    numpy_kernels.scatter_add_entries(expected, index, cols, values[:, 0])
    cuda_kernels.scatter_add_entries(got, index, cols, values[:, 0])
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("squared", [False, True])
def test_pull_distance_pairs_matches_reference(size, dtype, squared):
    """The pairwise VJP into one gradient (grad_y is grad_x) and into two, zero-length pairs included."""
    x, _, _ = _batch(size, dtype)
    rng = np.random.default_rng(size)
    rows, cols = rng.integers(0, size, 2 * size), rng.integers(0, size, 2 * size)
    rows[0], cols[0] = 1, 2  # x[1] == x[2]: u = 0
    g = rng.standard_normal(rows.size)
    expected, got = np.zeros_like(x), np.zeros_like(x)
    numpy_kernels.pull_distance_pairs(x, x, rows, cols, g, squared, expected, expected)
    cuda_kernels.pull_distance_pairs(x, x, rows, cols, g, squared, got, got)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    y = x[::-1].copy()
    expected = np.zeros_like(x), np.zeros_like(y)
    got = np.zeros_like(x), np.zeros_like(y)
    numpy_kernels.pull_distance_pairs(x, y, rows, cols, g, squared, *expected)
    cuda_kernels.pull_distance_pairs(x, y, rows, cols, g, squared, *got)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("semihard_only", [False, True])
def test_batch_all_matches_reference(size, dtype, semihard_only):
    """The batch-all cotangent (divided by d, written over d itself) and the per-anchor totals, within one batch
    and against a reference set (self_offset NO_SELF); and the symmetric variant from the Gram matrix."""
    x, labels, d = _batch(size, dtype)
    classes = class_index(labels, labels)
    for self_offset in (0, NO_SELF) if size < 33 else (0,):  # the simulator is slow: one offset at the largest
        expected, got = d.copy(), d.copy()
        totals = numpy_kernels.batch_all_triplets(expected, classes, self_offset, 0.7, semihard_only, expected, True)
        got_totals = cuda_kernels.batch_all_triplets(got, classes, self_offset, 0.7, semihard_only, got, True)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        np.testing.assert_allclose(got_totals[0], totals[0], rtol=1e-12)
        for a, b in zip(got_totals[1:], totals[1:], strict=True):
            np.testing.assert_array_equal(a, b)
    sq = np.einsum("ij,ij->i", x, x)
    gram = (x, sq, 1e-3, True)
    expected, got = x @ x.T, x @ x.T
    totals = numpy_kernels.batch_all_symmetric(expected, classes, 0.7, semihard_only, expected, True, gram=gram)
    got_totals = cuda_kernels.batch_all_symmetric(got, classes, 0.7, semihard_only, got, True, gram=gram)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    np.testing.assert_allclose(got_totals[0], totals[0], **_tolerance(dtype))
    for a, b in zip(got_totals[1:], totals[1:], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("modes", [(0, 0), (1, 1), (0, 2), (2, 0)])
def test_select_per_anchor_matches_reference(size, dtype, modes):
    """Batch-hard (0, 0), easiest (1, 1) and the two semi-hard selections: the same indices, ties to the lowest."""
    _, labels, d = _batch(size, dtype)
    classes = class_index(labels, labels)
    for self_offset in (0, NO_SELF) if size < 33 else (0,):  # the simulator is slow: one offset at the largest
        expected = numpy_kernels.select_per_anchor(d, classes, self_offset, *modes)
        got = cuda_kernels.select_per_anchor(d, classes, self_offset, *modes)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_semihard_negatives_matches_reference(size, dtype):
    """FaceNet's semi-hard negative of every positive pair, -1 where the anchor has no negative."""
    _, labels, d = _batch(size, dtype)
    classes = class_index(labels, labels)
    for self_offset in (0, NO_SELF):
        same = labels[:, None] == labels[None, :]
        n_positives = same.sum(axis=1) - (self_offset == 0)
        offsets = np.concatenate([[0], np.cumsum(n_positives)])
        expected = np.empty(offsets[-1], np.int64), np.empty(offsets[-1], np.int64)
        got = np.empty(offsets[-1], np.int64), np.empty(offsets[-1], np.int64)
        numpy_kernels.semihard_negatives(d, classes, self_offset, offsets, *expected)
        cuda_kernels.semihard_negatives(d, classes, self_offset, offsets, *got)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def record_launches(dtype):
    """Every kernel of this file launched once in ``dtype`` (for test_cuda_ptx.py)."""
    test_gram_to_distances_matches_reference(5, dtype, True)
    test_pair_scale_and_symmetrize_match_reference(5, dtype)
    test_scatter_adds_match_reference(5, dtype)
    test_pull_distance_pairs_matches_reference(5, dtype, False)
    test_pull_distance_pairs_matches_reference(5, dtype, True)
    test_batch_all_matches_reference(5, dtype, True)
    test_select_per_anchor_matches_reference(5, dtype, (2, 0))
    test_semihard_negatives_matches_reference(5, dtype)
