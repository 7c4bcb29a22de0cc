"""The lifted structure kernels of ``metricloss._kernels.cuda`` (negative_softmax, lifted_pairs,
lifted_cotangent, generalized_lifted_rows, transposed) against the NumPy reference in Numba's CUDA simulator, at
batch sizes that are not multiples of the block size, in float32 and float64; and lifted_structure_loss and
generalized_lifted_structure_loss end to end with backend="cuda" against backend="numpy".

:func:`record_launches` runs each kernel test once, for the test that compiles every launched signature to PTX."""

import numpy as np
import pytest
from test_cuda_kernels import DTYPES, SIZES, _batch, _tolerance

from metricloss._batch import class_index
from metricloss._kernels import NO_SELF, get_kernels
from metricloss._kernels import numpy as numpy_kernels
from metricloss.losses.lifted import generalized_lifted_structure_loss, lifted_structure_loss

cuda_kernels = get_kernels("cuda")
MARGIN = 0.9
EXACT = {"rtol": 1e-12, "atol": 1e-12}  # totals computed in float64 in both backends, in another order


def _distances(x, y):
    return np.sqrt(((x[:, None].astype(np.float64) - y[None]) ** 2).sum(-1)).astype(x.dtype)


def _cases(size, dtype):
    """(d, labels, ref_labels, self_offset) of three batches:

    * the batch against itself (``_batch``: a lone-sample class, duplicate rows, so zero distances and ties);
    * its queries against a reference set (NO_SELF): a reference duplicates a query (a zero distance), a reference
      class that no query has, so queries of other classes have no positive (anchor class -1);
    * its queries against references all of one query's class: those queries have no negative (an empty
      log-sum-exp, −inf), the others no positive.

    The simulator is slow: at the largest size, the batch against itself only.
    """
    x, labels, d = _batch(size, dtype)
    yield d, labels, labels, 0
    if size >= 33:
        return
    rng = np.random.default_rng(size + 100)
    y = rng.standard_normal((size // 2 + 3, 3)).astype(dtype)
    y[0] = x[3]
    ref_labels = rng.integers(0, 4, len(y))
    ref_labels[-1] = 9
    yield _distances(x, y), labels, ref_labels, NO_SELF
    yield _distances(x, y), labels, np.full(len(y), labels[3]), NO_SELF


def _negative_lse(d, labels, ref_labels, divide=False):
    """The reference's λ over the rows of d and the softmax weights over d's negatives (other entries: d's)."""
    weights = d.copy()
    lse = numpy_kernels.negative_softmax(weights, class_index(labels, ref_labels), MARGIN, weights, divide)
    return lse, weights


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_negative_softmax_matches_reference(size, dtype):
    """λ per row (−inf where the anchor has no negative) and the softmax weights written over the negatives only:
    over d itself with the division by d (0 where d = 0), and over a separate array whose other entries stay."""
    empty_rows = 0
    for d, labels, ref_labels, _ in _cases(size, dtype):
        classes = class_index(labels, ref_labels)
        expected, got = d.copy(), d.copy()
        lse = numpy_kernels.negative_softmax(expected, classes, MARGIN, expected, True)
        got_lse = cuda_kernels.negative_softmax(got, classes, MARGIN, got, True)
        np.testing.assert_allclose(got_lse, lse, **EXACT)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        expected, got = np.full(d.shape, 7.0, dtype), np.full(d.shape, 7.0, dtype)
        numpy_kernels.negative_softmax(d, classes, MARGIN, expected, False)
        got_lse = cuda_kernels.negative_softmax(d, classes, MARGIN, got, False)
        np.testing.assert_allclose(got_lse, lse, **EXACT)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        assert np.any(got == 7.0)  # the positives' entries were left alone
        empty_rows += np.count_nonzero(np.isneginf(got_lse))
    assert empty_rows > 0 or size >= 33


def _lifted_inputs(d, labels, ref_labels):
    """λ of the rows and of the columns (from the reference), with both set to −inf for the members of one class
    of the rows, so that some pairs have both log-sum-exps empty (J = −inf) and some one of them."""
    row_lse, _ = _negative_lse(d, labels, ref_labels)
    col_lse, _ = _negative_lse(np.ascontiguousarray(d.T), ref_labels, labels)
    members = labels == labels[1]  # labels[1] is the class of the duplicate rows 1 and 2: at least two members
    row_lse[members] = -np.inf
    col_lse[ref_labels == labels[1]] = -np.inf
    return row_lse, col_lse


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_lifted_pairs_matches_reference(size, dtype):
    """Per anchor: Σ_p ½[J_ap]₊², #positive pairs, #{J > 0} and α_a, with empty log-sum-exps among the inputs."""
    for d, labels, ref_labels, self_offset in _cases(size, dtype):
        classes = class_index(labels, ref_labels)
        row_lse, col_lse = _lifted_inputs(d, labels, ref_labels)
        expected = numpy_kernels.lifted_pairs(d, classes, self_offset, row_lse, col_lse)
        got = cuda_kernels.lifted_pairs(d, classes, self_offset, row_lse, col_lse)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, **EXACT)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_lifted_cotangent_matches_reference(size, dtype):
    """The cotangent over the softmax weights: within one batch as lifted_structure_loss calls it (out is d, the
    column coefficients 0 and col_weights out itself), and against a reference set with the columns' weights
    (a column whose coefficient is 0 has NaN weights: they must not be read)."""
    columns_read = 0
    for d, labels, ref_labels, self_offset in _cases(size, dtype):
        classes = class_index(labels, ref_labels)
        row_lse, col_lse = _lifted_inputs(d, labels, ref_labels)
        row_coef = numpy_kernels.lifted_pairs(d, classes, self_offset, row_lse, col_lse)[3]
        if self_offset == 0:
            divide, col_coef = True, np.zeros(d.shape[1])
            expected = _negative_lse(d, labels, ref_labels, divide)[1]
            got = expected.copy()
            numpy_kernels.lifted_cotangent(
                expected, classes, 0, row_lse, col_lse, 2 * row_coef, col_coef, expected, expected, divide
            )
            cuda_kernels.lifted_cotangent(got, classes, 0, row_lse, col_lse, 2 * row_coef, col_coef, got, got, divide)
        else:
            divide = False
            classes_t = class_index(ref_labels, labels)
            col_weights = _negative_lse(np.ascontiguousarray(d.T), ref_labels, labels, divide)[1]
            col_coef = numpy_kernels.lifted_pairs(col_weights, classes_t, NO_SELF, col_lse, row_lse)[3]
            col_coef[0] = 0.0
            col_weights[col_coef == 0] = np.nan
            columns_read += np.count_nonzero(col_coef)
            expected = _negative_lse(d, labels, ref_labels, divide)[1]
            got = expected.copy()
            args = (self_offset, row_lse, col_lse, row_coef, col_coef, col_weights)
            numpy_kernels.lifted_cotangent(d, classes, *args, expected, divide)
            cuda_kernels.lifted_cotangent(d, classes, *args, got, divide)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
    assert columns_read > 0 or size >= 33  # the references' shares were read where their coefficients are not 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_generalized_lifted_rows_matches_reference(size, dtype):
    """The terms, the complete anchors and the cotangent: dropping incomplete anchors (−inf for an empty sum),
    written over d with the division by d; keeping them (0 for an empty sum), written over a separate array."""
    incomplete = 0
    for d, labels, ref_labels, self_offset in _cases(size, dtype):
        classes = class_index(labels, ref_labels)
        expected, got = d.copy(), d.copy()
        terms = numpy_kernels.generalized_lifted_rows(expected, classes, self_offset, MARGIN, False, expected, True)
        got_terms = cuda_kernels.generalized_lifted_rows(got, classes, self_offset, MARGIN, False, got, True)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        np.testing.assert_allclose(got_terms[0], terms[0], **EXACT)
        np.testing.assert_array_equal(got_terms[1], terms[1])
        incomplete += np.count_nonzero(~terms[1])
        expected, got = np.full(d.shape, 7.0, dtype), np.full(d.shape, 7.0, dtype)
        terms = numpy_kernels.generalized_lifted_rows(d, classes, self_offset, MARGIN, True, expected, False)
        got_terms = cuda_kernels.generalized_lifted_rows(d, classes, self_offset, MARGIN, True, got, False)
        np.testing.assert_allclose(got, expected, **_tolerance(dtype))
        np.testing.assert_allclose(got_terms[0], terms[0], **EXACT)
        np.testing.assert_array_equal(got_terms[1], terms[1])
    assert incomplete > 0  # the lone sample has no positive


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_transposed_matches_reference(size, dtype):
    """mᵀ as a new C-contiguous array of m's dtype, for a rectangular m and for a strided view."""
    m = np.random.default_rng(size).standard_normal((size, size // 2 + 3)).astype(dtype)
    for view in (m, m[::2, 1:]):
        got = cuda_kernels.transposed(view)
        assert got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, numpy_kernels.transposed(view))


def record_launches(dtype):
    """Each kernel test above once, at size 5: with ``_device._launch_log`` set, this records every launched
    (kernel, signature) of the lifted kernels in ``dtype``, for the test that compiles them to PTX."""
    test_negative_softmax_matches_reference(5, dtype)
    test_lifted_pairs_matches_reference(5, dtype)
    test_lifted_cotangent_matches_reference(5, dtype)
    test_generalized_lifted_rows_matches_reference(5, dtype)
    test_transposed_matches_reference(5, dtype)


# --- the losses end to end ----------------------------------------------------------------------------------------


def _end_to_end_tolerance(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def _loss_inputs(dtype, reference):
    """A labelled batch of 13 (a lone sample, a duplicate row) and, with ``reference``, its first 9 rows as queries
    against the other rows and 3 copies of queries as the references."""
    x, labels, _ = _batch(13, dtype)
    if not reference:
        return (x, labels), {}
    ref = np.concatenate([x[9:], x[3:6]])
    ref_labels = np.concatenate([labels[9:], labels[3:6]])
    return (x[:9], labels[:9]), {"ref_embeddings": ref, "ref_labels": ref_labels}


def _assert_same(got, expected, dtype):
    got_value, got_grads = got
    value, grads = expected
    np.testing.assert_allclose(got_value, value, **_end_to_end_tolerance(dtype))
    for a, b in zip(
        got_grads if isinstance(got_grads, tuple) else (got_grads,),
        grads if isinstance(grads, tuple) else (grads,),
        strict=True,
    ):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **_end_to_end_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reference", [False, True], ids=["batch", "reference"])
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_lifted_structure_loss_cuda_equals_numpy(distance, reference, dtype):
    """Value and gradient(s) of lifted_structure_loss with backend="cuda" equal backend="numpy"'s, within one batch
    and against a reference set; float32 in, float32 out."""
    args, kwargs = _loss_inputs(dtype, reference)
    kwargs.update(margin=MARGIN, distance=distance)
    expected = lifted_structure_loss(*args, backend="numpy", **kwargs)
    assert expected[0] > 0
    _assert_same(lifted_structure_loss(*args, backend="cuda", **kwargs), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reference", [False, True], ids=["batch", "reference"])
@pytest.mark.parametrize(("distance", "incomplete_anchors"), [("euclidean", "drop"), ("cosine", "keep")])
def test_generalized_lifted_structure_loss_cuda_equals_numpy(distance, incomplete_anchors, reference, dtype):
    """Value and gradient(s) of generalized_lifted_structure_loss with backend="cuda" equal backend="numpy"'s."""
    args, kwargs = _loss_inputs(dtype, reference)
    kwargs.update(margin=MARGIN, distance=distance, incomplete_anchors=incomplete_anchors)
    expected = generalized_lifted_structure_loss(*args, backend="numpy", **kwargs)
    assert expected[0] > 0
    _assert_same(generalized_lifted_structure_loss(*args, backend="cuda", **kwargs), expected, dtype)


@pytest.mark.parametrize("loss", [lifted_structure_loss, generalized_lifted_structure_loss])
def test_one_class_batch_is_zero_on_cuda(loss):
    """A batch of one class: no negative anywhere, every log-sum-exp over negatives empty: (0.0, zeros)."""
    x = _batch(5, np.float64)[0]
    value, grad = loss(x, np.zeros(5, dtype=np.int64), backend="cuda")
    assert value == 0.0
    np.testing.assert_array_equal(grad, np.zeros_like(x))
