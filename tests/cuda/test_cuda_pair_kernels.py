"""The CUDA pair kernels (``contrastive_pairs``, ``scale_same_class``, ``soft_all_triplets``, ``quadruplet_pairs``)
against the NumPy reference in Numba's CUDA simulator, at batch sizes that are not multiples of the block size, in
float32 and float64; and contrastive_loss, the soft-margin triplet_loss and quadruplet_loss with backend="cuda"
against backend="numpy" end to end."""

import numpy as np
import pytest
from test_cuda_kernels import DTYPES, SIZES, _batch, _tolerance

from metricloss._batch import class_index
from metricloss._kernels import NO_SELF, get_kernels
from metricloss._kernels import numpy as numpy_kernels
from metricloss.losses.pairs import contrastive_loss
from metricloss.losses.quadruplet import quadruplet_loss
from metricloss.losses.triplet import triplet_loss

cuda_kernels = get_kernels("cuda")


def _labels_with_dissimilar_duplicate(size, dtype):
    """_batch's embeddings, distances and labels (a lone sample at 0, x[1] == x[2]), with samples 1 and 2 made
    of different classes: a dissimilar pair at distance 0, besides the similar ones on the diagonal."""
    x, labels, d = _batch(size, dtype)
    labels[2] = (labels[1] + 1) % 4
    return x, labels, d


def _reference_set(dtype):
    """A 9 × 17 distance matrix of anchors against other references (self_offset NO_SELF), one anchor of a class
    that no reference has (anchor_class -1), and its class arrays."""
    x, labels, _ = _batch(9, dtype, seed=1)
    ref, ref_labels, _ = _batch(17, dtype, seed=2)
    labels[3] = 7
    d = np.sqrt(((x[:, None].astype(np.float64) - ref[None]) ** 2).sum(-1)).astype(dtype)
    d[4, 5] = 0  # a reference at distance 0
    return d, class_index(labels, ref_labels)


def _assert_totals_equal(got, expected, dtype):
    """Per-anchor float sums to rounding (the kernels add in another order), counts exactly."""
    np.testing.assert_allclose(got[0], expected[0], **_tolerance(dtype))
    for a, b in zip(got[1:], expected[1:], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def _contrastive_cases(size):
    """(self_offset, form, divide) cases: every form and both offsets below 33 (the simulator is slow)."""
    return [(0, 0, True), (NO_SELF, 2, False), (0, 1, False)] if size < 33 else [(0, 0, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_contrastive_pairs_matches_reference(size, dtype):
    """The contrastive cotangent (written over d itself) and the per-anchor (similar, dissimilar) sums, active
    counts and pair counts, for each form, within one batch and with self_offset NO_SELF (the diagonal then a
    similar pair at distance 0), with a dissimilar pair at distance 0 and a lone sample."""
    _, labels, d = _labels_with_dissimilar_duplicate(size, dtype)
    classes = class_index(labels, labels)
    for self_offset, form, divide in _contrastive_cases(size):
        expected, got = d.copy(), d.copy()
        args = (classes, self_offset, 1.2, 0.3, form)
        totals = numpy_kernels.contrastive_pairs(expected, *args, expected, divide)
        got_totals = cuda_kernels.contrastive_pairs(got, *args, got, divide)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        _assert_totals_equal(got_totals, totals, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_pairs_with_reference_set_matches_reference(dtype):
    """Anchors against a separate reference set (a rectangular d, NO_SELF), one anchor with no similar reference."""
    d, classes = _reference_set(dtype)
    expected, got = np.empty_like(d), np.empty_like(d)
    totals = numpy_kernels.contrastive_pairs(d, classes, NO_SELF, 1.5, 0.0, 0, expected, True)
    got_totals = cuda_kernels.contrastive_pairs(d, classes, NO_SELF, 1.5, 0.0, 0, got, True)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    _assert_totals_equal(got_totals, totals, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_scale_same_class_matches_reference(size, dtype):
    """Every same-class entry scaled, every other entry left as it was; and anchors of no reference's class."""
    _, labels, _ = _batch(size, dtype)
    classes = class_index(labels, labels)
    start = np.random.default_rng(size).standard_normal((size, size)).astype(dtype)
    expected, got = start.copy(), start.copy()
    numpy_kernels.scale_same_class(expected, classes, 0.37)
    cuda_kernels.scale_same_class(got, classes, 0.37)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    if size == SIZES[0]:
        d, ref_classes = _reference_set(dtype)
        expected, got = d.copy(), d.copy()
        numpy_kernels.scale_same_class(expected, ref_classes, -2.5)
        cuda_kernels.scale_same_class(got, ref_classes, -2.5)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_soft_all_triplets_matches_reference(size, dtype):
    """The soft-margin batch-all cotangent (divided by d, written over d) and the per-anchor sums, nonzero counts
    and valid counts, within one batch and with self_offset NO_SELF; a margin so negative that some terms round to
    0 in the input dtype (below ``smallest``), and lose their slopes."""
    _, labels, d = _batch(size, dtype)
    classes = class_index(labels, labels)
    smallest = float(np.finfo(dtype).smallest_subnormal) / 2
    cases = [(0, 0.5), (NO_SELF, -103.0 if dtype == np.float32 else -744.0)] if size < 33 else [(0, 0.5)]
    for self_offset, margin in cases:
        expected, got = d.copy(), d.copy()
        totals = numpy_kernels.soft_all_triplets(expected, classes, self_offset, margin, smallest, expected, True)
        got_totals = cuda_kernels.soft_all_triplets(got, classes, self_offset, margin, smallest, got, True)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        _assert_totals_equal(got_totals, totals, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_all_triplets_with_reference_set_matches_reference(dtype):
    """Anchors against a separate reference set (a rectangular d, NO_SELF), one anchor with no positive."""
    d, classes = _reference_set(dtype)
    smallest = float(np.finfo(dtype).smallest_subnormal) / 2
    expected, got = np.empty_like(d), np.empty_like(d)
    totals = numpy_kernels.soft_all_triplets(d, classes, NO_SELF, 0.2, smallest, expected, False)
    got_totals = cuda_kernels.soft_all_triplets(d, classes, NO_SELF, 0.2, smallest, got, False)
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    _assert_totals_equal(got_totals, totals, dtype)


def _assert_quadruplet_equal(d, labels, margin2, divide, dtype):
    classes = class_index(labels, labels)
    expected, got = d.copy(), d.copy()
    value, n_active, n_terms = numpy_kernels.quadruplet_pairs(expected, classes, margin2, expected, divide)
    got_value, got_active, got_terms = cuda_kernels.quadruplet_pairs(got, classes, margin2, got, divide)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    np.testing.assert_allclose(got_value, value, rtol=1e-12)
    assert (got_active, got_terms) == (n_active, n_terms)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_quadruplet_pairs_matches_reference(size, dtype):
    """The quadruplet second term's cotangent (divided by d, written over d), value, active and total counts, with
    a lone sample and a duplicate row (zero distances)."""
    _, labels, d = _batch(size, dtype)
    _assert_quadruplet_equal(d, labels, 0.3, True, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin2", [0.0, 1.0])
def test_quadruplet_pairs_ties_match_reference(dtype, margin2):
    """Integer squared distances on a small grid, so that thresholds d + margin2 equal negative distances exactly
    (active iff d_lk < T, strictly), over several batch shapes: a lone sample, two classes, one class (no negative
    pair), all classes distinct (no positive pair)."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (12, 2)).astype(dtype)
    d = ((x[:, None] - x[None]) ** 2).sum(-1).astype(dtype)
    _assert_quadruplet_equal(d, rng.integers(0, 3, 12), margin2, False, dtype)
    for labels in ([0, 0, 1, 1, 1], [2, 2, 2, 2, 2], [0, 1, 2, 3, 4]):
        _assert_quadruplet_equal(d[:5, :5].copy(), np.array(labels), margin2, False, dtype)


def record_launches(dtype):
    """Run each kernel test above once at size 5 in ``dtype``, launching every kernel of this file with each of its
    argument signatures (for test_every_launched_signature_compiles_to_ptx, which records them)."""
    size = SIZES[0]
    test_contrastive_pairs_matches_reference(size, dtype)
    test_scale_same_class_matches_reference(size, dtype)
    test_soft_all_triplets_matches_reference(size, dtype)
    test_quadruplet_pairs_matches_reference(size, dtype)


# --- the losses end to end --------------------------------------------------------------------------------------


def _loss_batch(dtype, size=12, seed=3):
    """A labelled batch with a duplicate row (x[1] == x[2]) and a lone sample."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((size, 5)).astype(dtype)
    x[2] = x[1]
    labels = rng.integers(0, 3, size)
    labels[0] = 3
    return x, labels


def _assert_cuda_equals_numpy(loss, dtype, *args, **kwargs):
    """loss(..., backend="cuda") returns backend="numpy"'s value and gradient(s), gradients in the input dtype."""
    value, grad = loss(*args, backend="numpy", **kwargs)
    got_value, got_grad = loss(*args, backend="cuda", **kwargs)
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(got_value, value, **tolerance)
    for a, b in zip(*((g,) if isinstance(g, np.ndarray) else g for g in (got_grad, grad)), strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, **tolerance)
    return got_value


@pytest.mark.parametrize(
    "dtype, options",
    [
        (np.float32, {"form": "hadsell", "distance": "euclidean"}),
        (np.float64, {"form": "squared", "distance": "sqeuclidean", "pos_margin": 0.5, "split_reduction": True}),
        (np.float64, {"form": "linear", "distance": "cosine", "margin": 0.8, "reduction": "mean_nonzero"}),
        (np.float32, {"form": "linear", "distance": "dot", "pos_margin": -1.0, "margin": -0.5, "reduction": "sum"}),
        (np.float64, {"distance": "snr", "margin": 1.5, "reduction": "mean_nonzero", "split_reduction": True}),
    ],
)
def test_contrastive_loss_cuda_equals_numpy(dtype, options):
    """contrastive_loss through the CUDA kernels, every form, distance and reduction, split weights included (the
    scale_same_class path): the value and gradient of backend="numpy"."""
    x, labels = _loss_batch(dtype)
    assert _assert_cuda_equals_numpy(contrastive_loss, dtype, x, labels, **options) > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_loss_cuda_with_reference_set_equals_numpy(dtype):
    """Queries against a reference set: gradients for both, in argument order."""
    x, labels = _loss_batch(dtype, size=6)
    ref, ref_labels = _loss_batch(dtype, size=10, seed=4)
    kwargs = {"ref_embeddings": ref, "ref_labels": ref_labels, "split_reduction": True, "pos_margin": 0.2}
    assert _assert_cuda_equals_numpy(contrastive_loss, dtype, x, labels, **kwargs) > 0


@pytest.mark.parametrize(
    "dtype, options",
    [
        (np.float32, {"mining": "all", "distance": "euclidean"}),
        (np.float64, {"mining": "all", "distance": "cosine", "margin": 0.1}),
        (np.float64, {"mining": "all", "distance": "snr"}),
        (np.float32, {"mining": "hard", "distance": "sqeuclidean"}),
    ],
)
def test_soft_triplet_loss_cuda_equals_numpy(dtype, options):
    """The soft-margin triplet loss (soft_all_triplets for every triplet; batch-hard selection for "hard")."""
    x, labels = _loss_batch(dtype)
    assert _assert_cuda_equals_numpy(triplet_loss, dtype, x, labels, soft=True, **options) > 0


def test_soft_triplet_loss_cuda_with_reference_set_equals_numpy():
    """The soft-margin batch-all against a reference set (self_offset NO_SELF)."""
    x, labels = _loss_batch(np.float64, size=6)
    ref, ref_labels = _loss_batch(np.float64, size=10, seed=4)
    kwargs = {"ref_embeddings": ref, "ref_labels": ref_labels, "soft": True}
    assert _assert_cuda_equals_numpy(triplet_loss, np.float64, x, labels, **kwargs) > 0


@pytest.mark.parametrize(
    "dtype, options",
    [
        (np.float32, {"distance": "sqeuclidean"}),
        (np.float64, {"distance": "euclidean", "split_reduction": False, "reduction": "sum"}),
        (np.float64, {"adaptive_margins": True, "distance": "euclidean"}),
        (np.float32, {"adaptive_margins": True, "distance": "cosine", "margin2": 0.1, "reduction": "mean_nonzero"}),
    ],
)
def test_quadruplet_loss_cuda_equals_numpy(dtype, options):
    """quadruplet_loss through batch_all_triplets and quadruplet_pairs, with fixed and with adaptive margins."""
    x, labels = _loss_batch(dtype)
    assert _assert_cuda_equals_numpy(quadruplet_loss, dtype, x, labels, **options) > 0
