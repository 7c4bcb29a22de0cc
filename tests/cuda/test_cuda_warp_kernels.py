"""The WARP kernels of ``metricloss._kernels.cuda`` (``warp_violators``, ``warp_exact``) against the NumPy
reference in Numba's CUDA simulator, at item counts that are not multiples of the block size, in float32 and
float64: the same draws, violators and trial counts bit for bit, ties (z = 0, not a violator) included; and the WARP
losses end to end with backend="cuda" against backend="numpy".

The scores are multiples of 1/4 (and the embeddings too, with 3 features): every score, dot product and hinge is
exact in both dtypes and in any summation order, so that z = 0 happens, and the kernels must agree on it exactly.
"""

import numpy as np
import pytest

from metricloss._kernels import get_kernels
from metricloss._kernels import numpy as numpy_kernels
from metricloss.losses.warp import _Pairs, _rank_weights, warp_embedding_loss, warp_loss

cuda_kernels = get_kernels("cuda")
SIZES = (5, 17, 33)
DTYPES = (np.float32, np.float64)
N_QUERIES = 5


def _quarters(rng, shape, dtype):
    return (rng.integers(-8, 9, shape) / 4).astype(dtype)


def _problem(n_items, dtype, seed=0):
    """Query scores (and query and item embeddings for the dot model) in quarters, and a relevance matrix: query 0's
    pair with item 0 has z = 0 on item 1 (a tie, not a violator: margin 0.5 on the scores, 1 on the dot model) and
    two violators, items 2 and 3; query 1 has no positive; query 2's positive outscores every item
    by more than the margin (no violator: every negative is drawn); query 3 has one negative and query 4 none (no
    draw at all). And one seed per (query, positive) pair."""
    rng = np.random.default_rng(seed + n_items)
    queries, items = _quarters(rng, (N_QUERIES, 3), dtype), _quarters(rng, (n_items, 3), dtype)
    scores = _quarters(rng, (N_QUERIES, n_items), dtype)
    relevance = rng.random((N_QUERIES, n_items)) < 0.3
    relevance[0, :4] = True, False, False, False
    scores[0, :4] = 1.0, 0.5, 0.75, 0.75
    queries[0], items[:4] = (1.0, 0.0, 0.0), [[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 0.0, 0.0]]
    relevance[1] = False
    relevance[2] = False
    relevance[2, n_items - 1] = True
    scores[2, n_items - 1] = 10.0
    queries[2], items[n_items - 1] = (1.0, 0.0, 0.0), (10.0, 0.0, 0.0)  # the dot model's scores of query 2: y_j0
    relevance[3] = True
    relevance[3, n_items - 1] = False
    relevance[4] = True
    pairs = _Pairs.of(relevance, None)
    positives, offsets = pairs.positives, pairs.offsets
    seeds = rng.integers(0, 2**63, positives.size, dtype=np.int64)
    return scores, queries, items, relevance, offsets, positives, seeds


def _violators(kernels, a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle):
    n_pairs = positives.size
    outputs = np.full(n_pairs, -7, dtype=np.int64), np.full(n_pairs, -7, dtype=np.int64), np.full(n_pairs, -7.0)
    kernels.warp_violators(a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, *outputs)
    return outputs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_items", SIZES)
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dot", [False, True])
def test_warp_violators_matches_reference(n_items, dtype, shuffle, dot):
    """Each pair's violator, trial count and hinge: the same bits as numpy_kernels, with every negative drawable
    (max_trials = N) and with at most 2 trials; a pair without a violator gets -1, its trials and z = 0."""
    scores, queries, items, relevance, offsets, positives, seeds = _problem(n_items, dtype)
    a, b = (queries, items) if dot else (scores, scores)
    margin = 1.0 if dot else 0.5
    for max_trials in (n_items, 2):
        args = (a, b, dot, relevance, offsets, positives, seeds if shuffle else seeds[:0], margin, max_trials, shuffle)
        expected = _violators(numpy_kernels, *args)
        got = _violators(cuda_kernels, *args)
        for name, x, y in zip(("violators", "trials", "hinges"), got, expected, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)
        assert (expected[0] == -1).any() and (expected[0] >= 0).any()  # pairs with and without a violator


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_items", SIZES)
def test_warp_exact_matches_reference(n_items, dtype):
    """Each pair's rank (number of violators, z = 0 excluded) and hinge sum, and the dense cotangent, every entry
    written (the output starts as NaN); query 1 has no pair (a zero row), query 2's pair no violator."""
    scores, _, _, relevance, offsets, positives, _ = _problem(n_items, dtype)
    weights = _rank_weights("harmonic", n_items)
    expected = np.zeros(positives.size, np.int64), np.zeros(positives.size), np.full(scores.shape, np.nan)
    got = np.zeros(positives.size, np.int64), np.zeros(positives.size), np.full(scores.shape, np.nan)
    numpy_kernels.warp_exact(scores, relevance, offsets, positives, 0.5, weights, *expected)
    cuda_kernels.warp_exact(scores, relevance, offsets, positives, 0.5, weights, *got)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])  # sums of quarters: exact in any order
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-14, atol=1e-15)
    assert (expected[0] == 0).any() and (expected[0] > 1).any()


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sampling", ["random", "index", "exact"])
def test_warp_loss_cuda_equals_numpy(sampling, dtype):
    """warp_loss with backend="cuda": the value and gradient of backend="numpy" (the same draws from the same
    rng seed), float32 in, float32 out."""
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((5, 17)).astype(dtype)
    relevance = rng.random(scores.shape) < 0.25
    kwargs = {"sampling": sampling, "rng": None if sampling == "exact" else 11}
    value, grad = warp_loss(scores, relevance, backend="numpy", **kwargs)
    got_value, got_grad = warp_loss(scores, relevance, backend="cuda", **kwargs)
    assert got_grad.dtype == dtype
    assert value > 0
    np.testing.assert_allclose(got_value, value, **_tolerance(dtype))
    np.testing.assert_allclose(got_grad, grad, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sampling", ["random", "index", "exact"])
def test_warp_embedding_loss_cuda_equals_numpy(sampling, dtype):
    """warp_embedding_loss with backend="cuda" (the dot products in the sampling kernel): the value and both
    gradients of backend="numpy", float32 in, float32 out."""
    rng = np.random.default_rng(4)
    queries, items = rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((17, 4)).astype(dtype)
    relevance = rng.random((5, 17)) < 0.25
    kwargs = {"sampling": sampling, "max_trials": None if sampling == "exact" else 6, "rng": 12}
    value, grads = warp_embedding_loss(queries, items, relevance, backend="numpy", **kwargs)
    got_value, got_grads = warp_embedding_loss(queries, items, relevance, backend="cuda", **kwargs)
    assert value > 0
    np.testing.assert_allclose(got_value, value, **_tolerance(dtype))
    for got, expected in zip(got_grads, grads, strict=True):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))


def record_launches(dtype):
    """Run each WARP kernel test once, small, in ``dtype`` (for the compile-to-PTX test, which records the launched
    signatures): warp_violators with and without shuffling, on scores and on embeddings, and warp_exact."""
    for shuffle in (True, False):
        for dot in (False, True):
            test_warp_violators_matches_reference(5, dtype, shuffle, dot)
    test_warp_exact_matches_reference(5, dtype)
