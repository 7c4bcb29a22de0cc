"""The margin loss and distance-weighted sampling beyond the contract: parity with pytorch-metric-learning's
MarginLoss (values and gradients, β's included: fixed, shared learnable, per-class learnable, with ν; on all
triplets, on given triplets, query-vs-reference), the learnable β's gradient by central differences, the sampler
(seeded reproducibility, its distribution against exact probabilities and PML's weights, no NaN or empty draw at
D = 512 and 1024 in float32, the fallback, edge cases), O(B²) memory."""

import tracemalloc

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from support import lp, pk_batch

import metricloss as ml
from metricloss.mining import distance_weighted_negatives
from metricloss.testing import assert_close, check_grad

DTYPES = [np.float32, np.float64]
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-6}


def _batch(rng, dtype, n=20, features=6, classes=4):
    """Labels in [0, classes) (they index a per-class β), one class with a single member (an anchor without
    positives); scaled so that both hinges are active for some pairs and not for others."""
    x = (0.45 * rng.standard_normal((n, features))).astype(dtype)
    labels = rng.integers(0, classes - 1, n)
    labels[-1] = classes - 1
    return x, labels


def _pml(x, labels, *, margin=0.2, beta=1.2, nu=0.0, learn_beta=False, num_classes=None, triplets=None, refs=None):
    """PML's MarginLoss value and autograd gradients in margin_loss's argument order: embeddings, β where learnable,
    references where given."""
    loss = pml_losses.MarginLoss(
        margin=margin, nu=nu, beta=beta, learn_beta=learn_beta, num_classes=num_classes, distance=lp()
    )
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    if learn_beta:
        loss.beta.data = loss.beta.data.to(dtype)
    xt = torch.tensor(x, requires_grad=True)
    kwargs = {}
    if refs is not None:
        rt = torch.tensor(refs[0], requires_grad=True)
        kwargs = {"ref_emb": rt, "ref_labels": torch.as_tensor(refs[1])}
    indices = None if triplets is None else tuple(torch.as_tensor(t) for t in triplets)
    value = loss(xt, torch.as_tensor(labels), indices, **kwargs)
    value.backward()
    tensors = [xt] + ([loss.beta] if learn_beta else []) + ([] if refs is None else [rt])
    grads = [np.zeros(t.shape, dtype=x.dtype) if t.grad is None else t.grad.numpy() for t in tensors]
    return value.item(), grads


def _assert_matches(ours, theirs, dtype):
    (value, grads), (expected_value, expected_grads) = ours, theirs
    grads = grads if isinstance(grads, tuple) else (grads,)
    rtol = RTOL[np.dtype(dtype)]
    assert value == pytest.approx(expected_value, rel=rtol)
    assert len(grads) == len(expected_grads)
    for got, expected in zip(grads, expected_grads, strict=True):
        assert got.dtype == dtype and got.shape == expected.shape
        assert_close(got, expected, rtol=rtol)


CONFIGS = [
    ("fixed", {}, {}),
    ("fixed-margin", {"margin": 0.5}, {"margin": 0.5}),
    ("shared-margin", {"margin": 0.5, "beta": 0.9}, {"margin": 0.5, "beta": 0.9, "learn_beta": True}),
    # accepted as PML accepts it: every positive pair active
    ("negative-beta", {"beta": -0.3}, {"beta": -0.3, "learn_beta": True}),
    ("shared", {"beta": 1.2}, {"learn_beta": True}),
    ("shared-nu", {"beta": 1.2, "nu": 0.1}, {"learn_beta": True, "nu": 0.1}),
    ("per-class", {"beta": "per-class"}, {"learn_beta": True, "num_classes": 4}),
    (
        "per-class-nu",
        {"beta": "per-class", "nu": 0.3, "margin": 0.3},
        {"learn_beta": True, "num_classes": 4, "nu": 0.3, "margin": 0.3},
    ),
]


def _ours(x, labels, hyper, **extra):
    """margin_loss with ``hyper``'s β as an array in x's dtype (PML's learnable β is a tensor of shape (1,) or
    (C,)): a number is one shared β, ``"per-class"`` 1.2 for each of the 4 classes; none, the constant β."""
    hyper = dict(hyper)
    kind = hyper.pop("beta", None)
    if kind == "per-class":
        hyper["beta"] = np.full(4, 1.2, dtype=x.dtype)
    elif kind is not None:
        hyper["beta"] = np.array([kind], dtype=x.dtype)
    return ml.margin_loss(x, labels, **hyper, **extra)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("ours", "theirs"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_all_triplets_equal_pml_margin_loss(dtype, ours, theirs):
    x, labels = _batch(np.random.default_rng(0), dtype)
    _assert_matches(_ours(x, labels, ours), _pml(x, labels, **theirs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("ours", "theirs"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_given_triplets_equal_pml_margin_loss_with_an_indices_tuple(dtype, ours, theirs):
    """Triplets from the distance-weighted sampler, and the same with repeated triplets (a pair counted twice)."""
    rng = np.random.default_rng(1)
    x, labels = _batch(rng, dtype)
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)
    a, p, n = distance_weighted_negatives(unit, labels, rng=rng)
    triplets = tuple(np.concatenate([t, t[:5]]) for t in (a, p, n))
    _assert_matches(_ours(x, labels, ours, triplets=triplets), _pml(x, labels, triplets=triplets, **theirs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[5], CONFIGS[7]], ids=["fixed", "shared-nu", "per-class-nu"])
def test_query_reference_batch_equals_pml_with_ref_emb(dtype, config):
    """With references and a learnable β the gradients come in argument order: embeddings, β, references."""
    rng = np.random.default_rng(2)
    x, labels = _batch(rng, dtype, n=9)
    refs, ref_labels = _batch(rng, dtype, n=11)
    ours = _ours(x, labels, config[1], ref_embeddings=refs, ref_labels=ref_labels)
    _assert_matches(ours, _pml(x, labels, refs=(refs, ref_labels), **config[2]), dtype)


def test_no_triplet_gives_zero_and_zero_gradients_also_for_a_learnable_beta_as_pml():
    x = np.array([[0.1, 0.2], [0.3, -0.1], [1.0, 1.0]])
    labels = np.array([0, 0, 0])
    beta = np.array([1.0])
    value, (grad_x, grad_beta) = ml.margin_loss(x, labels, beta=beta, nu=0.5)
    theirs, (their_grad_x, their_grad_beta) = _pml(x, labels, beta=1.0, nu=0.5, learn_beta=True)
    assert value == theirs == 0.0
    assert not grad_x.any() and not grad_beta.any() and grad_beta.shape == (1,)
    assert not their_grad_x.any() and not their_grad_beta.any()
    empty = np.zeros(0, dtype=np.int64)
    assert ml.margin_loss(x, np.array([0, 1, 1]), triplets=(empty, empty, empty))[0] == 0.0


@pytest.mark.parametrize("nu", [0.0, 0.2])
@pytest.mark.parametrize("given", [False, True], ids=["all", "given"])
def test_learnable_beta_gradients_match_central_differences(nu, given):
    rng = np.random.default_rng(3)
    x, labels = _batch(rng, np.float64)
    beta = 1.2 + 0.3 * rng.standard_normal(4)
    triplets = ml.mine_triplets(x, labels, max_per_anchor=6, rng=rng) if given else None
    for b in (beta, beta[:1]):
        check_grad(lambda x, b: ml.margin_loss(x, labels, beta=b, nu=nu, triplets=triplets), x, b)
        check_grad(lambda x, b: ml.margin_loss(x, labels, beta=b, nu=nu, reduction="sum", triplets=triplets), x, b)


def test_all_triplets_equal_the_same_triplets_given():
    """The O(B²) count form is the sum over every triplet enumerated (mine_triplets kind="all")."""
    rng = np.random.default_rng(4)
    x, labels = _batch(rng, np.float64)
    beta = 1.0 + 0.2 * rng.standard_normal(4)
    triplets = ml.mine_triplets(x, labels)
    for reduction in ml.REDUCTIONS:
        ours = ml.margin_loss(x, labels, beta=beta, nu=0.1, reduction=reduction)
        given = ml.margin_loss(x, labels, beta=beta, nu=0.1, reduction=reduction, triplets=triplets)
        assert ours[0] == pytest.approx(given[0], rel=1e-12)
        for got, expected in zip(ours[1], given[1], strict=True):
            assert_close(got, expected, rtol=1e-12)


def test_a_float_beta_is_learnable_with_a_0d_gradient_and_a_bool_is_refused():
    """A float β (a Python or NumPy scalar) is a shared learnable β: its gradient a 0-d float64 array, the value
    of the array of shape (1,)'s; without β the constant 1.2, and the embeddings' gradient alone."""
    x, labels = _batch(np.random.default_rng(14), np.float64)
    shared = ml.margin_loss(x, labels, beta=np.array([0.9]), nu=0.1)
    for beta in (0.9, np.float64(0.9)):
        value, (grad_x, grad_beta) = ml.margin_loss(x, labels, beta=beta, nu=0.1)
        assert value == shared[0] and grad_beta.shape == () and grad_beta.dtype == np.float64
        assert grad_beta == shared[1][1][0]
        np.testing.assert_array_equal(grad_x, shared[1][0])
    value, grad = ml.margin_loss(x, labels)
    assert isinstance(grad, np.ndarray) and value == ml.margin_loss(x, labels, beta=1.2)[0]
    with pytest.raises(TypeError, match="beta must be a float32 or float64 array"):
        ml.margin_loss(x, labels, beta=True)


def test_triplets_and_beta_are_positional_in_signature_order_as_the_textbook():
    """margin_loss(x, labels, triplets, beta): the same call positionally and by keyword, and the textbook twin's
    gradients in the same order with references: (embeddings, β, references)."""
    rng = np.random.default_rng(15)
    x, labels = _batch(rng, np.float64, n=9)
    refs, ref_labels = _batch(rng, np.float64, n=11)
    beta = np.array([1.1, 1.3, 1.2, 1.0])
    triplets = ml.mine_triplets(x, labels, ref_embeddings=refs, ref_labels=ref_labels, max_per_anchor=4, rng=rng)
    refs_kw = {"ref_embeddings": refs, "ref_labels": ref_labels, "nu": 0.1}
    positional = ml.margin_loss(x, labels, triplets, beta, **refs_kw)
    by_keyword = ml.margin_loss(x, labels, triplets=triplets, beta=beta, **refs_kw)
    expected = ml.textbook.margin_loss(x, labels, triplets, beta, **refs_kw)
    assert [g.shape for g in positional[1]] == [x.shape, beta.shape, refs.shape]
    for ours in (by_keyword, expected):
        assert positional[0] == pytest.approx(ours[0], rel=1e-12)
        for got, want in zip(positional[1], ours[1], strict=True):
            assert_close(got, want, rtol=1e-12)


def test_bad_beta_nu_and_triplets_raise_named_errors():
    x, labels = _batch(np.random.default_rng(5), np.float64)
    with pytest.raises(ValueError, match="nu must be 0 without beta"):
        ml.margin_loss(x, labels, nu=0.1)
    with pytest.raises(ValueError, match="nu must be >= 0"):
        ml.margin_loss(x, labels, beta=np.array([1.0]), nu=-0.1)
    with pytest.raises(ValueError, match=r"beta must have one entry per class, indexed by labels"):
        ml.margin_loss(x, labels, beta=np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\) to index the rows of beta"):
        ml.margin_loss(x, labels - 1, beta=np.ones(4))
    with pytest.raises(TypeError, match="beta must be a float32 or float64 array"):
        ml.margin_loss(x, labels, beta=np.array([1, 1, 1, 1]))
    with pytest.raises(ValueError, match="beta must be a 1-D array"):
        ml.margin_loss(x, labels, beta=np.ones((4, 1)))
    with pytest.raises(TypeError, match="triplets must be a tuple of three index arrays"):
        ml.margin_loss(x, labels, triplets=np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="p of a's class"):
        ml.margin_loss(x, np.array([0, 1] * 10), triplets=(np.array([0]), np.array([1]), np.array([2])))
    with pytest.raises(ValueError, match=r"triplets' n must index \[0, 20\)"):
        ml.margin_loss(x, labels, triplets=(np.array([0]), np.array([1]), np.array([20])))


# --- distance-weighted sampling -------------------------------------------------------------------------------


def _sphere(rng, n, features, dtype=np.float64):
    x = rng.standard_normal((n, features))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def _exact_probabilities(x, labels, a, cutoff=0.5, tau=1.4):
    """Pr(n | a) by the paper's formula, term by term in float64 (Python floats), independent of the library."""
    k = x.shape[1]
    weights = {}
    for j in range(len(x)):
        if labels[j] == labels[a]:
            continue
        d = max(float(np.sqrt(np.sum((x[a].astype(float) - x[j].astype(float)) ** 2))), cutoff)
        weights[j] = 0.0 if d >= tau else d ** (2 - k) * (1 - d * d / 4) ** (-(k - 3) / 2)
    total = sum(weights.values())
    return {j: w / total for j, w in weights.items()}


def test_sampler_is_reproducible_with_a_seed_and_returns_one_triplet_per_positive_pair():
    rng = np.random.default_rng(6)
    x, labels = _sphere(rng, 24, 5), np.repeat(np.arange(6), 4)
    first = distance_weighted_negatives(x, labels, rng=3)
    second = distance_weighted_negatives(x, labels, rng=np.random.default_rng(3))
    for got, expected in zip(first, second, strict=True):
        np.testing.assert_array_equal(got, expected)
    a, p, n = first
    assert a.size == 24 * 3 and all(t.dtype == np.int64 for t in first)
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
    assert not np.array_equal(n, distance_weighted_negatives(x, labels, rng=4)[2])


def _at_distances(rng, anchor, distances):
    """Unit vectors at the given Euclidean distances from the unit vector ``anchor``: cos θ = 1 − d²/2."""
    rows = []
    for d in distances:
        w = rng.standard_normal(anchor.size)
        w -= (w @ anchor) * anchor
        w /= np.linalg.norm(w)
        cos = 1 - d * d / 2
        rows.append(cos * anchor + np.sqrt(1 - cos * cos) * w)
    return np.array(rows)


@pytest.mark.parametrize("features", [3, 4, 8])
def test_sampler_draws_negatives_with_the_exact_probabilities(features):
    """Chi-square of 20000 draws for anchor 0, its negatives at distances from below the cutoff to beyond τ,
    against the probabilities computed term by term. Anchor 0 has 100 positives, each pair (0, p) drawing its
    negative independently from the same distribution (the positives do not enter it): 100 draws per call."""
    from scipy import stats

    rng = np.random.default_rng(7 + features)
    anchor = _sphere(rng, 1, features)[0]
    negatives = _at_distances(rng, anchor, [0.3, 0.45, 0.7, 1.0, 1.2, 1.35, 1.5, 1.9])
    x = np.vstack([anchor, _at_distances(rng, anchor, [0.2] * 100), negatives])
    labels = np.concatenate([np.zeros(101, dtype=int), np.repeat([1, 2, 3, 4], 2)])
    draws = []
    for _ in range(200):
        a, _, n = distance_weighted_negatives(x, labels, rng=rng)
        draws.append(n[a == 0])
    draws = np.concatenate(draws)
    assert draws.size == 20000
    exact = _exact_probabilities(x, labels, 0)
    support = [j for j, p in exact.items() if p > 0]
    assert support == [101, 102, 103, 104, 105, 106] and set(np.unique(draws)) <= set(support)
    observed = np.array([np.count_nonzero(draws == j) for j in support])
    expected = np.array([exact[j] for j in support]) * draws.size
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_sampler_weights_are_pml_weights_where_pml_has_finite_ones(monkeypatch):
    """Capture the weights PML's DistanceWeightedMiner samples from: each row, normalised, is ours."""
    from metricloss import _batch
    from metricloss.mining import _distance_weights

    rng = np.random.default_rng(8)
    x, labels = _sphere(rng, 16, 6), np.repeat(np.arange(4), 4)
    captured = {}
    original = lmu.get_random_triplet_indices

    def capture(labels, ref_labels=None, t_per_anchor=None, weights=None):
        captured["weights"] = weights.numpy()
        return original(labels, ref_labels=ref_labels, t_per_anchor=t_per_anchor, weights=weights)

    monkeypatch.setattr(lmu, "get_random_triplet_indices", capture)
    pml_miners.DistanceWeightedMiner()(torch.tensor(x), torch.as_tensor(labels))
    theirs = captured["weights"]
    ours = _distance_weights(_batch.labelled_batch(x, labels, distance="euclidean"), 0.5, 1.4)
    ours = ours / ours.sum(axis=1, keepdims=True)
    rows = np.isfinite(theirs).all(axis=1) & (theirs.sum(axis=1) > 0)
    assert rows.sum() >= 8
    assert_close(ours[rows], theirs[rows], rtol=1e-9)


@pytest.mark.parametrize("features", [512, 1024])
def test_sampler_never_nan_or_empty_at_high_dimension_in_float32(features):
    """Where q(d) underflows float64 and PML's global-max shift empties rows: every positive pair gets a valid
    negative, drawn inside τ wherever the anchor has one (clustered classes: some near, most at √2)."""
    rng = np.random.default_rng(9)
    centres = _sphere(rng, 8, features)
    x = np.repeat(centres, 4, axis=0) + 0.03 * rng.standard_normal((32, features))
    x[16:] = _sphere(rng, 16, features)  # half the batch far from everything: only the fallback applies
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = np.repeat(np.arange(8), 4)
    a, p, n = distance_weighted_negatives(x, labels, rng=0)
    assert a.size == 32 * 3
    assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    from metricloss import _batch
    from metricloss.mining import _distance_weights

    weights = _distance_weights(_batch.labelled_batch(x, labels, distance="euclidean"), 0.5, 1.4)
    assert np.isfinite(weights).all() and (weights.sum(axis=1) > 0).all()
    assert weights.max(axis=1) == pytest.approx(1.0)


def test_sampler_falls_back_to_uniform_over_the_anchors_negatives():
    """Anchor 0's negatives are all at d >= τ: its draws are uniform over them (chi-square); the positive is never
    drawn."""
    from scipy import stats

    x = np.array([[1.0, 0.0, 0.0], [0.99, 0.141, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    labels = np.array([0, 0, 1, 2, 3])
    rng = np.random.default_rng(10)
    draws = np.array([distance_weighted_negatives(x, labels, rng=rng)[2][0] for _ in range(6000)])
    counts = np.array([np.count_nonzero(draws == j) for j in (2, 3, 4)])
    assert counts.sum() == draws.size
    assert stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize(
    ("description", "x", "labels"),
    [
        ("one class", np.eye(3), np.array([5, 5, 5])),
        ("one sample", np.eye(1, 3), np.array([0])),
        ("no positives", np.eye(3), np.array([0, 1, 2])),
    ],
)
def test_sampler_yields_nothing_without_a_positive_pair_and_a_negative(description, x, labels):
    a, p, n = distance_weighted_negatives(x, labels, rng=0)
    assert a.size == p.size == n.size == 0, description
    assert ml.margin_loss(x, labels, triplets=(a, p, n)) == (0.0, pytest.approx(np.zeros_like(x)))


def test_sampler_with_references_and_bad_hyper_parameters():
    rng = np.random.default_rng(11)
    x, refs = _sphere(rng, 5, 4), _sphere(rng, 9, 4)
    labels, ref_labels = np.array([0, 1, 2, 0, 7]), np.arange(9) % 3
    a, p, n = distance_weighted_negatives(x, labels, ref_embeddings=refs, ref_labels=ref_labels, rng=0)
    assert set(a.tolist()) == {0, 1, 2, 3} and a.size == 4 * 3
    assert (labels[a] == ref_labels[p]).all() and (labels[a] != ref_labels[n]).all()
    with pytest.raises(ValueError, match="cutoff must be > 0"):
        distance_weighted_negatives(x, labels, cutoff=0.0)
    with pytest.raises(ValueError, match="nonzero_loss_cutoff must be > 0"):
        distance_weighted_negatives(x, labels, nonzero_loss_cutoff=-1.0)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        distance_weighted_negatives(x, labels, rng="seed")


def test_sampler_then_loss_trains_with_the_paper_setting():
    """The paper's pipeline: sampled triplets into the margin loss with a learnable per-class β."""
    rng = np.random.default_rng(12)
    x, labels = pk_batch(rng, np.float32, p=4, k=4, features=16)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    beta = np.full(4, 1.2, dtype=np.float32)
    triplets = distance_weighted_negatives(x, labels, rng=rng)
    value, (grad_x, grad_beta) = ml.margin_loss(x, labels, beta=beta, nu=0.1, triplets=triplets)
    assert np.isfinite(value) and value > 0 and grad_x.dtype == grad_beta.dtype == np.float32


# --- memory -----------------------------------------------------------------------------------------------------


def test_all_triplets_memory_is_o_b_squared():
    x, labels = pk_batch(np.random.default_rng(13), np.float64, p=128, k=4, features=16)
    n = x.shape[0]
    beta = np.full(128, 1.2)

    def call():
        return ml.margin_loss(x, labels, beta=beta, nu=0.1)

    call()
    tracemalloc.start()
    call()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= 12 * n * n * x.itemsize, f"peak {peak / (n * n * x.itemsize):.2f} B²·itemsize"


def _rotated_towards(u, v, d):
    """The unit vector at distance d from the unit vector u, in the plane of u and the unit vector v ⟂ u."""
    cos = 1 - d * d / 2
    return cos * u + np.sqrt(1 - cos * cos) * v


def test_pml_drops_an_anchor_whose_weights_underflow_its_global_max_where_this_samples_it():
    """The differences to PML's DistanceWeightedMiner, pinned. In 512 dimensions, float32: anchor 0's negatives
    at d = 0.5 make PML's one global maximum of the log-weights ≈ 370, so anchor 4's (its negatives at d ≈ 1.3,
    log-weights ≈ 6) underflow to 0 and PML leaves anchor 4 out; here each anchor is shifted by its own maximum
    and anchor 4 draws its negatives 6 or 7, the only ones inside τ. And PML draws as many positives per anchor
    as the class has members, with replacement (2 here, the same positive twice); this takes each positive once."""
    e = np.eye(512)
    a0, b0 = e[0], e[2]
    n0, m0 = _rotated_towards(a0, e[1], 0.5), _rotated_towards(b0, e[3], 1.3)
    x = np.array(
        [
            a0,
            _rotated_towards(a0, e[4], 0.1),
            n0,
            _rotated_towards(n0, e[6], 0.1),
            b0,
            _rotated_towards(b0, e[5], 0.1),
            m0,
            _rotated_towards(m0, e[7], 0.1),
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    torch.manual_seed(0)
    pml_a = pml_miners.DistanceWeightedMiner()(torch.tensor(x), torch.as_tensor(labels))[0]
    assert 4 not in pml_a.tolist()
    assert np.bincount(pml_a.numpy(), minlength=8)[0] == 2  # anchor 0: its one positive, drawn twice
    a, p, n = distance_weighted_negatives(x, labels, rng=0)
    np.testing.assert_array_equal(a, np.arange(8))
    np.testing.assert_array_equal(p, [1, 0, 3, 2, 5, 4, 7, 6])
    assert n[4] in (6, 7) and n[5] in (6, 7)
