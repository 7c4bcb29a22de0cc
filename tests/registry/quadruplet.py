"""Contract cases for the quadruplet family (see registry/core.py): quadruplet_loss on a labelled batch and
quadruplet_margin_loss on explicit rows, each option value at least once, with their textbook twins (the paper's
formula as loops, Chen et al. 2017), hand-computed literals and inputs where nothing is active."""

import numpy as np

import metricloss as ml
from metricloss import textbook

from .core import (
    _BAD_REDUCTION,
    _DUPLICATES_ONE_CLASS,
    _FAR_APART,
    _NEGATIVE_MARGIN,
    _ONE_SAMPLE,
    _SYMMETRIC_DISTANCES_ONLY,
    EMBEDDINGS,
    LABELS,
    _case,
)

# ---------------------------------------------------------------------------------------------------------------
# Inputs: classes around their own centres, so that the mean negative distance exceeds the mean positive one
# (adaptive margins > 0) and some terms are active, some not; four classes, each with a positive pair.


def _quadruplet_batch(rng, dtype, n=9, features=3):
    labels = rng.permutation(np.arange(n) % 4)
    centers = 0.5 * rng.standard_normal((4, features))
    return [(centers[labels] + 0.6 * rng.standard_normal((n, features))).astype(dtype), labels]


def _quadruplet_rows(rng, dtype, n=6, features=4):
    anchor = rng.standard_normal((n, features))
    positive = anchor + 0.6 * rng.standard_normal((n, features))
    negative = anchor + 0.9 * rng.standard_normal((n, features))
    negative2 = negative + 1.1 * rng.standard_normal((n, features))
    return [a.astype(dtype) for a in (anchor, positive, negative, negative2)]


# ---------------------------------------------------------------------------------------------------------------
# Literals, by hand. A = (0, 0), A' = (0, 1) of class 0, B = (1, −0.5) of class 1, C = (1.5, 0.5) of class 2;
# squared distances: AA' 1, AB 1.25, AC 2.5, A'B 3.25, A'C 2.5, BC 1.25. ∂d(u, v)/∂u = 2(u − v).
_Q = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, -0.5], [1.5, 0.5]])
_Q_LABELS = np.array([0, 0, 1, 2])
# Default (all, α₁ = 1, α₂ = 0.5, each term's mean). Triplets: (A, A', B) 1 − 1.25 + 1 = 0.75, (A, A', C)
#   1 − 2.5 + 1 < 0, (A', A, B) 1 − 3.25 + 1 < 0, (A', A, C) 1 − 2.5 + 1 < 0: mean 0.75/4. One quadruplet,
#   {A, A'} × {B, C}: 1 − 1.25 + 0.5 = 0.25, mean 0.25. Value 0.1875 + 0.25 = 0.4375.
#   ∂L/∂d: AA' 1/4 + 1 (both terms), AB −1/4, BC −1. ∂L/∂A = 2.5(A − A') − 0.5(A − B) = (0.5, −2.75);
#   ∂L/∂A' = −2.5(A − A') = (0, 2.5); ∂L/∂B = 0.5(A − B) − 2(B − C) = (0.5, 2.25); ∂L/∂C = 2(B − C) = (−1, −2).
_Q_ALL_GRAD = np.array([[0.5, -2.75], [0.0, 2.5], [0.5, 2.25], [-1.0, -2.0]])
# Hard: μ_p = 1, μ_n = (1.25 + 2.5 + 3.25 + 2.5 + 1.25)/5 = 2.15, so α₁ = 1.15, α₂ = 0.575. Triplets: (A, A', B)
#   1 − 1.25 + 1.15 = 0.9, the others < 0: mean 0.9/4; quadruplet 1 − 1.25 + 0.575 = 0.325. Value 0.55.
#   κ = 1·(1/4)·1 + 0.5·1·1 = 0.75: ∂L/∂d gains −κ/1 on AA' and +κ/5 = 0.15 on each negative pair, so
#   ∂L/∂d: AA' 1/4 + 1 − 0.75 = 0.5, AB −1/4 + 0.15 = −0.1, AC = A'B = A'C = 0.15, BC −1 + 0.15 = −0.85.
#   ∂L/∂A = 0.5·2(A − A') − 0.1·2(A − B) + 0.15·2(A − C) = (−0.25, −1.25);
#   ∂L/∂A' = 0.5·2(A' − A) + 0.15·2(A' − B) + 0.15·2(A' − C) = (−0.75, 1.6);
#   ∂L/∂B = −0.1·2(B − A) + 0.15·2(B − A') − 0.85·2(B − C) = (0.95, 1.35);
#   ∂L/∂C = 0.15·2(C − A) + 0.15·2(C − A') − 0.85·2(C − B) = (0.05, −1.7).
_Q_HARD_GRAD = np.array([[-0.25, -1.25], [-0.75, 1.6], [0.95, 1.35], [0.05, -1.7]])
# Rows (a, p, n, n2) = (A, A', B, C): [1 − 1.25 + 1]₊ + [1 − 1.25 + 0.5]₊ = 1.0; ∂L/∂d(a,p) = 2, ∂L/∂d(a,n) = −1,
#   ∂L/∂d(n,n2) = −1: ∂L/∂a = 4(a − p) − 2(a − n) = (2, −5), ∂L/∂p = −4(a − p) = (0, 4),
#   ∂L/∂n = 2(a − n) − 2(n − n2) = (−1, 3), ∂L/∂n2 = 2(n − n2) = (−1, −2).
_ROW = [_Q[[0]], _Q[[1]], _Q[[2]], _Q[[3]]]
_ROW_GRADS = (np.array([[2.0, -5.0]]), np.array([[0.0, 4.0]]), np.array([[-1.0, 3.0]]), np.array([[-1.0, -2.0]]))
# Hard, one row with n2 = (2, 1): d(n, n2) = 3.25, μ_p = 1, μ_n = (1.25 + 3.25)/2 = 2.25, α₁ = 1.25, α₂ = 0.625:
#   [1 − 1.25 + 1.25]₊ = 1, [1 − 3.25 + 0.625]₊ = 0. κ = 1·1·1: ∂L/∂d(a,p) = 1 − κ = 0, ∂L/∂d(a,n) = −1 + κ/2 =
#   −0.5, ∂L/∂d(n,n2) = κ/2 = 0.5: ∂L/∂a = −(a − n) = (1, −0.5), ∂L/∂p = 0, ∂L/∂n = (a − n) + (n − n2) = (−2, −1),
#   ∂L/∂n2 = −(n − n2) = (1, 1.5).
_ROW_HARD = [_Q[[0]], _Q[[1]], _Q[[2]], np.array([[2.0, 1.0]])]
_ROW_HARD_GRADS = (
    np.array([[1.0, -0.5]]),
    np.array([[0.0, 0.0]]),
    np.array([[-2.0, -1.0]]),
    np.array([[1.0, 1.5]]),
)

# ---------------------------------------------------------------------------------------------------------------
# Nothing active.

_SEPARATED_THREE = (
    "three classes far apart, each tight",
    [
        np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1], [0.0, 10.0], [0.0, 10.1]]),
        np.array([0, 0, 1, 1, 2, 2]),
    ],
)
_SATISFIED_ROWS = (
    "every row satisfied (in every distance)",
    [
        np.array([[1.0, 0.0], [0.0, 2.0]]),
        np.array([[1.0, 0.01], [0.02, 2.0]]),
        np.array([[-1.0, 0.0], [0.0, -2.0]]),
        np.array([[0.0, 1.0], [-2.0, 0.0]]),
    ],
)
# Adaptive margins at their kink: d(a,p) = 0.25, d(a,n) = d(n,n2) = 4, so α₁ = 3.75 and the first term is exactly
# 0 (inactive: a hinge is active iff > 0), the second 0.25 − 4 + 1.875 < 0.
_HARD_ROW_AT_THE_KINK = (
    "adaptive margins with the first term at exactly 0",
    [np.zeros((1, 2)), np.array([[0.0, 0.5]]), np.array([[2.0, 0.0]]), np.array([[2.0, 2.0]])],
)

_BAD = (
    _NEGATIVE_MARGIN,
    _BAD_REDUCTION,
    ({"margin2": -0.5}, ValueError, "margin2 must be >= 0"),
    ({"adaptive_margins": "hard"}, TypeError, "adaptive_margins must be True or False"),
    *_SYMMETRIC_DISTANCES_ONLY,
    ({"split_reduction": 1}, TypeError, "split_reduction must be True or False"),
)


def _quadruplet(id, hyper, literals=()):
    inactive = [_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART]
    if not hyper.get("adaptive_margins", False) and hyper.get("distance") != "cosine":
        inactive.append(_SEPARATED_THREE)
    return _case(
        f"quadruplet[{id}]",
        ml.quadruplet_loss,
        ("embeddings", "labels"),
        (EMBEDDINGS, LABELS),
        textbook.quadruplet_loss,
        _quadruplet_batch,
        hyper=hyper,
        literals=literals,
        inactive=tuple(inactive),
        translation_invariant=hyper.get("distance") != "cosine",
        rotation_invariant=True,
        bad_hyper=(*_BAD, ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'")),
        backends=True,
    )


def _quadruplet_margin(id, hyper, literals=()):
    inactive = (_HARD_ROW_AT_THE_KINK,) if hyper.get("adaptive_margins", False) else (_SATISFIED_ROWS,)
    return _case(
        f"quadruplet_margin[{id}]",
        ml.quadruplet_margin_loss,
        ("anchors", "positives", "negatives", "negatives2"),
        (EMBEDDINGS,) * 4,
        textbook.quadruplet_margin_loss,
        _quadruplet_rows,
        hyper=hyper,
        literals=literals,
        inactive=inactive,
        translation_invariant=hyper.get("distance") != "cosine",
        rotation_invariant=True,
        bad_hyper=_BAD,
    )


CASES = [
    _quadruplet("all", {}, literals=(([_Q, _Q_LABELS], 0.4375, (_Q_ALL_GRAD,)),)),
    _quadruplet("adaptive", {"adaptive_margins": True}, literals=(([_Q, _Q_LABELS], 0.55, (_Q_HARD_GRAD,)),)),
    _quadruplet("all-euclidean-sum", {"distance": "euclidean", "reduction": "sum", "margin": 0.8, "margin2": 0.3}),
    _quadruplet("all-cosine-mean_nonzero", {"distance": "cosine", "reduction": "mean_nonzero", "margin2": 0.2}),
    _quadruplet("all-pooled-mean", {"split_reduction": False, "margin": 1.5}),
    _quadruplet(
        "adaptive-euclidean-mean_nonzero",
        {"adaptive_margins": True, "distance": "euclidean", "reduction": "mean_nonzero"},
    ),
    _quadruplet(
        "adaptive-cosine-pooled-sum",
        {"adaptive_margins": True, "distance": "cosine", "reduction": "sum", "split_reduction": False},
    ),
    _quadruplet_margin("default", {}, literals=((_ROW, 1.0, _ROW_GRADS),)),
    _quadruplet_margin("adaptive", {"adaptive_margins": True}, literals=((_ROW_HARD, 1.0, _ROW_HARD_GRADS),)),
    _quadruplet_margin("euclidean-roth", {"distance": "euclidean", "margin": 0.2, "margin2": 0.2}),
    _quadruplet_margin("cosine-sum", {"distance": "cosine", "reduction": "sum", "margin": 0.4, "margin2": 0.1}),
    _quadruplet_margin("pooled-mean_nonzero", {"split_reduction": False, "reduction": "mean_nonzero"}),
    _quadruplet_margin(
        "adaptive-euclidean-pooled", {"adaptive_margins": True, "distance": "euclidean", "split_reduction": False}
    ),
]
