"""Contract cases for the losses that weigh pairs by a softmax over the rows of the similarity matrix (see
registry/core.py): Wang et al.'s multi-similarity loss (with and without its ε pair mining) and Sun et al.'s circle
loss (per anchor and over all pairs, α held constant or differentiated), within one batch and query-vs-reference.

The circle loss holds its weights α constant in the gradient by default (as the reference code and
pytorch-metric-learning do): the gradient it returns is then that of the objective with α frozen at the point,
not the derivative of its value. Those cases give ``frozen_value``, that objective written as a loop (α from the
point's similarities, the rest from the arrays'), and the finite-difference rung differences it instead.
"""

import math

import numpy as np

import metricloss as ml
from metricloss import textbook

from .core import (
    _BAD_REDUCTION,
    _DUPLICATES_ONE_CLASS,
    _FAR_APART,
    _ONE_SAMPLE,
    EMBEDDINGS,
    LABELS,
    _case,
    _labelled_batch,
    _query_reference_batch,
    _reduce,
    _references_first,
)

# ---------------------------------------------------------------------------------------------------------------
# The circle loss's objective with α frozen at a point (its cases' frozen_value), in plain Python over math: the
# textbook twins (metricloss.textbook.multi_similarity_loss, circle_loss) are the cases' oracles for value and gradient.


def _similarity(u, v, similarity):
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    if similarity == "dot":
        return dot
    nu, nv = math.sqrt(sum(a * a for a in u)), math.sqrt(sum(b * b for b in v))
    return 0.0 if nu == 0 or nv == 0 else dot / (nu * nv)


def _log_one_plus_sum_exp(exponents):
    """log(1 + Σ e^v), shifted by the largest exponent, 0 included."""
    top = max([0.0, *exponents])
    return top + math.log(math.exp(-top) + sum(math.exp(v - top) for v in exponents))


def _anchors(x, rest):
    """(labels, references, their labels, within one batch?) from an oracle's (labels) or (refs, labels, ref_labels)."""
    if len(rest) == 1:
        return rest[0], x, rest[0], True
    refs, labels, ref_labels = rest
    return labels, refs, ref_labels, False


def _circle_term(pairs, m, gamma):
    """log(1 + Σ_p Σ_n e^{γ(α_n(s_n − Δ_n) − α_p(s_p − Δ_p))}), the paper's double sum: ``pairs`` is
    (positives, negatives), each a list of (s, s_for_weights), α taken from the second."""
    positives, negatives = pairs
    exponents = [
        gamma * (max(sn_w + m, 0.0) * (sn - m) - max(1 + m - sp_w, 0.0) * (sp - (1 - m)))
        for sp, sp_w in positives
        for sn, sn_w in negatives
    ]
    return _log_one_plus_sum_exp(exponents)


def circle_oracle(
    x,
    *rest,
    margin=0.4,
    scale=80.0,
    form="per_anchor",
    detach_weights=True,
    similarity="cosine",
    reduction="mean_nonzero",
    weights_at=None,
):
    """Sun et al.'s double sum, per anchor over its (positive, negative) pairs, or once over the batch's unordered
    positive and negative pairs (``"all_pairs"``; with references every (query, reference) pair). ``weights_at``:
    the arrays (the same layout as ``(x, *rest)``) whose similarities give α, which are else x's own."""
    m, gamma = margin, scale
    point = (x, *rest) if weights_at is None else weights_at
    labels, refs, ref_labels, within = _anchors(x, rest)
    _, point_refs, _, _ = _anchors(point[0], point[1:])

    def pair(i, j):  # (similarity, similarity the weights are taken from)
        return _similarity(x[i], refs[j], similarity), _similarity(point[0][i], point_refs[j], similarity)

    if form == "all_pairs":
        positives, negatives = [], []
        for i in range(len(x)):
            for j in range(i + 1 if within else 0, len(refs)):
                (positives if labels[i] == ref_labels[j] else negatives).append(pair(i, j))
        return _reduce([_circle_term((positives, negatives), m, gamma)], reduction)
    terms = []
    for a in range(len(x)):
        candidates = [j for j in range(len(refs)) if not (within and j == a)]
        positives = [pair(a, j) for j in candidates if ref_labels[j] == labels[a]]
        negatives = [pair(a, j) for j in candidates if ref_labels[j] != labels[a]]
        terms.append(_circle_term((positives, negatives), m, gamma))
    return _reduce(terms, reduction)


def _frozen_circle(hyper):
    """The objective whose gradient circle_loss returns with α held constant: α frozen at ``point``."""
    if not hyper.get("detach_weights", True):
        return None

    def frozen_value(point, *arrays):
        return circle_oracle(*arrays, **hyper, weights_at=tuple(point))

    return frozen_value


# ---------------------------------------------------------------------------------------------------------------
# Inputs away from the kinks: the ε rule of the mining is a jump in the value (a pair enters or leaves), and with α
# differentiated the circle loss's [s_n + m]₊ (and [1 + m − s_p]₊) is a kink; finite differences (the contract's,
# and the adapters' with steps up to 1e-4) must not straddle one. Inputs are redrawn until every similarity is
# _KINK_CLEARANCE away from them.

_KINK_CLEARANCE = 0.01


def _similarities(x, refs, similarity):
    dot = x @ refs.T
    if similarity == "dot":
        return dot
    return dot / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(refs, axis=1))


def _distance_to_kinks(arrays, hyper, loss):
    """The smallest gap between a similarity of the batch and a kink of the case's loss (inf: no kink)."""
    if len(arrays) == 2:
        (x, labels), refs, ref_labels = arrays, arrays[0], arrays[1]
    else:
        x, refs, labels, ref_labels = arrays
    s = _similarities(np.asarray(x, np.float64), np.asarray(refs, np.float64), hyper.get("similarity", "cosine"))
    positive = labels[:, None] == ref_labels[None, :]
    negative = ~positive
    if len(arrays) == 2:
        np.fill_diagonal(positive, False)
    gaps = [np.inf]
    if loss == "multi_similarity" and hyper.get("mining", "all") == "epsilon":
        epsilon = hyper.get("epsilon", 0.1)
        hardest_positive = np.min(s, axis=1, where=positive, initial=np.inf)[:, None]
        hardest_negative = np.max(s, axis=1, where=negative, initial=-np.inf)[:, None]
        gaps += [np.abs(s - epsilon - hardest_negative)[positive], np.abs(s + epsilon - hardest_positive)[negative]]
    if loss == "circle" and not hyper.get("detach_weights", True):
        m = hyper.get("margin", 0.4)
        gaps += [np.abs(s + m)[negative], np.abs(1 + m - s)[positive]]
    return min(float(np.min(g, initial=np.inf)) for g in gaps)


def _away_from_kinks(make_inputs, hyper, loss):
    def make(rng, dtype):
        for _ in range(200):
            arrays = make_inputs(rng, dtype)
            if _distance_to_kinks(arrays, hyper, loss) > _KINK_CLEARANCE:
                return arrays
        raise AssertionError(f"no input of {loss} {hyper} away from its kinks in 200 draws")

    return make


# ---------------------------------------------------------------------------------------------------------------
# Literals, by hand.

# Multi-similarity, dot products, defaults α = 2, β = 50, λ = 0.5: x0 = (1, 0), x1 = (0.5, 0) of class 0, x2 = (0, 1)
# of class 1: S01 = 0.5, S02 = S12 = 0.
#   anchors 0 and 1: ½ log(1 + e^{−2·0}) = ½ log 2, and (1/50) log(1 + e^{−25}); anchor 2: (1/50) log(1 + 2e^{−25}).
#   ∂L/∂S (mean: 1/3): −w⁺ = −½ on S01 and S10; w⁻ = q = e^{−25}/(1 + e^{−25}) on S02, S12; r = e^{−25}/(1 + 2e^{−25})
#   on S20, S21. Dot products: ∂L/∂x_i = Σ_j (G_ij + G_ji) x_j, so
#   ∂L/∂x0 = (−x1 + (q + r) x2)/3 = (−0.5, q + r)/3, ∂L/∂x1 = (−x0 + (q + r) x2)/3 = (−1, q + r)/3,
#   ∂L/∂x2 = (q + r)(x0 + x1)/3 = (1.5 (q + r), 0)/3.
_MS_X = np.array([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]])
_MS_LABELS = np.array([0, 0, 1])
_E25 = math.exp(-25)
_MS_VALUE = (math.log(2) + 2 * math.log1p(_E25) / 50 + math.log1p(2 * _E25) / 50) / 3
_QR = _E25 / (1 + _E25) + _E25 / (1 + 2 * _E25)
_MS_GRAD = np.array([[-0.5, _QR], [-1.0, _QR], [1.5 * _QR, 0.0]]) / 3

# Mining, dot products, ε = 0.1: x0 = (1, 0), x1 = (0.5, 0) of class 0; x2 = (0.9, 0), x3 = (0, 1) of class 1.
#   S01 = 0.5, S02 = 0.9, S12 = 0.45, every S with x3 is 0.
#   anchor 0: P {0.5}, N {0.9, 0}; keeps 0.5 (0.4 < 0.9), 0.9 (1.0 > 0.5), not 0 (0.1 < 0.5):
#     ½ log(1 + e^0) + (1/50) log(1 + e^{50·0.4})
#   anchor 1: P {0.5}, N {0.45, 0}; keeps 0.5 (0.4 < 0.45), 0.45 (0.55 > 0.5), not 0: ½ log 2 + (1/50) log(1 + e^{−2.5})
#   anchor 2: P {0}, N {0.9, 0.45}; keeps all: ½ log(1 + e^{−2(0 − 0.5)}) + (1/50) log(1 + e^{20} + e^{−2.5})
#   anchor 3: P {0}, N {0, 0}; keeps all: ½ log(1 + e) + (1/50) log(1 + 2e^{−25})
_MINED_X = np.array([[1.0, 0.0], [0.5, 0.0], [0.9, 0.0], [0.0, 1.0]])
_MINED_LABELS = np.array([0, 0, 1, 1])
_MINED_VALUE = (
    math.log(2)
    + math.log1p(math.e)
    + (
        math.log1p(math.exp(20))
        + math.log1p(math.exp(-2.5))
        + math.log(1 + math.exp(20) + math.exp(-2.5))
        + math.log1p(2 * _E25)
    )
    / 50
) / 4

# Circle, cosine, m = 0.25, γ = 1: x0 = (1, 0), x1 = (0, 1) of class 0, x2 = (1, 1) of class 1; s01 = 0,
# s02 = s12 = r = 1/√2. The positive's logit z⁺ = γ α⁺ (Δ⁺ − s) = 1.25 · 0.75 = 0.9375, each negative's
# z⁻ = γ α⁻ (s − Δ⁻) = (r + 0.25)(r − 0.25) = r² − 0.0625 = 0.4375.
#   all pairs: softplus(0.9375 + log(2 e^{0.4375})) = log(1 + 2e^{1.375}); σ = 2e^{1.375}/(1 + 2e^{1.375}), each
#     negative's softmax weight ½. ∂L/∂s01 = −σ γ α⁺ = −1.25σ, ∂L/∂s02 = ∂L/∂s12 = c = σ (r + 0.25)/2.
#     Cosine: ∂s_ij/∂x_i = (x̂_j − s_ij x̂_i)/‖x_i‖: ∂s01/∂x0 = (0, 1), ∂s02/∂x0 = (0, r), ∂s01/∂x1 = (1, 0),
#     ∂s12/∂x1 = (r, 0), and for x2 the two negatives' pulls cancel: ((0.5, −0.5) + (−0.5, 0.5))/√2 = 0. So
#     ∂L/∂x0 = (0, −1.25σ + c r), ∂L/∂x1 = (−1.25σ + c r, 0), ∂L/∂x2 = 0.
#   per anchor: anchors 0 and 1 each softplus(0.9375 + 0.4375) = log(1 + e^{1.375}); anchor 2 has no positive: 0.
#     "mean_nonzero" (w = ½): σ₁ = e^{1.375}/(1 + e^{1.375}); s01 gets −1.25σ₁ (½ from each anchor), s02 and s12
#     ½σ₁(r + 0.25) each: ∂L/∂x0 = (0, σ₁(−1.25 + (r + 0.25) r/2)), ∂L/∂x1 its mirror, ∂L/∂x2 = 0.
#     "mean" (three anchors): ⅔ of the value.
#     α differentiated: the slopes are 2(1 − s) = 2 and 2s = √2 instead of α⁺ = 1.25 and α⁻ = r + 0.25:
#     ∂L/∂x0 = (0, σ₁(−2 + √2 r/2)) = (0, −1.5σ₁).
_CIRCLE_X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
_CIRCLE_LABELS = np.array([0, 0, 1])
_R = 1 / math.sqrt(2)
_SIGMA_ALL = 2 * math.exp(1.375) / (1 + 2 * math.exp(1.375))
_C = _SIGMA_ALL * (_R + 0.25) / 2
_G = -1.25 * _SIGMA_ALL + _C * _R
_CIRCLE_ALL = (math.log1p(2 * math.exp(1.375)), (np.array([[0.0, _G], [_G, 0.0], [0.0, 0.0]]),))
_SIGMA_ONE = math.exp(1.375) / (1 + math.exp(1.375))
_G1 = _SIGMA_ONE * (-1.25 + (_R + 0.25) * _R / 2)
_CIRCLE_PER_ANCHOR = (math.log1p(math.exp(1.375)), (np.array([[0.0, _G1], [_G1, 0.0], [0.0, 0.0]]),))
_G_FULL = -1.5 * _SIGMA_ONE
_CIRCLE_PER_ANCHOR_FULL = np.array([[0.0, _G_FULL], [_G_FULL, 0.0], [0.0, 0.0]])

# ---------------------------------------------------------------------------------------------------------------
# Inputs where nothing is active.

_OPPOSED = (  # cosine 0.995 within each class, −0.995 across: the ε rule keeps no pair
    "two classes pointing opposite ways, every pair easy",
    [np.array([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, 0.1]]), np.array([0, 0, 1, 1])],
)
_UNMATCHED = (
    "no reference shares a query's class",
    [np.array([[1.0, 0.0], [0.0, 1.0]]), np.ones((3, 2)), np.array([0, 0]), np.array([1, 2, 3])],
)

_BAD_SCALE = "must be > 0.0 and <= 1e+18"
_COMMON_BAD = (
    _BAD_REDUCTION,
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
)
_MS_BAD = (
    *_COMMON_BAD,
    ({"positive_scale": -2.0}, ValueError, "positive_scale " + _BAD_SCALE),
    ({"negative_scale": 0.0}, ValueError, "negative_scale " + _BAD_SCALE),
    ({"negative_scale": 1e19}, ValueError, "negative_scale " + _BAD_SCALE),
    ({"threshold": math.nan}, ValueError, "threshold must be finite"),
    ({"threshold": 1e19}, ValueError, "threshold must be >= -1e+18 and <= 1e+18"),
    ({"epsilon": -0.1}, ValueError, "epsilon must be >= 0.0"),
    ({"mining": True}, ValueError, "mining must be one of 'all', 'epsilon'"),
    ({"mining": "hard"}, ValueError, "mining must be one of 'all', 'epsilon'"),
    ({"positive_scale": "2"}, TypeError, "positive_scale must be a real number"),
    ({"similarity": "euclidean"}, ValueError, "similarity must be one of 'dot', 'cosine'"),
)
_CIRCLE_BAD = (
    *_COMMON_BAD,
    ({"margin": -0.1}, ValueError, "margin must be >= 0.0 and < 0.5"),
    ({"margin": 0.5}, ValueError, "margin must be >= 0.0 and < 0.5"),
    ({"scale": -1.0}, ValueError, "scale " + _BAD_SCALE),
    ({"scale": 0}, ValueError, "scale " + _BAD_SCALE),
    ({"form": "pairs"}, ValueError, "form must be one of 'per_anchor', 'all_pairs'"),
    ({"detach_weights": 1}, TypeError, "detach_weights must be True or False"),
    ({"similarity": "dot"}, ValueError, "similarity must be one of 'cosine'"),
)


def _similarity_case(
    family,
    id,
    loss,
    textbook_loss,
    hyper,
    *,
    inactive,
    bad_hyper,
    literals=(),
    references=False,
    frozen=None,
    no_inactive="",
):
    """A loss on the similarity matrix of a labelled batch (``family[id]``) or of a query-vs-reference batch
    (``family_references[id]``): kernels' backends (for the similarities) and rotation invariance; never
    translation invariance (cosine and dot products depend on the origin). Inputs are drawn away from the kinks."""
    options = {
        "hyper": hyper,
        "literals": literals,
        "inactive": inactive,
        "no_inactive": no_inactive,
        "rotation_invariant": True,
        "bad_hyper": bad_hyper,
        "backends": True,
        "frozen_value": frozen,
    }
    if not references:
        make_inputs = _away_from_kinks(_labelled_batch, hyper, family)
        return _case(
            f"{family}[{id}]",
            loss,
            ("embeddings", "labels"),
            (EMBEDDINGS, LABELS),
            textbook_loss,
            make_inputs,
            **options,
        )
    return _case(
        f"{family}_references[{id}]",
        _references_first(loss),
        ("embeddings", "ref_embeddings", "labels", "ref_labels"),
        (EMBEDDINGS, EMBEDDINGS, LABELS, LABELS),
        _references_first(textbook_loss),
        _away_from_kinks(_query_reference_batch, hyper, family),
        row_groups=(0, 1, 0, 1),
        **options,
    )


def _multi_similarity(id, hyper, literals=(), references=False):
    mining = hyper.get("mining", "all") == "epsilon"
    if references:  # without mining every query has a pair (each reference is a positive or a negative): none inactive
        inactive = (_UNMATCHED,) if mining else ()
    else:  # without mining, an anchor's positives cost even without negatives, and its negatives without positives
        inactive = (_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART, _OPPOSED) if mining else (_ONE_SAMPLE,)
    return _similarity_case(
        "multi_similarity",
        id,
        ml.multi_similarity_loss,
        textbook.multi_similarity_loss,
        hyper,
        inactive=inactive,
        no_inactive="" if inactive else "without mining, every reference is a query's positive or negative: each costs",
        bad_hyper=_MS_BAD,
        literals=literals,
        references=references,
    )


def _circle(id, hyper, literals=(), references=False):
    inactive = (_UNMATCHED,) if references else (_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART)
    return _similarity_case(
        "circle",
        id,
        ml.circle_loss,
        textbook.circle_loss,
        hyper,
        inactive=inactive,
        bad_hyper=_CIRCLE_BAD,
        literals=literals,
        references=references,
        frozen=_frozen_circle(hyper),
    )


_GAMMA_1 = {"margin": 0.25, "scale": 1.0}

CASES = [
    _multi_similarity("pml", {}),
    _multi_similarity(
        "dot-literal",
        {"similarity": "dot"},
        literals=(([_MS_X, _MS_LABELS], _MS_VALUE, (_MS_GRAD,)),),
    ),
    _multi_similarity(
        "sum-scales", {"positive_scale": 1.0, "negative_scale": 10.0, "threshold": 0.2, "reduction": "sum"}
    ),
    _multi_similarity("mined", {"mining": "epsilon"}),
    _multi_similarity(
        "mined-dot-literal",
        {"mining": "epsilon", "similarity": "dot"},
        literals=(([_MINED_X, _MINED_LABELS], _MINED_VALUE, None),),
    ),
    _multi_similarity("mined-wide-mean_nonzero", {"mining": "epsilon", "epsilon": 0.5, "reduction": "mean_nonzero"}),
    _multi_similarity("threshold-mean_nonzero", {"threshold": 0.3, "reduction": "mean_nonzero"}, references=True),
    _multi_similarity("mined", {"mining": "epsilon"}, references=True),
    _circle("retrieval-defaults", {}),
    _circle("face-recognition", {"margin": 0.25, "scale": 256.0}),
    _circle(
        "literal",
        {**_GAMMA_1},
        literals=(([_CIRCLE_X, _CIRCLE_LABELS], *_CIRCLE_PER_ANCHOR),),
    ),
    _circle(
        "literal-mean",
        {**_GAMMA_1, "reduction": "mean"},
        literals=(([_CIRCLE_X, _CIRCLE_LABELS], _CIRCLE_PER_ANCHOR[0] * 2 / 3, None),),
    ),
    _circle(
        "literal-full-gradient",
        {**_GAMMA_1, "detach_weights": False},
        literals=(([_CIRCLE_X, _CIRCLE_LABELS], _CIRCLE_PER_ANCHOR[0], (_CIRCLE_PER_ANCHOR_FULL,)),),
    ),
    _circle("full-gradient-sum", {"margin": 0.3, "scale": 64.0, "detach_weights": False, "reduction": "sum"}),
    _circle("all_pairs", {"form": "all_pairs"}),
    _circle(
        "all_pairs-literal",
        {**_GAMMA_1, "form": "all_pairs"},
        literals=(([_CIRCLE_X, _CIRCLE_LABELS], *_CIRCLE_ALL),),
    ),
    _circle("all_pairs-full-gradient", {"form": "all_pairs", "scale": 32.0, "detach_weights": False}),
    _circle("face-recognition", {"margin": 0.25, "scale": 256.0}, references=True),
    _circle("all_pairs", {"form": "all_pairs", "margin": 0.1}, references=True),
]
