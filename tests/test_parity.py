"""Parity with the real, installed references: torch.nn's four pair/triplet losses and pytorch-metric-learning's
ContrastiveLoss, in float64 and float32; and a test pinning each documented difference."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

import metricloss as ml
from metricloss.testing import assert_close

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum"]


def torch_value_and_grad(loss_fn, *arrays, constants=()):
    """torch's loss value and autograd gradients with respect to ``arrays``."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    value = loss_fn(*tensors, *(torch.as_tensor(c) for c in constants))
    value.backward()
    return value.item(), tuple(t.grad.numpy() for t in tensors)


def assert_same(ours, theirs, dtype):
    (value, grads), (expected_value, expected_grads) = ours, theirs
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert_close(np.float64(value), np.float64(expected_value), rtol=None if dtype == np.float64 else 1e-4)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert got.dtype == expected.dtype == dtype
        assert_close(got, expected)


@pytest.fixture
def rng():
    return np.random.default_rng(20061)


# --- torch.nn -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.7])
def test_margin_ranking_loss_equals_torch(rng, dtype, reduction, margin):
    x1, x2 = rng.standard_normal(50).astype(dtype), rng.standard_normal(50).astype(dtype)
    y = rng.choice([-1.0, 1.0], size=50).astype(dtype)
    theirs = torch_value_and_grad(
        lambda a, b, t: torch.nn.MarginRankingLoss(margin=margin, reduction=reduction)(a, b, t),
        x1,
        x2,
        constants=(y,),
    )
    assert_same(ml.margin_ranking_loss(x1, x2, y, margin=margin, reduction=reduction), theirs, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.4, -0.3])
def test_cosine_embedding_loss_equals_torch(rng, dtype, reduction, margin):
    x1, x2 = rng.standard_normal((40, 8)).astype(dtype), rng.standard_normal((40, 8)).astype(dtype)
    y = rng.choice([-1.0, 1.0], size=40).astype(dtype)
    theirs = torch_value_and_grad(
        lambda a, b, t: torch.nn.CosineEmbeddingLoss(margin=margin, reduction=reduction)(a, b, t),
        x1,
        x2,
        constants=(y,),
    )
    assert_same(ml.cosine_embedding_loss(x1, x2, y, margin=margin, reduction=reduction), theirs, dtype)


def test_cosine_embedding_loss_handles_zero_rows_as_torch_does():
    """torch's ε = 1e-12 on the squared norms: cos(0, v) = 0, and a finite ~1e6 gradient on the zero row."""
    x1 = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    x2 = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    y = np.array([1.0, -1.0])
    theirs = torch_value_and_grad(
        lambda a, b, t: torch.nn.CosineEmbeddingLoss(margin=-0.5)(a, b, t), x1, x2, constants=(y,)
    )
    ours = ml.cosine_embedding_loss(x1, x2, y, margin=-0.5)
    assert_same(ours, theirs, np.float64)
    assert ours[0] == 0.75  # (1 − 0) for the similar pair, [0 + 0.5]₊ for the dissimilar one; mean
    assert np.abs(ours[1][0][0]).max() > 1e5 and np.abs(ours[1][1][1]).max() > 1e5


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [1.0, 0.0, 2.5])
def test_hinge_embedding_loss_equals_torch(rng, dtype, reduction, margin):
    x = np.abs(2 * rng.standard_normal(60)).astype(dtype)
    y = rng.choice([-1.0, 1.0], size=60).astype(dtype)
    theirs = torch_value_and_grad(
        lambda a, t: torch.nn.HingeEmbeddingLoss(margin=margin, reduction=reduction)(a, t), x, constants=(y,)
    )
    assert_same(ml.hinge_embedding_loss(x, y, margin=margin, reduction=reduction), theirs, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_equals_torch(rng, dtype, reduction, p, swap):
    anchor = rng.standard_normal((30, 6))
    positive = (anchor + 0.7 * rng.standard_normal((30, 6))).astype(dtype)
    negative = (anchor + rng.standard_normal((30, 6))).astype(dtype)
    anchor = anchor.astype(dtype)
    theirs = torch_value_and_grad(
        lambda a, b, c: torch.nn.TripletMarginLoss(margin=1.0, p=p, swap=swap, reduction=reduction)(a, b, c),
        anchor,
        positive,
        negative,
    )
    assert_same(ml.triplet_margin_loss(anchor, positive, negative, p=p, swap=swap, reduction=reduction), theirs, dtype)


def test_exact_distance_differs_from_torchs_by_the_eps_in_the_difference(rng):
    anchor, positive, negative = (rng.standard_normal((20, 5)) for _ in range(3))
    torch_like, _ = ml.triplet_margin_loss(anchor, positive, negative)
    exact, _ = ml.triplet_margin_loss(anchor, positive, negative, eps=0.0)
    with_torch_eps = ml.triplet_margin_loss(anchor + 1e-6, positive, negative, eps=0.0)[0]  # a − p + eps, a − n + eps
    assert exact != torch_like
    assert with_torch_eps == pytest.approx(torch_like, rel=1e-12)
    assert abs(exact - torch_like) < 1e-5


def test_at_the_hinge_kink_torch_passes_the_gradient_and_metricloss_does_not():
    """The one stated convention: a hinge is active iff its argument is > 0. torch's clamp_min uses >= 0."""
    # margin ranking: −1·(1 − 1) + 0 = 0, exactly at the kink
    x1, x2, y = np.array([1.0]), np.array([1.0]), np.array([1.0])
    _, (g1, _) = ml.margin_ranking_loss(x1, x2, y)
    _, (t1, _) = torch_value_and_grad(lambda a, b, t: torch.nn.MarginRankingLoss()(a, b, t), x1, x2, constants=(y,))
    assert g1[0] == 0.0 and t1[0] == -1.0
    # hinge embedding: 1 − 1 = 0
    _, g = ml.hinge_embedding_loss(np.array([1.0]), np.array([-1.0]))
    _, (t,) = torch_value_and_grad(
        lambda a, t: torch.nn.HingeEmbeddingLoss()(a, t), np.array([1.0]), constants=(np.array([-1.0]),)
    )
    assert g[0] == 0.0 and t[0] == -1.0
    # triplet margin: 1 + 1 − 2 = 0
    a, p, n = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])
    _, (ga, _, _) = ml.triplet_margin_loss(a, p, n, eps=0.0)
    _, (ta, _, _) = torch_value_and_grad(lambda *t: torch.nn.TripletMarginLoss(eps=0.0)(*t), a, p, n)
    np.testing.assert_array_equal(ga, [[0.0, 0.0]])
    np.testing.assert_array_equal(ta, [[-1.0, 1.0]])


def test_a_swap_tie_gives_the_whole_gradient_to_the_anchor_negative_distance_torch_splits_it():
    a, p, n = np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.0, 0.5]])  # d_an = d_pn = √1.25
    value, (ga, _, _) = ml.triplet_margin_loss(a, p, n, eps=0.0, swap=True, margin=2.0)
    t_value, (ta, _, _) = torch_value_and_grad(
        lambda *t: torch.nn.TripletMarginLoss(margin=2.0, eps=0.0, swap=True)(*t), a, p, n
    )
    assert value == pytest.approx(t_value, rel=1e-15)
    np.testing.assert_allclose(ga, (a - p) / 1.0 - (a - n) / np.sqrt(1.25), rtol=1e-15)  # all on d(a, n)
    np.testing.assert_allclose(ta, (a - p) / 1.0 - 0.5 * (a - n) / np.sqrt(1.25), rtol=1e-12)  # half, half


def test_torch_refusals_metricloss_makes_explicit():
    with pytest.raises(ValueError, match="y must contain only the values"):
        ml.hinge_embedding_loss(np.array([1.0]), np.array([0.0]))  # torch silently mixes both parts
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ml.margin_ranking_loss(np.array([1.0]), np.array([0.0]), np.array([1]), margin=-1.0)


# --- pytorch-metric-learning ContrastiveLoss ------------------------------------------------------------------


def pml_value_and_grad(loss, x, labels):
    return torch_value_and_grad(lambda e, t: loss(e, t), x, constants=(labels,))


def _pml_contrastive(pos_margin, neg_margin, reducer, power=1):
    return pml_losses.ContrastiveLoss(
        pos_margin=pos_margin,
        neg_margin=neg_margin,
        reducer=reducer,
        distance=pml_distances.LpDistance(normalize_embeddings=False, power=power),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("pos_margin", "neg_margin"), [(0.0, 1.0), (0.25, 2.0)])
def test_contrastive_loss_equals_pml_contrastive_loss(rng, dtype, pos_margin, neg_margin):
    x = rng.standard_normal((48, 16)).astype(dtype)
    labels = rng.integers(0, 6, size=48)
    theirs = pml_value_and_grad(_pml_contrastive(pos_margin, neg_margin, pml_reducers.AvgNonZeroReducer()), x, labels)
    ours = ml.contrastive_loss(
        x,
        labels,
        form="linear",
        pos_margin=pos_margin,
        margin=neg_margin,
        reduction="mean_nonzero",
        split_reduction=True,
    )
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pml_with_the_mean_reducer_and_squared_distances(rng, dtype):
    x = (0.3 * rng.standard_normal((32, 8))).astype(dtype)
    labels = rng.integers(0, 4, size=32)
    theirs = pml_value_and_grad(_pml_contrastive(0.1, 1.5, pml_reducers.MeanReducer(), power=2), x, labels)
    ours = ml.contrastive_loss(
        x,
        labels,
        form="linear",
        distance="sqeuclidean",
        pos_margin=0.1,
        margin=1.5,
        reduction="mean",
        split_reduction=True,
    )
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_query_vs_reference_contrastive_equals_pml_with_ref_emb(rng, dtype):
    """With ``ref_emb`` PML pairs every query with every reference; so does ``ref_embeddings``."""
    x, refs = rng.standard_normal((20, 6)).astype(dtype), rng.standard_normal((28, 6)).astype(dtype)
    labels, ref_labels = rng.integers(0, 4, size=20), rng.integers(0, 4, size=28)
    loss = _pml_contrastive(0.2, 3.0, pml_reducers.AvgNonZeroReducer())
    theirs = torch_value_and_grad(
        lambda e, r, t, rt: loss(e, t, ref_emb=r, ref_labels=rt), x, refs, constants=(labels, ref_labels)
    )
    ours = ml.contrastive_loss(
        x,
        labels,
        form="linear",
        pos_margin=0.2,
        margin=3.0,
        reduction="mean_nonzero",
        split_reduction=True,
        ref_embeddings=refs,
        ref_labels=ref_labels,
    )
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pml_cosine_similarity_margins_above_one_are_negative_cosine_distance_margins(rng, dtype):
    """PML on cosine similarity s charges [m⁺ − s]₊ and [s − m]₊; here d = 1 − s, so its margins are 1 − them:
    ``pos_margin=1.2`` (every similar pair charged, some PML users' setting) is ``pos_margin=-0.2``."""
    x = rng.standard_normal((40, 8)).astype(dtype)
    labels = rng.integers(0, 5, size=40)
    loss = pml_losses.ContrastiveLoss(pos_margin=1.2, neg_margin=0.3, distance=pml_distances.CosineSimilarity())
    theirs = pml_value_and_grad(loss, x, labels)
    ours = ml.contrastive_loss(
        x,
        labels,
        form="linear",
        distance="cosine",
        pos_margin=1 - 1.2,
        margin=1 - 0.3,
        reduction="mean_nonzero",
        split_reduction=True,
    )
    assert_same(ours, theirs, dtype)


def test_pml_counts_ordered_pairs_so_its_sum_is_twice_ours(rng):
    x = rng.standard_normal((20, 4))
    labels = rng.integers(0, 3, size=20)
    theirs, _ = pml_value_and_grad(_pml_contrastive(0.0, 1.0, pml_reducers.SumReducer()), x, labels)
    ours, _ = ml.contrastive_loss(x, labels, form="linear", reduction="sum", split_reduction=True)
    assert theirs == pytest.approx(2 * ours, rel=1e-12)


def test_pml_default_normalises_the_embeddings_first(rng):
    x = 3 * rng.standard_normal((20, 4))
    labels = rng.integers(0, 3, size=20)
    theirs, _ = pml_value_and_grad(pml_losses.ContrastiveLoss(), x, labels)
    ours_raw, _ = ml.contrastive_loss(x, labels, form="linear", reduction="mean_nonzero", split_reduction=True)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ours_unit, _ = ml.contrastive_loss(unit, labels, form="linear", reduction="mean_nonzero", split_reduction=True)
    assert theirs == pytest.approx(ours_unit, rel=1e-12)
    assert abs(theirs - ours_raw) > 0.1


# --- TensorFlow Addons' contrastive_loss (its formula; TFA itself needs an older TensorFlow) -------------------


def test_tfa_form_is_twice_hadsell_and_matches_tfas_expression(rng):
    """TFA: y·d² + (1 − y)·max(m − d, 0)², averaged (its source, on distances d). Hadsell has the ½."""
    x1, x2 = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    y = rng.integers(0, 2, size=30)
    d = np.linalg.norm(x1 - x2, axis=1)
    tfa = np.mean(y * d**2 + (1 - y) * np.maximum(2.5 - d, 0) ** 2)
    squared, _ = ml.contrastive_pair_loss(x1, x2, y, form="squared", margin=2.5)
    hadsell, _ = ml.contrastive_pair_loss(x1, x2, y, form="hadsell", margin=2.5)
    assert squared == pytest.approx(tfa, rel=1e-12)
    assert squared == pytest.approx(2 * hadsell, rel=1e-12)
