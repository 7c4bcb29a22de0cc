"""npair_loss and npair_pairs_loss beyond the contract: parity with pytorch-metric-learning's NPairsLoss (its pairs,
reducers, default normalisation and embedding regulariser), the labelled batch on P×K batches and its order
dependence (why its contract cases skip the permutation rung), 2-D label sets under hypothesis, numerical accuracy,
calling errors, memory, and the labelled batch through the PyTorch adapter."""

import math
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning import regularizers as pml_regularizers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from support import assert_same, pml_value_and_grad

import metricloss as ml
from metricloss import textbook
from metricloss.testing import TOLERANCES, assert_close, check_grad

DTYPES = [np.float32, np.float64]


def batch(rng, dtype, p=6, k=4, features=8, scale=0.5):
    """A P×K batch, shuffled, with a class of three and two singletons appended."""
    labels = np.concatenate([np.repeat(np.arange(p), k), [50, 50, 50, 60, 70]])
    labels = labels[rng.permutation(labels.size)]
    return (scale * rng.standard_normal((labels.size, features))).astype(dtype), labels


def dot(normalize=False):
    return pml_distances.DotProductSimilarity(normalize_embeddings=normalize)


# --- pytorch-metric-learning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(3))
def test_labelled_batch_equals_pml_npairs_loss_without_normalisation(dtype, seed):
    x, labels = batch(np.random.default_rng(seed), dtype)
    theirs = pml_value_and_grad(pml_losses.NPairsLoss(distance=dot()), x, labels)
    assert_same(ml.npair_loss(x, labels), theirs, dtype)


def test_the_pairs_are_pmls_first_two_samples_of_each_class():
    """The same (anchor, positive) pairs as PML's convert_to_pos_pairs_with_unique_labels; PML orders them by label,
    metricloss by anchor, which the loss does not see (pinned by the parity test above)."""
    _, labels = batch(np.random.default_rng(3), np.float64)
    anchors, positives = lmu.convert_to_pos_pairs_with_unique_labels(None, torch.as_tensor(labels))
    x = np.random.default_rng(4).standard_normal((labels.size, 3))
    pml_pairs = {(int(a), int(p)) for a, p in zip(anchors, positives, strict=True)}
    _, grad = ml.npair_loss(x, labels)
    assert {i for pair in pml_pairs for i in pair} == set(np.flatnonzero(np.abs(grad).sum(axis=1)))
    assert {(a, p) for a, p in pml_pairs} == {
        (min(np.flatnonzero(labels == c)[:2]), max(np.flatnonzero(labels == c)[:2]))
        for c in np.unique(labels)
        if np.count_nonzero(labels == c) >= 2
    }


@pytest.mark.parametrize("dtype", DTYPES)
def test_pmls_default_normalisation_is_our_cosine_similarity(dtype):
    """PML's default DotProductSimilarity() normalises the rows: similarity="cosine" on the raw rows (value and
    gradient), and the default dot product on unit rows; the dot product on the raw rows differs."""
    x, labels = batch(np.random.default_rng(5), dtype, scale=2.0)
    theirs = pml_value_and_grad(pml_losses.NPairsLoss(), x, labels)
    assert_same(ml.npair_loss(x, labels, similarity="cosine"), theirs, dtype)
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)
    assert ml.npair_loss(unit, labels)[0] == pytest.approx(theirs[0], rel=TOLERANCES[np.dtype(dtype)])
    assert ml.npair_loss(x, labels)[0] != pytest.approx(theirs[0], rel=0.01)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("reducer", "reduction"),
    [(pml_reducers.SumReducer(), "sum"), (pml_reducers.AvgNonZeroReducer(), "mean_nonzero")],
)
def test_pml_reducers(dtype, reducer, reduction):
    x, labels = batch(np.random.default_rng(6), dtype)
    theirs = pml_value_and_grad(pml_losses.NPairsLoss(distance=dot(), reducer=reducer), x, labels)
    assert_same(ml.npair_loss(x, labels, reduction=reduction), theirs, dtype)


def _pml_regularised(weight):
    regularizer = pml_regularizers.LpRegularizer(power=2)
    return pml_losses.NPairsLoss(distance=dot(), embedding_regularizer=regularizer, embedding_reg_weight=weight)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pmls_lp_regulariser_is_half_our_l2_reg_when_every_class_has_two_samples(dtype):
    """PML: w · mean over the B rows of ‖x‖²; here λ/N Σ over the N = B/2 pairs of ‖f‖² + ‖f⁺‖², so λ = w/2."""
    x, labels = batch(np.random.default_rng(7), dtype, p=8, k=2)
    labels = labels[np.isin(labels, np.arange(8))]
    x = x[: labels.size]
    theirs = pml_value_and_grad(_pml_regularised(0.3), x, labels)
    assert_same(ml.npair_loss(x, labels, l2_reg=0.15), theirs, dtype)


def test_pmls_lp_regulariser_also_weighs_the_samples_that_are_in_no_pair():
    """With K = 4 PML regularises all B rows (mean), metricloss the 2N picked ones: the difference is exactly
    w · mean‖x‖² over all rows minus λ/N Σ over the picked rows."""
    x, labels = batch(np.random.default_rng(8), np.float64)
    weight = 0.3
    pml_value, _ = pml_value_and_grad(_pml_regularised(weight), x, labels)
    plain, grad = ml.npair_loss(x, labels)
    picked = np.abs(grad).sum(axis=1) > 0
    ours, _ = ml.npair_loss(x, labels, l2_reg=weight / 2)
    assert ours - plain == pytest.approx(weight * np.mean(np.sum(x[picked] ** 2, axis=1)), rel=1e-12)
    assert pml_value - plain == pytest.approx(weight * np.mean(np.sum(x**2, axis=1)), rel=1e-9)
    assert pml_value != pytest.approx(ours, rel=1e-3)


def test_a_batch_without_a_pair_is_zero_for_pml_and_for_metricloss():
    x = np.random.default_rng(9).standard_normal((4, 3))
    labels = np.array([3, 1, 4, 2])
    value, _ = pml_value_and_grad(pml_losses.NPairsLoss(distance=dot()), x, labels)
    ours = ml.npair_loss(x, labels)
    assert value == 0.0 and ours[0] == 0.0 and not ours[1].any()


# --- the labelled-batch form on P×K batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("hyper", [{}, {"l2_reg": 0.1}, {"reduction": "sum"}, {"reduction": "mean_nonzero"}])
@pytest.mark.parametrize("seed", range(3))
def test_labelled_batch_equals_the_textbook_and_central_differences(hyper, seed):
    x, labels = batch(np.random.default_rng(20 + seed), np.float64, p=3, k=3, features=3)
    value, _ = ml.npair_loss(x, labels, **hyper)
    assert value == pytest.approx(textbook.npair_loss(x, labels, **hyper)[0], rel=1e-12)
    check_grad(lambda e: ml.npair_loss(e, labels, **hyper), x, rtol=1e-6)


def test_the_first_two_samples_of_a_class_pair_up_so_order_matters():
    """As in PML, a class's third sample is ignored; moving it to the front makes it the anchor."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.5], [0.3, 0.2], [-1.0, 0.4]])
    labels = np.array([0, 0, 0, 1, 1])
    value, grad = ml.npair_loss(x, labels)
    assert not grad[2].any() and grad[:2].any()
    order = np.array([2, 0, 1, 3, 4])
    moved_value, moved_grad = ml.npair_loss(x[order], labels[order])
    assert not moved_grad[2].any() and moved_grad[0].any()  # x[2] is now first, old row 1 is ignored
    assert moved_value == pytest.approx(textbook.npair_loss(x[order], labels[order])[0], rel=1e-12)
    assert moved_value != pytest.approx(value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_label_sets_are_finite_for_any_geometry(data):
    """Duplicated rows, ties and norms from 1e-30 to 1e6, float32 and float64: no NaN, no Inf, for the 2-D label
    sets that the contract's hypothesis rung does not draw (it draws BINARY arguments 1-D)."""
    dtype = data.draw(st.sampled_from(DTYPES))
    n, features = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    scale = 10.0 ** data.draw(st.sampled_from([-30, -8, 0, 4, 6]))
    grid = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0])
    x = scale * np.array(data.draw(st.lists(grid, min_size=2 * n * features, max_size=2 * n * features)))
    x = x.reshape(2 * n, features).astype(dtype)
    sets = np.array(data.draw(st.lists(st.integers(0, 1), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    value, grads = ml.npair_pairs_loss(x[:n], x[n:], sets, l2_reg=0.01)
    assert np.isfinite(value) and all(g.dtype == dtype and np.isfinite(g).all() for g in grads)


# --- numerical accuracy ----------------------------------------------------------------------------------------


def test_a_tiny_loss_keeps_its_digits():
    """z = diag(50) against 0 elsewhere: each row costs log1p(e⁻⁵⁰) ≈ 1.9e-22, which lse(z) − z_ii rounds to 0;
    the gradient −s ≈ −e⁻⁵⁰ at the target keeps its digits in float32 too."""
    anchors = positives = np.sqrt(50.0) * np.eye(2)
    expected = math.log1p(math.exp(-50))
    for dtype in DTYPES:
        value, (grad_anchors, _) = ml.npair_pairs_loss(anchors.astype(dtype), positives.astype(dtype))
        assert value == pytest.approx(expected, rel=TOLERANCES[np.dtype(dtype)])
        s = math.exp(-50) / (1 + math.exp(-50))
        expected_grad = 0.5 * np.array([[-s, s], [s, -s]]) * math.sqrt(50.0)
        assert_close(grad_anchors, expected_grad, rtol=TOLERANCES[np.dtype(dtype)])


def test_huge_logits_neither_overflow_nor_lose_the_loss():
    """Logits of 1e12: exp never sees more than 0, and a wrong ordering costs its full margin."""
    anchors = np.array([[1e6, 0.0], [0.0, 1e6]])
    positives = np.array([[0.0, 1e6], [1e6, 0.0]])  # each anchor's own positive is the far one
    value, (grad_anchors, grad_positives) = ml.npair_pairs_loss(anchors, positives)
    assert value == pytest.approx(1e12, rel=1e-12)  # log(1 + e^(1e12 − 0)) = 1e12
    assert np.isfinite(grad_anchors).all() and np.isfinite(grad_positives).all()


def test_l2_reg_is_tf_contribs_reg_lambda_over_four():
    """tf.contrib's npairs_loss adds 0.25 λ' (mean ‖f‖² + mean ‖f⁺‖²): l2_reg = λ'/4 adds the same."""
    rng = np.random.default_rng(12)
    anchors, positives = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    labels = np.array([0, 1, 0, 2, 3])
    reg_lambda = 0.002
    plain, _ = ml.npair_pairs_loss(anchors, positives, labels)
    regularised, _ = ml.npair_pairs_loss(anchors, positives, labels, l2_reg=reg_lambda / 4)
    contrib = 0.25 * reg_lambda * (np.mean(np.sum(anchors**2, 1)) + np.mean(np.sum(positives**2, 1)))
    assert regularised - plain == pytest.approx(contrib, rel=1e-10)


def test_distinct_labels_and_no_labels_are_the_same_loss():
    rng = np.random.default_rng(13)
    anchors, positives = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    value, grads = ml.npair_pairs_loss(anchors, positives)
    labelled_value, labelled_grads = ml.npair_pairs_loss(anchors, positives, np.array([9, 3, 4, 0, 1]))
    one_hot_value, one_hot_grads = ml.npair_pairs_loss(anchors, positives, np.eye(5, dtype=bool))
    assert labelled_value == pytest.approx(value, rel=1e-14) and one_hot_value == pytest.approx(value, rel=1e-14)
    for got, expected in zip((*labelled_grads, *one_hot_grads), (*grads, *grads), strict=True):
        assert_close(got, expected, rtol=1e-13)


def test_label_sets_equal_the_textbook_with_rows_without_labels():
    rng = np.random.default_rng(14)
    anchors, positives = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    sets = (rng.random((7, 4)) < 0.4).astype(bool)
    sets[[1, 4]] = False
    value, grads = ml.npair_pairs_loss(anchors, positives, sets)
    textbook_value, textbook_grads = textbook.npair_pairs_loss(anchors, positives, sets)
    assert value == pytest.approx(textbook_value, rel=1e-12)
    for got, expected in zip(grads, textbook_grads, strict=True):
        assert_close(got, expected, rtol=1e-9)
    check_grad(lambda a, p: ml.npair_pairs_loss(a, p, sets), anchors, positives, rtol=1e-6)


# --- calling it wrong --------------------------------------------------------------------------------------------


def test_calling_errors_say_how_to_call_it():
    """Each calling form refuses the other's arrays by name: rows where a labelled batch's labels belong point to
    npair_pairs_loss, class ids where the positives belong to npair_loss."""
    x = np.ones((4, 2))
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(TypeError, match=r"positives by the look: .* call npair_pairs_loss\(anchors, positives\)"):
        ml.npair_loss(x, x)
    with pytest.raises(TypeError, match=r"class ids by the look: for a labelled batch call npair_loss\(embeddings, "):
        ml.npair_pairs_loss(x, labels)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'labels'"):
        ml.npair_loss(x)
    with pytest.raises(ValueError, match=r"labels.ravel\(\)"):
        ml.npair_pairs_loss(x, x, labels[:, None])
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) to match embeddings; got \(4, 3\)"):
        ml.npair_loss(x, np.ones((4, 3), int))  # label sets need two views
    with pytest.raises(ValueError, match=r"labels must contain only the values \(0, 1\)"):
        ml.npair_pairs_loss(x, x, np.full((4, 3), 2))
    with pytest.raises(TypeError, match=r"labels must be an array of integer class ids; got the scalar 0\.5"):
        ml.npair_pairs_loss(x, x, 0.5)


# --- memory -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "matrices"), [("pairs", 2), ("classes", 2), ("labelled batch", 2), ("label sets", 10)]
)
def test_peak_memory_is_a_few_logit_matrices(form, matrices):
    """Two views with N = 1024 pairs: the N × N logits (overwritten by the cotangent) and O(N·K) besides; the
    labelled batch gathers its pairs first: within 2 N × N float32 matrices. Label sets add the N × N count matrix
    and its non-zero entries (indices and weights: most of them here): within 10."""
    n, features = 1024, 32
    rng = np.random.default_rng(15)
    anchors, positives = (rng.standard_normal((n, features)).astype(np.float32) for _ in range(2))
    labels = np.repeat(np.arange(n // 4), 4)
    calls = {
        "pairs": lambda: ml.npair_pairs_loss(anchors, positives),
        "classes": lambda: ml.npair_pairs_loss(anchors, positives, labels),
        "labelled batch": lambda: ml.npair_loss(np.concatenate([anchors, positives]), np.tile(np.arange(n), 2)),
        "label sets": lambda: ml.npair_pairs_loss(anchors, positives, rng.random((n, 8)) < 0.3),
    }
    tracemalloc.start()
    calls[form]()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= matrices * n * n * 4, f"peak {peak / 2**20:.1f} MiB"


# --- the PyTorch adapter ----------------------------------------------------------------------------------------


def test_the_labelled_batch_through_the_torch_adapter():
    """(embeddings, labels) as every batch loss takes them, the labels a tensor of ints; gradcheck in float64."""
    from metricloss.adapters.torch import wrap

    x, labels = batch(np.random.default_rng(16), np.float64, p=3, k=3, features=3)
    loss = wrap(ml.npair_loss, l2_reg=0.01)
    tensor = torch.tensor(x, requires_grad=True)
    label_tensor = torch.as_tensor(labels)
    assert torch.autograd.gradcheck(lambda t: loss(t, label_tensor), (tensor,))
