"""The multi-similarity and circle losses beyond the contract: parity with pytorch-metric-learning (MultiSimilarityLoss
alone and after MultiSimilarityMiner, CircleLoss, their reducers, query-vs-reference batches), the all-pairs circle
loss against a torch transcription of the reference code, the detached α pinned both ways, stability at γ = 256 in
float32, each definitional difference pinned, the shared log-sum-exp on its own, O(B²) memory."""

import math
import tracemalloc

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from support import assert_same, batch_with_a_singleton, pk_batch, pml_dot, pml_value_and_grad

import metricloss as ml
from metricloss import textbook
from metricloss.losses._logsumexp import logsumexp_rows, masked
from metricloss.testing import assert_close, check_grad

DTYPES = [np.float32, np.float64]


# --- multi-similarity: pytorch-metric-learning ------------------------------------------------------------------


PML_MULTI_SIMILARITY_NAMES = {"positive_scale": "alpha", "negative_scale": "beta", "threshold": "base"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "hyper",
    [
        {},
        {"positive_scale": 1.0, "negative_scale": 20.0, "threshold": 0.3},
        {"positive_scale": 5.0, "negative_scale": 80.0, "threshold": -0.2},
    ],
)
def test_multi_similarity_equals_pml_multi_similarity_loss(dtype, hyper):
    """Every anchor a term (the singleton pays its negatives' term), PML's MeanReducer over all of them; PML's
    ``alpha, beta, base`` are ``positive_scale, negative_scale, threshold``, and the defaults are PML's."""
    x, labels = batch_with_a_singleton(np.random.default_rng(0), dtype)
    pml_hyper = {PML_MULTI_SIMILARITY_NAMES[name]: value for name, value in hyper.items()}
    theirs = pml_value_and_grad(pml_losses.MultiSimilarityLoss(**pml_hyper), x, labels)
    assert_same(ml.multi_similarity_loss(x, labels, **hyper), theirs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epsilon", [0.1, 0.3, 0.0])
def test_mined_multi_similarity_equals_pml_miner_then_loss(dtype, epsilon):
    x, labels = batch_with_a_singleton(np.random.default_rng(1), dtype)
    loss, miner = pml_losses.MultiSimilarityLoss(), pml_miners.MultiSimilarityMiner(epsilon=epsilon)
    theirs = pml_value_and_grad(loss, x, labels, miner=miner)
    assert_same(ml.multi_similarity_loss(x, labels, mining="epsilon", epsilon=epsilon), theirs, dtype)


@pytest.mark.parametrize("mining", ml.MULTI_SIMILARITY_MININGS)
def test_multi_similarity_with_dot_products_equals_pml(mining):
    x, labels = batch_with_a_singleton(np.random.default_rng(2), np.float64)
    x *= 0.4
    miner = pml_miners.MultiSimilarityMiner(distance=pml_dot()) if mining == "epsilon" else None
    theirs = pml_value_and_grad(pml_losses.MultiSimilarityLoss(distance=pml_dot()), x, labels, miner=miner)
    assert_same(ml.multi_similarity_loss(x, labels, similarity="dot", mining=mining), theirs, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mining", ml.MULTI_SIMILARITY_MININGS)
def test_multi_similarity_with_references_equals_pml(dtype, mining):
    rng = np.random.default_rng(3)
    x, labels = batch_with_a_singleton(rng, dtype, n=10)
    refs, ref_labels = rng.standard_normal((14, 8)).astype(dtype), rng.integers(0, 6, 14)
    miner = pml_miners.MultiSimilarityMiner() if mining == "epsilon" else None
    theirs = pml_value_and_grad(pml_losses.MultiSimilarityLoss(), x, labels, refs, ref_labels, miner=miner)
    ours = ml.multi_similarity_loss(x, labels, mining=mining, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize(("reducer", "reduction"), [("SumReducer", "sum"), ("AvgNonZeroReducer", "mean_nonzero")])
def test_pml_reducers_are_reductions(reducer, reduction):
    x, labels = batch_with_a_singleton(np.random.default_rng(4), np.float64)
    loss = pml_losses.MultiSimilarityLoss(reducer=getattr(pml_reducers, reducer)())
    miner = pml_miners.MultiSimilarityMiner()  # mined: some anchors keep no pair, a term of 0
    ours = ml.multi_similarity_loss(x, labels, mining="epsilon", reduction=reduction)
    assert ml.multi_similarity_loss(x, labels, mining="epsilon", reduction="mean")[0] != pytest.approx(ours[0])
    assert_same(ours, pml_value_and_grad(loss, x, labels, miner=miner), np.float64)


def test_mining_keeps_a_pair_only_strictly_inside_the_epsilon_rule_as_pml():
    """Dot products exact in binary: anchor 0's positive S = 0.75 against its hardest negative 0.5 with ε = 0.25
    (0.75 − 0.25 = 0.5, not < 0.5): dropped, by PML's miner too; its negative 0.5 + 0.25 = 0.75 is not > 0.75:
    dropped. With ε = 0.375 both are kept."""
    x = np.array([[1.0, 0.0], [0.75, 0.0], [0.5, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    for epsilon in (0.25, 0.375):
        miner = pml_miners.MultiSimilarityMiner(epsilon=epsilon, distance=pml_dot())
        a1, p, a2, n = miner(torch.tensor(x), torch.tensor(labels))
        kept = {(int(a), int(b)) for a, b in zip(a1, p, strict=True)} | {
            (int(a), int(b)) for a, b in zip(a2, n, strict=True)
        }
        assert ((0, 1) in kept) == (epsilon > 0.25) and ((0, 2) in kept) == (epsilon > 0.25)
        theirs = pml_value_and_grad(pml_losses.MultiSimilarityLoss(distance=pml_dot()), x, labels, miner=miner)
        ours = ml.multi_similarity_loss(x, labels, mining="epsilon", epsilon=epsilon, similarity="dot")
        assert_same(ours, theirs, np.float64)
        assert ours[0] == pytest.approx(
            textbook.multi_similarity_loss(x, labels, mining="epsilon", epsilon=epsilon, similarity="dot")[0], rel=1e-12
        )


def test_a_batch_of_one_class_costs_its_positives_without_mining_as_pml_and_nothing_with_it():
    """The two sums are independent: without mining a one-class batch pays (1/α) log(1 + Σ_p e^{−α(S − λ)}) per
    anchor (PML too); the ε rule keeps no positive without a negative to compare with: (0.0, zeros)."""
    x = np.random.default_rng(5).standard_normal((5, 3))
    labels = np.zeros(5, dtype=int)
    value, grad = ml.multi_similarity_loss(x, labels)
    assert value > 0
    assert_same((value, grad), pml_value_and_grad(pml_losses.MultiSimilarityLoss(), x, labels), np.float64)
    value, grad = ml.multi_similarity_loss(x, labels, mining="epsilon")
    assert value == 0.0 and not grad.any()
    miner = pml_miners.MultiSimilarityMiner()
    assert pml_value_and_grad(pml_losses.MultiSimilarityLoss(), x, labels, miner=miner)[0] == 0.0


def paper_code_multi_similarity(x, labels, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    """A transcription of the paper's code (MalongTech/research-ms-loss, ``MultiSimilarityLoss.forward``) on
    F.normalize(x), with torch autograd's gradient: per anchor, its same-label similarities below 1 − 1e-5 are the
    positives; the ε rule; an anchor with an empty mined set is skipped; the sum divided by the batch size."""
    t = torch.tensor(x, requires_grad=True)
    feats = torch.nn.functional.normalize(t, p=2, dim=1)
    sim_mat = feats @ feats.T
    lab = torch.as_tensor(labels)
    terms = []
    for i in range(len(labels)):
        pos_pair_ = sim_mat[i][lab == lab[i]]
        pos_pair_ = pos_pair_[pos_pair_ < 1 - 1e-5]
        neg_pair_ = sim_mat[i][lab != lab[i]]
        neg_pair = neg_pair_[neg_pair_ + epsilon > min(pos_pair_)]
        pos_pair = pos_pair_[pos_pair_ - epsilon < max(neg_pair_)]
        if len(neg_pair) < 1 or len(pos_pair) < 1:
            continue
        pos_loss = 1.0 / alpha * torch.log(1 + torch.sum(torch.exp(-alpha * (pos_pair - base))))
        neg_loss = 1.0 / beta * torch.log(1 + torch.sum(torch.exp(beta * (neg_pair - base))))
        terms.append(pos_loss + neg_loss)
    loss = sum(terms) / len(labels)
    loss.backward()
    return loss.item(), t.grad.numpy()


def test_mined_multi_similarity_equals_the_papers_code_but_for_duplicated_positives():
    """On a P×K batch (every anchor has positives and negatives) the paper's code is mining="epsilon"; a positive that
    duplicates its anchor (similarity 1) is no positive there (its 1 − 1e-5 filter), but is one here and in PML."""
    x, labels = pk_batch(np.random.default_rng(15), np.float64, p=4, k=3, features=6, scale=1.0)
    ours = ml.multi_similarity_loss(x, labels, mining="epsilon")
    assert_same(ours, paper_code_multi_similarity(x, labels), np.float64)
    x[1] = x[0]  # a duplicate of anchor 0 in its class: S01 = 1, kept by the ε rule against a negative near it
    x[3] = x[0] + 0.05 * np.random.default_rng(16).standard_normal(6)  # class 1, S03 ~ 0.99 > 1 − ε
    theirs, _ = paper_code_multi_similarity(x, labels)
    ours, _ = ml.multi_similarity_loss(x, labels, mining="epsilon")
    pml, _ = pml_value_and_grad(pml_losses.MultiSimilarityLoss(), x, labels, miner=pml_miners.MultiSimilarityMiner())
    assert ours == pytest.approx(pml, rel=1e-12)
    assert ours != pytest.approx(theirs, rel=1e-6)
    assert ours == pytest.approx(textbook.multi_similarity_loss(x, labels, mining="epsilon")[0], rel=1e-12)


def _one_query_two_references():
    """A query, one reference of its class and one of another: one positive pair, one negative pair."""
    query = np.array([[1.0, 0.2]])
    refs = np.array([[0.3, 1.0], [1.0, -0.1]])
    return query, np.array([0]), refs, np.array([0, 1])


@pytest.mark.parametrize("loss", ["multi_similarity", "circle"])
def test_pml_returns_zero_when_each_index_array_has_one_element_and_we_do_not(loss):
    """PML's GenericPairLoss returns 0 whenever each of a₁, p, a₂, n has at most one element — its test for "no
    pairs" also catches one positive and one negative pair. Here those pairs are a loss like any other (the
    textbook's value)."""
    query, labels, refs, ref_labels = _one_query_two_references()
    pml_loss = pml_losses.MultiSimilarityLoss() if loss == "multi_similarity" else pml_losses.CircleLoss(0.25, 256)
    theirs = pml_loss(
        torch.tensor(query), torch.tensor(labels), ref_emb=torch.tensor(refs), ref_labels=torch.tensor(ref_labels)
    )
    assert float(theirs) == 0.0
    if loss == "multi_similarity":
        value, (grad, grad_refs) = ml.multi_similarity_loss(query, labels, ref_embeddings=refs, ref_labels=ref_labels)
        expected = textbook.multi_similarity_loss(query, labels, ref_embeddings=refs, ref_labels=ref_labels)[0]
    else:
        value, (grad, grad_refs) = ml.circle_loss(query, labels, ref_embeddings=refs, ref_labels=ref_labels)
        expected = textbook.circle_loss(query, labels, ref_embeddings=refs, ref_labels=ref_labels)[0]
    assert value > 0 and grad.any() and grad_refs.any()
    assert value == pytest.approx(expected, rel=1e-12)


# --- circle, per anchor: pytorch-metric-learning ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.4, 80.0), (0.25, 128.0), (0.0, 32.0)])
def test_circle_per_anchor_equals_pml_circle_loss(dtype, m, gamma):
    """Detached α, the rows without a positive or a negative zeroed, AvgNonZeroReducer: the defaults here."""
    x, labels = batch_with_a_singleton(np.random.default_rng(6), dtype)
    theirs = pml_value_and_grad(pml_losses.CircleLoss(m=m, gamma=gamma), x, labels)
    assert_same(ml.circle_loss(x, labels, margin=m, scale=gamma), theirs, dtype)


def test_circle_defaults_are_the_papers_retrieval_setting_as_pml():
    """margin = 0.4, scale = 80: the paper's fine-grained image retrieval setting and PML's CircleLoss() defaults;
    the face-recognition setting (0.25, 256) is another call, not the same loss."""
    x, labels = batch_with_a_singleton(np.random.default_rng(15), np.float64)
    ours = ml.circle_loss(x, labels)
    assert_same(ours, pml_value_and_grad(pml_losses.CircleLoss(), x, labels), np.float64)
    assert_same(ours, ml.circle_loss(x, labels, margin=0.4, scale=80.0), np.float64)
    assert ml.circle_loss(x, labels, margin=0.25, scale=256.0)[0] != pytest.approx(ours[0])


@pytest.mark.parametrize(("reducer", "reduction"), [("MeanReducer", "mean"), ("SumReducer", "sum")])
def test_circle_pml_reducers_are_reductions(reducer, reduction):
    x, labels = batch_with_a_singleton(np.random.default_rng(7), np.float64)
    loss = pml_losses.CircleLoss(m=0.25, gamma=256, reducer=getattr(pml_reducers, reducer)())
    ours = ml.circle_loss(x, labels, margin=0.25, scale=256.0, reduction=reduction)
    assert_same(ours, pml_value_and_grad(loss, x, labels), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_circle_per_anchor_with_references_equals_pml(dtype):
    rng = np.random.default_rng(8)
    x, labels = batch_with_a_singleton(rng, dtype, n=10)
    refs, ref_labels = rng.standard_normal((14, 8)).astype(dtype), rng.integers(0, 6, 14)
    theirs = pml_value_and_grad(pml_losses.CircleLoss(m=0.25, gamma=256), x, labels, refs, ref_labels)
    ours = ml.circle_loss(x, labels, margin=0.25, scale=256.0, ref_embeddings=refs, ref_labels=ref_labels)
    assert_same(ours, theirs, dtype)


# --- circle over all pairs: the reference code (TinyZeaMays/CircleLoss), transcribed in torch --------------------


def reference_all_pairs(x, labels, m, gamma, detach=True):
    """The reference code's loss on F.normalize(x), with torch autograd's gradient: each unordered positive and
    negative pair once (triu(diagonal=1)), softplus(logsumexp(logit_n) + logsumexp(logit_p)); ``detach=False`` is
    the copies without .detach()."""
    t = torch.tensor(x, requires_grad=True)
    normed = torch.nn.functional.normalize(t, p=2, dim=1)
    similarity = normed @ normed.T
    lab = torch.as_tensor(labels)
    same = lab.unsqueeze(1) == lab.unsqueeze(0)
    sp = similarity[same.triu(diagonal=1)]
    sn = similarity[same.logical_not().triu(diagonal=1)]
    ap = torch.clamp_min(-(sp.detach() if detach else sp) + 1 + m, min=0.0)
    an = torch.clamp_min((sn.detach() if detach else sn) + m, min=0.0)
    logit_p = -ap * (sp - (1 - m)) * gamma
    logit_n = an * (sn - m) * gamma
    loss = torch.nn.Softplus()(torch.logsumexp(logit_n, dim=0) + torch.logsumexp(logit_p, dim=0))
    loss.backward()
    return loss.item(), t.grad.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.4, 80.0), (0.1, 16.0)])
def test_circle_all_pairs_equals_the_reference_code(dtype, m, gamma):
    x, labels = batch_with_a_singleton(np.random.default_rng(9), dtype)
    theirs = reference_all_pairs(x, labels, m, gamma)
    assert_same(ml.circle_loss(x, labels, margin=m, scale=gamma, form="all_pairs"), theirs, dtype)


@pytest.mark.parametrize("form", ml.CIRCLE_FORMS)
def test_the_gradient_holds_alpha_constant_and_detach_weights_false_differentiates_it(form):
    """Detached (the default): the gradient is PML's and the reference code's (autograd through .detach()), and is
    not the derivative of the value (central differences disagree by far); detach_weights=False: the derivative
    of the value, which the undetached transcription's autograd gives too."""
    x, labels = batch_with_a_singleton(np.random.default_rng(10), np.float64)
    m, gamma = 0.25, 64.0
    detached = ml.circle_loss(x, labels, margin=m, scale=gamma, form=form)
    full = ml.circle_loss(x, labels, margin=m, scale=gamma, form=form, detach_weights=False)
    assert detached[0] == full[0]  # the same value: only the gradient differs
    if form == "all_pairs":
        assert_same(detached, reference_all_pairs(x, labels, m, gamma), np.float64)
        assert_same(full, reference_all_pairs(x, labels, m, gamma, detach=False), np.float64)
    else:
        assert_same(detached, pml_value_and_grad(pml_losses.CircleLoss(m=m, gamma=gamma), x, labels), np.float64)
    check_grad(lambda e: ml.circle_loss(e, labels, margin=m, scale=gamma, form=form, detach_weights=False), x)
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_grad(lambda e: ml.circle_loss(e, labels, margin=m, scale=gamma, form=form), x)


def test_all_pairs_with_references_takes_every_query_reference_pair():
    rng = np.random.default_rng(11)
    x, refs = rng.standard_normal((5, 4)), rng.standard_normal((7, 4))
    labels, ref_labels = rng.integers(0, 3, 5), rng.integers(0, 3, 7)
    hyper = {"margin": 0.3, "scale": 32.0, "form": "all_pairs"}
    value, _ = ml.circle_loss(x, labels, **hyper, ref_embeddings=refs, ref_labels=ref_labels)
    assert value == pytest.approx(
        textbook.circle_loss(x, labels, ref_embeddings=refs, ref_labels=ref_labels, **hyper)[0], rel=1e-12
    )


# --- stability at γ = 256 ----------------------------------------------------------------------------------------


def _nearly_identical_and_opposite(dtype, noise=1e-2):
    """Two classes: class 0 rows nearly identical (cosines ~1 − noise²), class 1 rows opposite to them (cosines
    ~−1) and one class-1 row parallel to them (a negative at cosine ~1: logit γ(1 + m)(1 − m) = 240 at γ = 256;
    its positive at cosine −1: γ(2 + m)(1 − m + 1) = 1008). noise 0: exactly identical and opposite rows."""
    rng = np.random.default_rng(12)
    base = rng.standard_normal(16)
    x = np.array([base + noise * rng.standard_normal(16) for _ in range(4)] + [-base, -base * 1.5, base * 2])
    return x.astype(dtype), np.array([0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("form", ml.CIRCLE_FORMS)
@pytest.mark.parametrize("detach_weights", [True, False])
def test_gamma_256_is_finite_and_right_in_float32_for_identical_and_opposite_rows(form, detach_weights):
    """float32 against float64 on the same rows, float64 against the textbook twin and the reference (PML per anchor,
    the reference code over all pairs). The gradient of a cosine between nearly parallel rows is a difference of
    nearly equal vectors: float32 resolves it to about eps/noise (5e-5 here at noise 1e-2; 1e-2 at noise 1e-4,
    the rows' own resolution), whatever γ."""
    x, labels = _nearly_identical_and_opposite(np.float32)
    x64 = x.astype(np.float64)
    m, gamma = 0.25, 256.0
    hyper = {"margin": m, "scale": gamma, "form": form, "detach_weights": detach_weights}
    value, grad = ml.circle_loss(x, labels, **hyper)
    value64, grad64 = ml.circle_loss(x64, labels, **hyper)
    assert math.isfinite(value) and np.isfinite(grad).all() and grad.dtype == np.float32
    assert value > 240  # at least the parallel negative's logit against its positives
    assert value == pytest.approx(value64, rel=1e-6)
    assert_close(grad, grad64, rtol=5e-4)
    assert value64 == pytest.approx(textbook.circle_loss(x64, labels, **hyper)[0], rel=1e-12)
    if form == "all_pairs":
        assert_same((value64, grad64), reference_all_pairs(x64, labels, m, gamma, detach_weights), np.float64)
    elif detach_weights:
        assert_same(
            (value64, grad64), pml_value_and_grad(pml_losses.CircleLoss(m=m, gamma=gamma), x64, labels), np.float64
        )


@pytest.mark.parametrize("form", ml.CIRCLE_FORMS)
def test_gamma_256_on_exactly_identical_and_opposite_rows(form):
    """Cosines exactly ±1: the logits' extremes (240 for the parallel negative, 1008 for the opposite positive);
    the value is the textbook's in float32 too, and the gradient finite (the cosine's gradient at ±1 is 0)."""
    x, labels = _nearly_identical_and_opposite(np.float32, noise=0.0)
    hyper = {"margin": 0.25, "scale": 256.0, "form": form}
    value, grad = ml.circle_loss(x, labels, **hyper)
    assert np.isfinite(grad).all()
    assert value == pytest.approx(textbook.circle_loss(x.astype(np.float64), labels, **hyper)[0], rel=1e-6)
    assert np.abs(grad).max() <= 1e-4 * value


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_scales_stay_finite(dtype):
    """γ = 1e4 (logits ~1e4, e^{1e4} overflows any dtype): the shifted log-sum-exps stay finite; MS with β = 1e4
    too. A well-separated circle anchor's softplus(−γ m² ...) underflows to 0 only in float64's exponent range."""
    x, labels = _nearly_identical_and_opposite(dtype)
    for value, grad in (
        ml.circle_loss(x, labels, scale=1e4),
        ml.circle_loss(x, labels, scale=1e4, form="all_pairs"),
        ml.multi_similarity_loss(x, labels, positive_scale=1e4, negative_scale=1e4),
    ):
        assert math.isfinite(value) and np.isfinite(grad).all() and grad.dtype == dtype


# --- the shared log-sum-exp --------------------------------------------------------------------------------------


@pytest.mark.parametrize("add_one", [False, True])
def test_logsumexp_rows_matches_a_plain_loop_and_keeps_tiny_values(add_one):
    rng = np.random.default_rng(13)
    z = 30 * rng.standard_normal((6, 9))
    keep = rng.random((6, 9)) < 0.6
    keep[2] = False  # an empty row
    z[4] = -800.0  # e^-800 underflows float64: log(1 + Σ e^z) = 0, and log Σ e^z = −800 + log(count) still right
    z[5, :] = -40.0  # log1p(Σ e^-40) ≈ 9 e^-40 ≈ 3.8e-17, lost by log(1 + ·)
    weights = masked(z.copy(), keep)
    top, rest = logsumexp_rows(weights, add_one=add_one)
    for i in range(6):
        exps = [v for v, k in zip(z[i], keep[i], strict=True) if k] + ([0.0] if add_one else [])
        if not exps:
            assert top[i] == -math.inf and rest[i] == 0 and not weights[i].any()
            continue
        peak = max(exps)
        others = list(exps)
        others.remove(peak)  # log Σ e^v = peak + log1p(Σ_others e^{v − peak}): digits kept for a tiny value
        expected = peak + math.log1p(math.fsum(math.exp(v - peak) for v in others))
        got = top[i] + math.log1p(rest[i])
        assert got == pytest.approx(expected, rel=1e-14, abs=1e-300)
        softmax = [math.exp(v - expected) if k else 0.0 for v, k in zip(z[i], keep[i], strict=True)]
        assert_close(weights[i], np.array(softmax), rtol=1e-14)
    if add_one and keep[5].any():  # a tiny value keeps its digits
        tiny = math.fsum(math.exp(v) for v, k in zip(z[5], keep[5], strict=True) if k)
        assert top[5] + math.log1p(rest[5]) == pytest.approx(tiny, rel=1e-14)


# --- memory -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda x, lab: ml.multi_similarity_loss(x, lab),
        lambda x, lab: ml.multi_similarity_loss(x, lab, mining="epsilon"),
        lambda x, lab: ml.circle_loss(x, lab),
        lambda x, lab: ml.circle_loss(x, lab, form="all_pairs", detach_weights=False),
    ],
    ids=["ms", "ms-mined", "circle", "circle-all-pairs-full"],
)
def test_peak_memory_is_a_few_b_by_b_matrices(call):
    """No B×B×B array and no pile of B×B ones: at B = 512 (float64) the peak of everything allocated stays under
    7 B²·itemsize (measured: about 3.7 for MS, 4.6 mined, 5.5 for circle: the similarities and cosine distances,
    two matrices of logits, one temporary, boolean masks)."""
    x, labels = pk_batch(np.random.default_rng(14), np.float64, p=128, k=4, features=16)
    n = x.shape[0]
    call(x, labels)
    tracemalloc.start()
    call(x, labels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 7 * n * n * x.itemsize, f"peak {peak / (n * n * x.itemsize):.2f} B²·itemsize"
