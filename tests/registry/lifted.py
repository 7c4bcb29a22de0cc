"""Contract cases for the lifted structure family (see registry/core.py): Oh Song et al.'s lifted structured loss and
Hermans et al.'s generalized lifted structure loss, within one batch and query-vs-reference, every distance,
reduction and incomplete-anchor convention."""

import math

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
    _batch_case,
)

# ---------------------------------------------------------------------------------------------------------------
# Literals, by hand. A = (0, 0), B = (0, 0.5) of class 0; C = (0.8, 0) of class 1 (and D = (3, 0) of class 1).
# Distances: AB 0.5, AC 0.8, BC √0.89 = r, AD 3, BD √9.25 = s, CD 2.2.
_ABC = np.array([[0.0, 0.0], [0.0, 0.5], [0.8, 0.0]])
_ABC_LABELS = np.array([0, 0, 1])
_ABCD = np.array([[0.0, 0.0], [0.0, 0.5], [0.8, 0.0], [3.0, 0.0]])
_ABCD_LABELS = np.array([0, 0, 1, 1])
_R, _S = math.sqrt(0.89), math.sqrt(9.25)

# Lifted, margin 1, on ABC: one positive pair (A, B); A's negatives {C: 0.8}, B's {C: r}.
#   J = log(e^{0.2} + e^{1 − r}) + 0.5; L = J²/(2·1).
#   ∂L/∂D_AB = J; ∂L/∂D_AC = −J σ, ∂L/∂D_BC = −J (1 − σ), σ = e^{0.2}/(e^{0.2} + e^{1 − r}).
#   ∂D_AB/∂A = (A − B)/0.5 = (0, −1), ∂D_AC/∂A = (A − C)/0.8 = (−1, 0), ∂D_BC/∂B = (B − C)/r = (−0.8, 0.5)/r:
#   ∂L/∂A = J (0, −1) − Jσ (−1, 0) = J (σ, −1);  ∂L/∂B = J (0, 1) − J (1 − σ)(−0.8, 0.5)/r;
#   ∂L/∂C = −(∂L/∂A + ∂L/∂B) (translation invariance).
_J = math.log(math.exp(0.2) + math.exp(1 - _R)) + 0.5
_SIGMA = math.exp(0.2) / (math.exp(0.2) + math.exp(1 - _R))
_LIFTED_GRAD_A = _J * np.array([_SIGMA, -1.0])
_LIFTED_GRAD_B = _J * np.array([0.0, 1.0]) - _J * (1 - _SIGMA) * np.array([-0.8, 0.5]) / _R
_LIFTED_GRAD = np.array([_LIFTED_GRAD_A, _LIFTED_GRAD_B, -(_LIFTED_GRAD_A + _LIFTED_GRAD_B)])
# On ABCD: pairs (A, B) and (C, D); both see the same four negative pairs AC, AD, BC, BD:
#   Λ = log(e^{0.2} + e^{−2} + e^{1 − r} + e^{1 − s}); J_AB = Λ + 0.5, J_CD = Λ + 2.2; L = (J_AB² + J_CD²)/(2·2).
_LAMBDA = math.log(math.exp(0.2) + math.exp(-2.0) + math.exp(1 - _R) + math.exp(1 - _S))
_LIFTED_ABCD = ((_LAMBDA + 0.5) ** 2 + (_LAMBDA + 2.2) ** 2) / 4
# Squared distances, sum, on ABC: D_AB = 0.25, D_AC = 0.64, D_BC = 0.89: ½(log(e^{0.36} + e^{0.11}) + 0.25)².
_LIFTED_SQ_SUM = 0.5 * (math.log(math.exp(0.36) + math.exp(0.11)) + 0.25) ** 2

# Generalized, margin 1, on ABC. A: log e^{0.5} + log e^{1 − 0.8} = 0.7; B: 0.5 + 1 − r; C has no positive.
#   drop, mean over A and B: (2.2 − r)/2. Gradient (w = ½; a single positive or negative has softmax weight 1):
#   ∂L/∂A = w[(A − B)/0.5 − (A − C)/0.8] (anchor A) + w (A − B)/0.5 (B's positive) = w(1, −2) = (0.5, −1);
#   ∂L/∂B = w (B − A)/0.5 + w[(B − A)/0.5 − (B − C)/r] = (0.4/r, 1 − 0.25/r);
#   ∂L/∂C = −w (C − A)/0.8 − w (C − B)/r = (−0.5 − 0.4/r, 0.25/r).
_GENERALIZED = (2.2 - _R) / 2
_GENERALIZED_GRAD = np.array([[0.5, -1.0], [0.4 / _R, 1 - 0.25 / _R], [-0.5 - 0.4 / _R, 0.25 / _R]])
#   keep: C counts too, with its empty positive sum's log taken as 0: [0 + log(e^{0.2} + e^{1 − r})]₊; mean of 3.
_GENERALIZED_KEEP = (2.2 - _R + math.log(math.exp(0.2) + math.exp(1 - _R))) / 3

# ---------------------------------------------------------------------------------------------------------------
# Inputs where nothing is active.

_SEPARATED = (
    "two classes, far apart",
    [np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]]), np.array([0, 0, 1, 1])],
)
_UNMATCHED_FAR = (
    "references far beyond the margin, none of a query's class",
    [np.zeros((2, 2)), np.full((3, 2), 5.0), np.array([0, 0]), np.array([1, 2, 3])],
)


def _bad(with_incomplete_anchors):
    bad = [
        _NEGATIVE_MARGIN,
        _BAD_REDUCTION,
        *_SYMMETRIC_DISTANCES_ONLY,
        ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
    ]
    if with_incomplete_anchors:
        bad.append(({"incomplete_anchors": "skip"}, ValueError, "incomplete_anchors must be one of 'drop', 'keep'"))
    return tuple(bad)


def _lifted(id, hyper, literals=()):
    inactive = [_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART]  # no pair; no negative pair; no positive pair
    if hyper.get("distance") != "cosine":
        inactive.append(_SEPARATED)
    return _batch_case(
        "lifted",
        id,
        ml.lifted_structure_loss,
        textbook.lifted_structure_loss,
        hyper,
        literals=literals,
        inactive=tuple(inactive),
        bad_hyper=_bad(False),
    )


def _lifted_with_references(id, hyper):
    return _batch_case(
        "lifted",
        id,
        ml.lifted_structure_loss,
        textbook.lifted_structure_loss,
        hyper,
        inactive=(_UNMATCHED_FAR,),
        bad_hyper=_bad(False),
        references=True,
    )


def _generalized(id, hyper, literals=()):
    keep = hyper.get("incomplete_anchors") == "keep"
    inactive = [_ONE_SAMPLE, _FAR_APART]  # (kept: every negative beyond the margin, so each term is [log Σ]₊ = 0)
    if not keep:  # kept, a class alone still costs log Σ_p e^{D_ap} = log 3 for duplicated rows
        inactive.append(_DUPLICATES_ONE_CLASS)
    if hyper.get("distance") != "cosine":
        inactive.append(_SEPARATED)
    return _batch_case(
        "generalized_lifted",
        id,
        ml.generalized_lifted_structure_loss,
        textbook.generalized_lifted_structure_loss,
        hyper,
        literals=literals,
        inactive=tuple(inactive),
        bad_hyper=_bad(True),
    )


def _generalized_with_references(id, hyper):
    return _batch_case(
        "generalized_lifted",
        id,
        ml.generalized_lifted_structure_loss,
        textbook.generalized_lifted_structure_loss,
        hyper,
        inactive=(_UNMATCHED_FAR,),
        bad_hyper=_bad(True),
        references=True,
    )


CASES = [
    _lifted(
        "paper",
        {},
        literals=(
            ([_ABC, _ABC_LABELS], _J * _J / 2, (_LIFTED_GRAD,)),
            ([_ABCD, _ABCD_LABELS], _LIFTED_ABCD, None),
        ),
    ),
    _lifted(
        "sqeuclidean-sum",
        {"distance": "sqeuclidean", "reduction": "sum"},
        literals=(([_ABC, _ABC_LABELS], _LIFTED_SQ_SUM, None),),
    ),
    _lifted("cosine-mean_nonzero", {"distance": "cosine", "margin": 0.5, "reduction": "mean_nonzero"}),
    _lifted("no-margin-mean_nonzero", {"margin": 0.0, "reduction": "mean_nonzero"}),
    _lifted_with_references("paper", {}),
    _lifted_with_references("sqeuclidean-sum", {"distance": "sqeuclidean", "reduction": "sum", "margin": 0.5}),
    _lifted_with_references("cosine-mean_nonzero", {"distance": "cosine", "reduction": "mean_nonzero"}),
    _generalized(
        "drop",
        {},
        literals=(([_ABC, _ABC_LABELS], _GENERALIZED, (_GENERALIZED_GRAD,)),),
    ),
    _generalized(
        "keep-pml",
        {"incomplete_anchors": "keep"},
        literals=(([_ABC, _ABC_LABELS], _GENERALIZED_KEEP, None),),
    ),
    _generalized("sqeuclidean-sum", {"distance": "sqeuclidean", "reduction": "sum", "margin": 0.5}),
    _generalized(
        "cosine-keep-mean_nonzero",
        {"distance": "cosine", "margin": 0.2, "reduction": "mean_nonzero", "incomplete_anchors": "keep"},
    ),
    _generalized_with_references("keep-pml", {"incomplete_anchors": "keep"}),
    _generalized_with_references("drop-sqeuclidean", {"distance": "sqeuclidean"}),
]
