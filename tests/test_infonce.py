"""NT-Xent, SupCon and the multiple-negatives ranking loss beyond the contract: parity with pytorch-metric-learning
(NTXentLoss, SupConLoss: cosine and dot similarities, reducers, query-vs-reference batches), SimCLR's two-view
NT-Xent against a torch transcription of it, sentence-transformers' MultipleNegativesRankingLoss and
MultipleNegativesSymmetricRankingLoss against a torch transcription of their source (sentence-transformers is not
installed beside the pinned torch), each definitional difference pinned, stability at τ = 0.01 in float32, and
O(B²) memory."""

import math
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers
from support import as_tuple, assert_same, batch_with_a_singleton, pk_batch, pml_dot, pml_value_and_grad

import metricloss as ml
from metricloss import textbook
from metricloss.testing import TOLERANCES, assert_close

DTYPES = [np.float32, np.float64]


# --- NT-Xent: pytorch-metric-learning ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.2, 0.5])
def test_ntxent_equals_pml_ntxent_loss(dtype, temperature):
    """One term per ordered positive pair, the other positives left out, PML's MeanReducer over the pairs."""
    x, labels = batch_with_a_singleton(np.random.default_rng(0), dtype)
    theirs = pml_value_and_grad(pml_losses.NTXentLoss(temperature=temperature), x, labels)
    assert_same(ml.ntxent_loss(x, labels, temperature=temperature), theirs, dtype)


def test_ntxent_defaults_are_pml_defaults():
    x, labels = batch_with_a_singleton(np.random.default_rng(1), np.float64)
    assert_same(ml.ntxent_loss(x, labels), pml_value_and_grad(pml_losses.NTXentLoss(), x, labels), np.float64)


@pytest.mark.parametrize(
    ("reducer", "reduction"),
    [(pml_reducers.AvgNonZeroReducer, "mean_nonzero"), (pml_reducers.SumReducer, "sum")],
)
def test_ntxent_reducers_equal_pml_reducers(reducer, reduction):
    x, labels = batch_with_a_singleton(np.random.default_rng(2), np.float64)
    theirs = pml_value_and_grad(pml_losses.NTXentLoss(temperature=0.1, reducer=reducer()), x, labels)
    assert_same(ml.ntxent_loss(x, labels, temperature=0.1, reduction=reduction), theirs, np.float64)


def test_ntxent_with_dot_products_equals_pml():
    x, labels = batch_with_a_singleton(np.random.default_rng(3), np.float64)
    x *= 0.4
    theirs = pml_value_and_grad(pml_losses.NTXentLoss(temperature=0.5, distance=pml_dot()), x, labels)
    assert_same(ml.ntxent_loss(x, labels, temperature=0.5, similarity="dot"), theirs, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ntxent_with_references_equals_pml(dtype):
    """Queries against references: every reference a candidate; a query of a class no reference has is no term."""
    rng = np.random.default_rng(4)
    x, labels = batch_with_a_singleton(rng, dtype, n=10)
    refs, ref_labels = rng.standard_normal((14, 8)).astype(dtype), rng.integers(0, 6, 14)
    theirs = pml_value_and_grad(pml_losses.NTXentLoss(temperature=0.1), x, labels, refs, ref_labels)
    ours = ml.ntxent_loss(x, labels, temperature=0.1, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, dtype)


def test_ntxent_anchor_without_negatives_pays_nothing_but_counts_in_the_mean_as_pml():
    """References all of the query's class but one query: its pairs cost −log 1 = 0 and still count."""
    rng = np.random.default_rng(5)
    x, refs = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    labels, ref_labels = np.array([0, 0, 1]), np.array([0, 0, 0, 1, 1])
    theirs = pml_value_and_grad(pml_losses.NTXentLoss(temperature=0.3), x, labels, refs, ref_labels)
    ours = ml.ntxent_loss(x, labels, temperature=0.3, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, np.float64)


def test_ntxent_difference_pml_zero_for_one_positive_and_one_negative_pair():
    """PML returns 0 when each of its index arrays has at most one element; here that query's pair is a loss."""
    x, refs = np.array([[1.0, 0.2]]), np.array([[0.8, 0.5], [0.1, 1.0]])
    labels, ref_labels = np.array([0]), np.array([0, 1])
    theirs = pml_losses.NTXentLoss(temperature=0.5)(
        torch.tensor(x), torch.tensor(labels), ref_emb=torch.tensor(refs), ref_labels=torch.tensor(ref_labels)
    ).item()  # a constant 0, without a graph
    value, _ = ml.ntxent_loss(x, labels, temperature=0.5, ref_embeddings=refs, ref_labels=ref_labels)
    assert theirs == 0.0
    assert value == pytest.approx(
        textbook.ntxent_loss(x, labels, temperature=0.5, ref_embeddings=refs, ref_labels=ref_labels)[0], rel=1e-12
    )
    assert value > 0.1


def test_ntxent_difference_pml_saturates_where_a_pair_s_probability_underflows():
    """τ = 0.01, float32: a positive at cosine −1 against a negative at +1 has probability e^−400; PML's
    log(ratio + tiny) stops at −log(float32 tiny) = 87.3, here the term is the exact 400 (and finite)."""
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 0, 1])
    theirs, _ = pml_value_and_grad(pml_losses.NTXentLoss(temperature=0.01), x, labels)
    value, grad = ml.ntxent_loss(x, labels, temperature=0.01)
    # pairs (0, 1) and (1, 0), each with x_ap = LSE_N − z_ap = 100 − (−100) = 200 (row 1's negative is at −1:
    # x = −100 + 100 = 0 for it: softplus(0) = log 2).
    assert value == pytest.approx((200.0 + math.log(2)) / 2, rel=1e-6)
    assert theirs == pytest.approx((-math.log(np.finfo(np.float32).tiny) + math.log(2)) / 2, rel=1e-5)
    assert np.isfinite(grad).all()


# --- SimCLR's two-view NT-Xent ----------------------------------------------------------------------------------


def simclr_nt_xent(z1, z2, temperature):
    """SimCLR's NT-Xent as its paper (Algorithm 1) and reference code write it, in torch: 2N normalised
    projections, each one's softmax over the 2N − 1 others, its target the other view of its image; the mean over
    the 2N anchors."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, targets)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_simclr_two_views_are_ntxent_with_labels_0_to_n_twice(dtype, temperature):
    rng = np.random.default_rng(6)
    view1 = rng.standard_normal((12, 8)).astype(dtype)
    view2 = (view1 + 0.7 * rng.standard_normal((12, 8))).astype(dtype)
    z1, z2 = torch.tensor(view1, requires_grad=True), torch.tensor(view2, requires_grad=True)
    value = simclr_nt_xent(z1, z2, temperature)
    value.backward()
    theirs = (value.item(), np.concatenate([z1.grad.numpy(), z2.grad.numpy()]))
    ours = ml.ntxent_loss(np.concatenate([view1, view2]), np.tile(np.arange(12), 2), temperature=temperature)
    assert_same(ours, theirs, dtype)


def test_with_one_positive_per_anchor_ntxent_is_supcon():
    """Leaving the other positives out of the denominator (NT-Xent) or not (SupCon) is the same with one positive."""
    rng = np.random.default_rng(7)
    x, labels = rng.standard_normal((16, 5)), np.tile(np.arange(8), 2)
    ntxent, supcon = ml.ntxent_loss(x, labels, temperature=0.2), ml.supcon_loss(x, labels, temperature=0.2)
    assert ntxent[0] == pytest.approx(supcon[0], rel=1e-12)
    assert_close(ntxent[1], supcon[1], rtol=1e-11)


def test_ntxent_leaves_the_other_positives_out_and_supcon_keeps_them():
    x, labels = pk_batch(np.random.default_rng(8), np.float64, p=3, k=4)
    assert ml.ntxent_loss(x, labels, temperature=0.2)[0] == pytest.approx(
        textbook.ntxent_loss(x, labels, temperature=0.2)[0], rel=1e-12
    )
    assert ml.supcon_loss(x, labels, temperature=0.2)[0] == pytest.approx(
        textbook.supcon_loss(x, labels, temperature=0.2)[0], rel=1e-12
    )
    assert ml.ntxent_loss(x, labels, temperature=0.2)[0] < ml.supcon_loss(x, labels, temperature=0.2)[0]


# --- SupCon: pytorch-metric-learning ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "mean_nonzero"])
def test_supcon_equals_pml_supcon_loss(dtype, temperature, reduction):
    """PML's default AvgNonZeroReducer over the anchors; every anchor with a positive has a term > 0 here, so
    "mean" (over the anchors with a positive) is the same number."""
    x, labels = batch_with_a_singleton(np.random.default_rng(9), dtype)
    theirs = pml_value_and_grad(pml_losses.SupConLoss(temperature=temperature), x, labels)
    assert_same(ml.supcon_loss(x, labels, temperature=temperature, reduction=reduction), theirs, dtype)


def test_supcon_defaults_and_sum_and_dot_equal_pml():
    x, labels = batch_with_a_singleton(np.random.default_rng(10), np.float64)
    assert_same(ml.supcon_loss(x, labels), pml_value_and_grad(pml_losses.SupConLoss(), x, labels), np.float64)
    summed = pml_losses.SupConLoss(reducer=pml_reducers.SumReducer())
    assert_same(ml.supcon_loss(x, labels, reduction="sum"), pml_value_and_grad(summed, x, labels), np.float64)
    x *= 0.4
    dot = pml_losses.SupConLoss(temperature=0.5, distance=pml_dot())
    ours = ml.supcon_loss(x, labels, temperature=0.5, similarity="dot")
    assert_same(ours, pml_value_and_grad(dot, x, labels), np.float64)


def test_supcon_difference_pml_mean_reducer_counts_anchors_without_positives():
    """PML's MeanReducer divides by every anchor (those without positives give 0 terms); here "mean" is over the
    anchors with a positive (the paper's A): the values differ by that ratio."""
    x, labels = batch_with_a_singleton(np.random.default_rng(11), np.float64)
    labels[-3:] = [97, 98, 99]  # three singletons
    with_positives = np.count_nonzero([np.count_nonzero(labels == label) > 1 for label in labels])
    theirs, _ = pml_value_and_grad(pml_losses.SupConLoss(reducer=pml_reducers.MeanReducer()), x, labels)
    value, _ = ml.supcon_loss(x, labels)
    assert theirs == pytest.approx(value * with_positives / labels.size, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_supcon_with_references_equals_pml(dtype):
    rng = np.random.default_rng(12)
    x, labels = batch_with_a_singleton(rng, dtype, n=10)
    refs, ref_labels = rng.standard_normal((14, 8)).astype(dtype), rng.integers(0, 6, 14)
    theirs = pml_value_and_grad(pml_losses.SupConLoss(temperature=0.2), x, labels, refs, ref_labels)
    ours = ml.supcon_loss(x, labels, temperature=0.2, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, dtype)


def test_supcon_difference_pml_zero_for_a_batch_of_one_class():
    """No negative pair anywhere: PML returns 0; the formula (and the paper's code) gives each anchor its
    positives-against-positives term, log(B − 1) for equal rows."""
    x, labels = np.tile([[0.5, -1.0, 2.0]], (5, 1)), np.zeros(5, dtype=int)
    theirs, _ = pml_value_and_grad(pml_losses.SupConLoss(), x, labels)
    value, grad = ml.supcon_loss(x, labels)
    assert theirs == 0.0
    assert value == pytest.approx(math.log(4), rel=1e-12)
    assert_close(grad, np.zeros_like(x), rtol=1e-12)  # equal rows: every cosine at its maximum, no slope


def hobbitlong_supcon(features, labels, temperature=0.07, base_temperature=0.07):
    """SupConLoss.forward of the paper's code (HobbitLong/SupContrast, contrast_mode="all") transcribed in torch:
    features [bsz, n_views, F] (its networks normalise them), dot products over τ, the anchor itself masked out,
    1e-9 inside the log, the mean over every anchor scaled by τ / base_temperature."""
    batch_size, n_views = features.shape[:2]
    mask = torch.eq(labels.view(-1, 1), labels.view(1, -1)).double().repeat(n_views, n_views)
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True)[0].detach()
    logits_mask = 1 - torch.eye(batch_size * n_views, dtype=torch.float64)
    mask = mask * logits_mask
    log_prob = logits - torch.log((torch.exp(logits) * logits_mask).sum(1, keepdim=True) + 1e-9)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


@pytest.mark.parametrize("base_temperature", [0.07, 0.1])
def test_supcon_equals_the_paper_s_code_on_two_views(base_temperature):
    """Its views stacked as [bsz, n_views, F] are our batch of the views one after the other, each labelled by
    its image's class; its loss is ours times τ / base_temperature (up to its 1e-9 inside the log)."""
    rng = np.random.default_rng(19)
    x = rng.standard_normal((8, 2, 6))
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    unit = x / np.linalg.norm(x, axis=2, keepdims=True)
    features = torch.tensor(unit, requires_grad=True)
    value = hobbitlong_supcon(features, torch.tensor(labels), temperature=0.1, base_temperature=base_temperature)
    value.backward()
    ours, grad = ml.supcon_loss(np.concatenate([unit[:, 0], unit[:, 1]]), np.tile(labels, 2), temperature=0.1)
    ratio = 0.1 / base_temperature
    assert value.item() == pytest.approx(ratio * ours, rel=1e-7)
    # on unit rows the cosine's gradient is the dot product's projected onto each row's tangent plane
    expected = np.concatenate([features.grad[:, 0].numpy(), features.grad[:, 1].numpy()])
    rows = np.concatenate([unit[:, 0], unit[:, 1]])
    expected -= np.sum(expected * rows, axis=1, keepdims=True) * rows
    assert_close(ratio * grad, expected, rtol=1e-7)


# --- sentence-transformers: the multiple-negatives ranking losses -----------------------------------------------


def st_cos_sim(a, b):
    """sentence_transformers.util.cos_sim."""
    return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T


def st_dot_score(a, b):
    """sentence_transformers.util.dot_score."""
    return a @ b.T


def st_multiple_negatives_ranking(reps, scale=20.0, similarity_fct=st_cos_sim, symmetric=False):
    """MultipleNegativesRankingLoss.forward (and MultipleNegativesSymmetricRankingLoss.forward with ``symmetric``)
    transcribed from sentence-transformers' source, on the columns (anchor, positive, negative_1, ...)."""
    anchor, candidates = reps[0], torch.cat(reps[1:])
    scores = similarity_fct(anchor, candidates) * scale
    labels = torch.arange(len(scores))
    forward_loss = F.cross_entropy(scores, labels)
    if not symmetric:
        return forward_loss
    anchor_positive_scores = scores[:, 0 : len(reps[1])]
    backward_loss = F.cross_entropy(anchor_positive_scores.transpose(0, 1), labels)
    return (forward_loss + backward_loss) / 2


def _columns(rng, dtype, n=10, features=8, negatives=0):
    anchors = rng.standard_normal((n, features))
    columns = [anchors, anchors + 0.8 * rng.standard_normal((n, features))]
    columns += [anchors + 1.5 * rng.standard_normal((n, features)) for _ in range(negatives)]
    return [c.astype(dtype) for c in columns]


def _sentence_transformers(columns, **options):
    tensors = [torch.tensor(c, requires_grad=True) for c in columns]
    value = st_multiple_negatives_ranking(tensors, **options)
    value.backward()
    return value.item(), tuple(t.grad.numpy() for t in tensors)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("negatives", [0, 1, 2])
@pytest.mark.parametrize("symmetric", [False, True])
def test_multiple_negatives_ranking_equals_sentence_transformers(dtype, negatives, symmetric):
    """Hard-negative columns are concatenated into ``negatives``; the symmetric variant's backward direction
    leaves them out, as sentence-transformers' does."""
    columns = _columns(np.random.default_rng(13), dtype, negatives=negatives)
    theirs = _sentence_transformers(columns, symmetric=symmetric)
    hard = [np.concatenate(columns[2:])] if negatives else []
    value, grads = ml.multiple_negatives_ranking_loss(columns[0], columns[1], *hard, symmetric=symmetric)
    if negatives:  # one gradient per column, as sentence-transformers' inputs come
        grads = (grads[0], grads[1], *np.split(grads[2], negatives))
    assert_same((value, grads), theirs, dtype)


def test_multiple_negatives_ranking_with_dot_scores_equals_sentence_transformers():
    columns = [0.3 * c for c in _columns(np.random.default_rng(14), np.float64, negatives=1)]
    theirs = _sentence_transformers(columns, scale=1.0, similarity_fct=st_dot_score, symmetric=True)
    ours = ml.multiple_negatives_ranking_loss(
        columns[0], columns[1], columns[2], scale=1.0, similarity="dot", symmetric=True
    )
    assert_same(ours, theirs, np.float64)


def test_multiple_negatives_ranking_with_dot_products_at_scale_1_is_the_n_pair_loss():
    rng = np.random.default_rng(15)
    a, p = rng.standard_normal((9, 4)), rng.standard_normal((9, 4))
    value, grads = ml.multiple_negatives_ranking_loss(a, p, scale=1.0, similarity="dot")
    expected_value, expected_grads = ml.npair_pairs_loss(a, p)
    assert value == pytest.approx(expected_value, rel=1e-12)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert_close(got, expected, rtol=1e-11)


def test_multiple_negatives_ranking_gradients_follow_their_arguments():
    """(anchors, positives, negatives): each gradient shaped and typed like its argument, float32 kept."""
    rng = np.random.default_rng(16)
    a, p = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 3))
    n = rng.standard_normal((7, 3)).astype(np.float32)
    value, (ga, gp, gn) = ml.multiple_negatives_ranking_loss(a, p, n)
    assert (ga.dtype, gp.dtype, gn.dtype) == (np.float32, np.float64, np.float32)
    assert (ga.shape, gp.shape, gn.shape) == (a.shape, p.shape, n.shape)
    assert value == pytest.approx(
        textbook.multiple_negatives_ranking_loss(a.astype(float), p, n.astype(float))[0], rel=1e-5
    )


def test_multiple_negatives_ranking_names_its_arguments():
    a = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"positives must have the same shape as anchors, \(3, 2\); got \(2, 2\)"):
        ml.multiple_negatives_ranking_loss(a, a[:2])
    with pytest.raises(ValueError, match="negatives must have 2 features to match anchors"):
        ml.multiple_negatives_ranking_loss(a, a, np.ones((4, 3)))
    with pytest.raises(TypeError, match="negatives must be a float32 or float64"):
        ml.multiple_negatives_ranking_loss(a, a, np.ones((4, 2), dtype=int))


@pytest.mark.parametrize("position", [1, 2])
def test_multiple_negatives_ranking_given_labels_says_it_takes_rows(position):
    """Class ids where the positives (or the negatives) belong: the message names that argument and the losses that
    take a labelled batch, rather than advising a float conversion of the labels."""
    x, labels = np.ones((4, 2)), np.array([0, 0, 1, 1])
    arrays = [*[x, x][:position], labels]
    name = ("positives", "negatives")[position - 1]
    with pytest.raises(
        TypeError, match=rf"^{name} must be a 2-D float array of embeddings; got 1-D integers.*ntxent_loss"
    ):
        ml.multiple_negatives_ranking_loss(*arrays)


# --- stability ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda x, lab: ml.ntxent_loss(x, lab, temperature=0.01),
        lambda x, lab: ml.supcon_loss(x, lab, temperature=0.01),
        lambda x, lab: ml.multiple_negatives_ranking_loss(x[0::2], x[1::2], scale=100.0, symmetric=True),
    ],
    ids=["ntxent", "supcon", "multiple_negatives_ranking"],
)
def test_temperature_0_01_in_float32_is_finite_and_agrees_with_float64(call):
    """Logits up to ±100: e^100 overflows float32 unless every exponential is shifted; with nearly identical and
    exactly opposite rows in the batch."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((32, 16))
    x[1] = x[0] + 1e-4  # nearly identical rows of one class
    x[3] = -x[2]  # exactly opposite rows of one class
    labels = np.repeat(np.arange(16), 2)
    value32, grad32 = call(x.astype(np.float32), labels)
    value64, grad64 = call(x, labels)
    assert np.isfinite(value32) and value32 == pytest.approx(value64, rel=1e-4)
    for got, expected in zip(as_tuple(grad32), as_tuple(grad64), strict=True):
        assert got.dtype == np.float32 and np.isfinite(got).all()
        assert_close(got, expected, rtol=TOLERANCES[np.dtype(np.float32)] * 10)


# --- memory ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda x, lab: ml.ntxent_loss(x, lab),
        lambda x, lab: ml.supcon_loss(x, lab),
        lambda x, lab: ml.multiple_negatives_ranking_loss(x, x[::-1].copy(), symmetric=True),
    ],
    ids=["ntxent", "supcon", "multiple_negatives_ranking-symmetric"],
)
@pytest.mark.parametrize("classes", [128, 4])
def test_peak_memory_is_a_few_b_by_b_matrices(call, classes):
    """No B×B×B array (PML's NTXentLoss compares every positive pair with every negative pair): at B = 512 the
    peak of everything allocated stays under 6 B²·itemsize, with 128 classes of 4 and with 4 classes of 128."""
    x, labels = pk_batch(np.random.default_rng(18), np.float64, p=classes, k=512 // classes, features=16)
    n = x.shape[0]
    call(x, labels)
    tracemalloc.start()
    call(x, labels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 6 * n * n * x.itemsize, f"peak {peak / (n * n * x.itemsize):.2f} B²·itemsize"
