"""The lifted structure losses beyond the contract: parity with pytorch-metric-learning's LiftedStructureLoss and
GeneralizedLiftedStructureLoss (values and gradients, float32 and float64) with each difference pinned; numpy =
numba on larger batches and with empty negative sets; stability for large margins and distances; O(B²) memory;
the Numba kernels as plain Python."""

import math
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers
from support import assert_same, lp, pk_batch, pml_value_and_grad, results_with_one_and_two_numba_threads

import metricloss as ml
from metricloss import textbook
from metricloss._kernels import numba as numba_kernels
from metricloss._kernels import numpy as numpy_kernels
from metricloss.testing import assert_close, check_grad

DTYPES = [np.float32, np.float64]
LOSSES = {"lifted": ml.lifted_structure_loss, "generalized": ml.generalized_lifted_structure_loss}
TEXTBOOK = {"lifted": textbook.lifted_structure_loss, "generalized": textbook.generalized_lifted_structure_loss}


# --- pytorch-metric-learning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("power", "distance"), [(1, "euclidean"), (2, "sqeuclidean")])
def test_lifted_equals_pml_lifted_structure_loss(dtype, power, distance):
    """PML's mean over ordered pairs of ½[J]₊² is the paper's 1/(2|P|) Σ over unordered pairs of [J]₊²."""
    x, labels = pk_batch(np.random.default_rng(0), dtype)
    theirs = pml_value_and_grad(pml_losses.LiftedStructureLoss(neg_margin=0.8, distance=lp(power)), x, labels)
    assert_same(ml.lifted_structure_loss(x, labels, margin=0.8, distance=distance), theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("power", "distance"), [(1, "euclidean"), (2, "sqeuclidean")])
def test_generalized_equals_pml_with_incomplete_anchors_kept(dtype, power, distance):
    x, labels = pk_batch(np.random.default_rng(1), dtype)
    labels[-1] = 99  # an anchor without positive: PML keeps it, with its empty positive log-sum-exp taken as 0
    loss = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1.2, distance=lp(power))
    theirs = pml_value_and_grad(loss, x, labels)
    ours = ml.generalized_lifted_structure_loss(x, labels, margin=1.2, distance=distance, incomplete_anchors="keep")
    assert_same(ours, theirs, dtype)


def test_pml_keeps_an_anchor_without_positive_which_the_paper_drops():
    """PML's value · B = (the paper's mean over complete anchors) · (B − 1) + [log Σ_n e^{m − D_an}]₊ of the
    incomplete anchor: the one difference between incomplete_anchors="keep" and "drop"."""
    x, labels = pk_batch(np.random.default_rng(2), np.float64)
    labels[-1] = 99
    theirs, _ = pml_value_and_grad(pml_losses.GeneralizedLiftedStructureLoss(distance=lp()), x, labels)
    dropped, _ = ml.generalized_lifted_structure_loss(x, labels)
    d_last = np.linalg.norm(x[:-1] - x[-1], axis=1)  # every other sample is a negative of the last
    kept_term = max(math.log(sum(math.exp(1.0 - d) for d in d_last)), 0.0)
    n = len(x)
    assert kept_term > 0
    assert theirs * n == pytest.approx(dropped * (n - 1) + kept_term, rel=1e-12)
    assert dropped == pytest.approx(textbook.generalized_lifted_structure_loss(x, labels)[0], rel=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_pml_margins_enter_only_as_their_difference(name):
    """J (and the generalized term) is shifted by neg_margin and by −pos_margin: PML's (1.3, 0.4) is margin 0.9."""
    x, labels = pk_batch(np.random.default_rng(3), np.float64)
    pml_class = {"lifted": pml_losses.LiftedStructureLoss, "generalized": pml_losses.GeneralizedLiftedStructureLoss}
    theirs = pml_value_and_grad(pml_class[name](neg_margin=1.3, pos_margin=0.4, distance=lp()), x, labels)
    extra = {"incomplete_anchors": "keep"} if name == "generalized" else {}
    assert_same(LOSSES[name](x, labels, margin=0.9, **extra), theirs, np.float64)


def test_pml_reducers_are_reductions_and_its_sum_counts_ordered_pairs():
    """AvgNonZeroReducer is "mean_nonzero" (for both losses); SumReducer sums PML's ordered pairs, twice the
    lifted loss's "sum" over unordered pairs, and is "sum" for the generalized loss's anchors."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(6), 4)
    centres = rng.standard_normal((6, 8)) * np.array([0.2, 0.2, 2, 2, 2, 2])[:, None]  # two classes overlap
    x = centres[labels] + 0.3 * rng.standard_normal((24, 8))
    j = _lifted_j(x, labels, margin=0.0)
    assert 0 < np.count_nonzero(j > 0) < j.size
    nonzero = pml_value_and_grad(
        pml_losses.LiftedStructureLoss(neg_margin=0.0, distance=lp(), reducer=pml_reducers.AvgNonZeroReducer()),
        x,
        labels,
    )
    assert_same(ml.lifted_structure_loss(x, labels, margin=0.0, reduction="mean_nonzero"), nonzero, np.float64)
    value, grad = ml.lifted_structure_loss(x, labels, margin=0.0, reduction="sum")
    summed = pml_value_and_grad(
        pml_losses.LiftedStructureLoss(neg_margin=0.0, distance=lp(), reducer=pml_reducers.SumReducer()), x, labels
    )
    assert_same((2 * value, 2 * grad), summed, np.float64)

    for reducer, reduction in ((pml_reducers.AvgNonZeroReducer(), "mean_nonzero"), (pml_reducers.SumReducer(), "sum")):
        loss = pml_losses.GeneralizedLiftedStructureLoss(neg_margin=0.0, distance=lp(), reducer=reducer)
        ours = ml.generalized_lifted_structure_loss(
            x, labels, margin=0.0, reduction=reduction, incomplete_anchors="keep"
        )
        assert_same(ours, pml_value_and_grad(loss, x, labels), np.float64)


def _lifted_j(x, labels, margin):
    """J_ij of every unordered positive pair, straight from the formula (unshifted: small values only)."""
    d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    sums = np.where(labels[:, None] != labels[None, :], np.exp(margin - d), 0.0).sum(axis=1)
    i, j = np.nonzero(np.triu(labels[:, None] == labels[None, :], 1))
    return np.log(sums[i] + sums[j]) + d[i, j]


@pytest.mark.parametrize("name", LOSSES)
def test_pml_default_distance_normalises_the_embeddings_and_metricloss_never_does(name):
    x, labels = pk_batch(np.random.default_rng(5), np.float64)
    pml_class = {"lifted": pml_losses.LiftedStructureLoss, "generalized": pml_losses.GeneralizedLiftedStructureLoss}
    theirs, _ = pml_value_and_grad(pml_class[name](), x, labels)
    extra = {"incomplete_anchors": "keep"} if name == "generalized" else {}
    on_unit_rows, _ = LOSSES[name](x / np.linalg.norm(x, axis=1, keepdims=True), labels, **extra)
    as_given, _ = LOSSES[name](x, labels, **extra)
    assert on_unit_rows == pytest.approx(theirs, rel=1e-12)
    assert as_given != pytest.approx(theirs, rel=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_generalized_with_references_equals_pml_ref_emb(dtype):
    rng = np.random.default_rng(6)
    x, labels = pk_batch(rng, dtype, p=5, k=3)
    refs, ref_labels = pk_batch(rng, dtype, p=6, k=4)
    labels[0] = 7  # a query without positive reference: kept
    theirs = pml_value_and_grad(
        pml_losses.GeneralizedLiftedStructureLoss(neg_margin=0.7, distance=lp()), x, labels, refs, ref_labels
    )
    ours = ml.generalized_lifted_structure_loss(
        x, labels, margin=0.7, incomplete_anchors="keep", ref_embeddings=refs, ref_labels=ref_labels
    )
    assert_same(ours, theirs, dtype)


def _pml_lifted_with_references(x, labels, refs, ref_labels, margin):
    """What PML's LiftedStructureLoss computes with ref_emb: for each (query i, reference j) of one class, the
    negatives are the entries (a, n) of the query-vs-reference matrix whose query a is i or has the index j."""
    d = np.linalg.norm(x[:, None, :] - refs[None, :, :], axis=2)
    negative = labels[:, None] != ref_labels[None, :]
    terms = []
    for i, j in zip(*np.nonzero(labels[:, None] == ref_labels[None, :]), strict=True):
        rows = [i] if j >= len(x) or j == i else [i, j]
        exponents = np.concatenate([margin - d[a][negative[a]] for a in rows])
        hinge = max(np.logaddexp.reduce(exponents) + d[i, j], 0.0) if exponents.size else max(d[i, j], 0.0)
        terms.append(0.5 * hinge**2)
    return float(np.mean(terms))


def test_lifted_with_references_differs_from_pml_which_mixes_query_and_reference_indices():
    """With ref_emb, PML compares a reference index with query indices (``a2 == p``), so a pair's negatives come
    from the query rows i and j; metricloss takes query i's row and reference j's column, as the paper's
    definition (negative pairs through either end of the positive pair) reads on a query-vs-reference batch."""
    rng = np.random.default_rng(7)
    x, labels = pk_batch(rng, np.float64, p=4, k=3)
    refs, ref_labels = pk_batch(rng, np.float64, p=4, k=4)
    theirs, _ = pml_value_and_grad(
        pml_losses.LiftedStructureLoss(neg_margin=1.0, distance=lp()), x, labels, refs, ref_labels
    )
    ours, _ = ml.lifted_structure_loss(x, labels, ref_embeddings=refs, ref_labels=ref_labels)
    assert theirs == pytest.approx(_pml_lifted_with_references(x, labels, refs, ref_labels, 1.0), rel=1e-12)
    textbook_value, _ = textbook.lifted_structure_loss(x, labels, ref_embeddings=refs, ref_labels=ref_labels)
    assert ours == pytest.approx(textbook_value, rel=1e-12)
    assert abs(ours - theirs) > 1e-3 * ours


# --- empty sets, extreme values -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_query_without_negatives_still_pairs_through_its_reference_column(backend):
    """Every reference is of class 0, so query rows of class 0 have an empty negative sum (log = −∞); their
    pairs' J is the reference column's log-sum-exp (over queries of class 1) plus D: finite, and differentiable."""
    rng = np.random.default_rng(8)
    x, refs = rng.standard_normal((6, 3)), rng.standard_normal((4, 3))
    labels, ref_labels = np.array([0, 0, 0, 1, 1, 2]), np.zeros(4, dtype=int)

    def loss(q, r):
        return ml.lifted_structure_loss(q, labels, ref_embeddings=r, ref_labels=ref_labels, backend=backend)

    value, _ = loss(x, refs)
    textbook_value, _ = textbook.lifted_structure_loss(x, labels, ref_embeddings=refs, ref_labels=ref_labels)
    assert value == pytest.approx(textbook_value, rel=1e-12) and value > 0
    check_grad(loss, x, refs, rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(("scale", "margin"), [(1.0, 800.0), (1e4, 1.0), (1e-6, 0.0)])
def test_large_margins_and_distances_neither_overflow_nor_underflow(backend, scale, margin):
    """e^{800 − D} overflows float64 and e^{1 − 10⁴} underflows to 0: the shifted log-sum-exps do neither, and
    the values and gradients equal the textbook's (itself shifted); tiny distances with no margin still give
    finite gradients."""
    x, labels = pk_batch(np.random.default_rng(9), np.float64, p=3, k=3, features=4, scale=scale)
    for name, twin in TEXTBOOK.items():
        value, grad = LOSSES[name](x, labels, margin=margin, backend=backend)
        textbook_value, textbook_grad = twin(x, labels, margin=margin)
        assert value == pytest.approx(textbook_value, rel=1e-9)
        assert_close(grad, textbook_grad, rtol=1e-9)
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0


# --- kernels: both backends, larger batches -------------------------------------------------------------------

_SHAPES = pytest.mark.parametrize(("p", "k"), [(12, 4), (2, 20), (5, 1)], ids=["PxK", "two-classes", "singletons"])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
@_SHAPES
def test_numba_equals_numpy_and_the_textbook(name, distance, p, k):
    x, labels = pk_batch(np.random.default_rng(10), np.float64, p=p, k=k, features=5)
    x[1] = x[0]  # a duplicate: a zero distance in the divisions
    value, grad = LOSSES[name](x, labels, distance=distance, backend="numba")
    reference_value, reference_grad = LOSSES[name](x, labels, distance=distance, backend="numpy")
    assert value == pytest.approx(reference_value, rel=1e-12, abs=1e-15)
    assert_close(grad, reference_grad, rtol=1e-12)
    textbook_value, textbook_grad = TEXTBOOK[name](x, labels, distance=distance)
    assert value == pytest.approx(textbook_value, rel=1e-12, abs=1e-15)
    assert_close(grad, textbook_grad, rtol=1e-9)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_numba_equals_numpy_with_references(name, distance):
    """100 queries and 90 references: the Numba kernels' 32 × 32 tiles do not divide the matrix."""
    rng = np.random.default_rng(11)
    x, labels = pk_batch(rng, np.float64, p=25, k=4, features=5)
    refs, ref_labels = pk_batch(rng, np.float64, p=30, k=3, features=5)
    value, grads = LOSSES[name](
        x, labels, distance=distance, ref_embeddings=refs, ref_labels=ref_labels, backend="numba"
    )
    reference_value, reference_grads = LOSSES[name](
        x, labels, distance=distance, ref_embeddings=refs, ref_labels=ref_labels, backend="numpy"
    )
    assert value == pytest.approx(reference_value, rel=1e-12)
    for got, expected in zip(grads, reference_grads, strict=True):
        assert_close(got, expected, rtol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
@_SHAPES
def test_gradients_on_larger_batches_match_central_differences(name, p, k):
    x, labels = pk_batch(np.random.default_rng(12), np.float64, p=p, k=k, features=6)
    check_grad(lambda e: LOSSES[name](e, labels, margin=0.5), x, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_transposed_kernels_copy_the_transpose(dtype):
    m = np.random.default_rng(16).standard_normal((70, 45)).astype(dtype)
    for kernels in (numpy_kernels, numba_kernels):
        t = kernels.transposed(m)
        assert t.flags.c_contiguous and t.dtype == dtype
        np.testing.assert_array_equal(t, m.T)


_DETERMINISM_SCRIPT = """
import json, sys
import numpy as np
import metricloss as ml
from metricloss._kernels.numba import _jit
_jit.SERIAL_BELOW = 0  # the parallel kernels, at any size
_jit.THREADS = "parallel"
rng = np.random.default_rng(13)
x = rng.standard_normal((96, 16)).astype(np.float32)
labels = np.repeat(np.arange(24), 4)
out = {}
for name in ("lifted_structure_loss", "generalized_lifted_structure_loss"):
    value, grad = getattr(ml, name)(x, labels)
    out[name] = [value.hex(), grad.tobytes().hex()]
json.dump(out, sys.stdout)
"""


def test_results_are_bitwise_equal_with_one_and_two_numba_threads():
    one_thread, two_threads = results_with_one_and_two_numba_threads(_DETERMINISM_SCRIPT)
    assert one_thread == two_threads


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("references", [False, True], ids=["within", "references"])
def test_peak_memory_is_a_few_distance_matrices_not_b_cubed(name, references):
    """At B = 768 one B³ float32 array would be 1.8 GB. Within a batch the cotangent is written over D (peak
    ≤ 2 B²); with references, Dᵀ's copy holds the columns' softmax weights (≤ 3 B·R)."""
    n, features = 768, 32
    rng = np.random.default_rng(14)
    x, refs = rng.standard_normal((2, n, features)).astype(np.float32)
    labels = np.repeat(np.arange(n // 4), 4)
    extra = {"ref_embeddings": refs, "ref_labels": labels} if references else {}
    LOSSES[name](x[:8], labels[:8], **({"ref_embeddings": refs[:8], "ref_labels": labels[:8]} if references else {}))
    tracemalloc.start()
    LOSSES[name](x, labels, **extra)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= (3 if references else 2) * n * n * x.itemsize, f"peak {peak / 2**20:.1f} MiB"


_PURE_PYTHON_SCRIPT = """
import warnings
import numpy as np
import metricloss as ml
warnings.simplefilter("error")
rng = np.random.default_rng(15)
x = rng.standard_normal((20, 3))
x[5] = x[4]  # a duplicate of another class: distance 0 in the divisions
refs = rng.standard_normal((9, 3))
labels, ref_labels = np.repeat(np.arange(5), 4), np.arange(9) % 3
for loss in (ml.lifted_structure_loss, ml.generalized_lifted_structure_loss):
    for distance in ("euclidean", "cosine"):
        for extra in ({}, {"ref_embeddings": refs, "ref_labels": ref_labels}):
            value, grad = loss(x, labels, distance=distance, backend="numba", **extra)
            reference_value, reference_grad = loss(x, labels, distance=distance, backend="numpy", **extra)
            assert abs(value - reference_value) <= 1e-12 * abs(reference_value), (loss, distance)
            pairs = zip(*(g if isinstance(g, tuple) else (g,) for g in (grad, reference_grad)))
            for got, expected in pairs:
                assert np.allclose(got, expected, rtol=1e-12, atol=1e-14), (loss, distance)
print("ok")
"""


def test_the_numba_kernels_are_valid_python_under_numba_disable_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run([sys.executable, "-c", _PURE_PYTHON_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
