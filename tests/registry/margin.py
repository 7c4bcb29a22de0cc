"""Contract cases for the margin loss (see registry/core.py): the constant β (no ``beta``) on a labelled batch and on
a query-vs-reference batch, every distance and reduction; and a learnable per-class β (a CLASS_PARAMS argument: one
entry per class, indexed by the labels), whose gradient the ladder checks like the embeddings'."""

import numpy as np

import metricloss as ml
from metricloss import textbook

from .core import (
    _BAD_REDUCTION,
    _DUPLICATES_ONE_CLASS,
    _NEGATIVE_MARGIN,
    _ONE_SAMPLE,
    _SYMMETRIC_DISTANCES_ONLY,
    CLASS_PARAMS,
    EMBEDDINGS,
    LABELS,
    _batch_case,
    _case,
)

# ---------------------------------------------------------------------------------------------------------------
# Inputs.


def _embeddings_and_beta(rng, dtype, n=8, n_classes=3, features=3):
    """(embeddings, beta, labels): every class present (so that a shorter β no longer covers the labels)."""
    labels = rng.integers(0, n_classes, size=n)
    labels[:n_classes] = np.arange(n_classes)
    x = (0.6 * rng.standard_normal((n, features))).astype(dtype)
    beta = (1.2 + 0.2 * rng.standard_normal(n_classes)).astype(dtype)
    return [x, beta, labels]


def _beta_second(loss):
    """``loss`` (margin_loss or its textbook twin) with a learnable β as a function of (embeddings, beta, labels):
    the differentiable arrays first, as the contract wants them."""

    def with_beta(embeddings, beta, labels, **hyper):
        return loss(embeddings, labels, None, beta, **hyper)

    return with_beta


# ---------------------------------------------------------------------------------------------------------------
# Literals, by hand. A = (0, 0), B = (1.5, 0) of class 0, C = (1, 0) of class 1; α = 0.2, β = 1.2.
# d_AB = 1.5, d_AC = 1, d_BC = 0.5. Triplets (A, B, C) and (B, A, C); C has no positive.
# Terms: [0.2 + 1.5 − 1.2]₊ = 0.5 twice (AB, BA), [0.2 + 1.2 − 1]₊ = 0.4 (AC), [1.4 − 0.5]₊ = 0.9 (BC).
# mean_nonzero: 2.3 / 4 = 0.575. ∂L/∂d: +¼ on d_AB twice, −¼ on d_AC, −¼ on d_BC; ∂d_AB/∂A = (A − B)/1.5 = (−1, 0),
#   ∂d_AC/∂A = (−1, 0), ∂d_BC/∂B = (1, 0): ∂L/∂A = ¼(−1 − 1 + 1, 0) = (−¼, 0), ∂L/∂B = ¼(1 + 1 − 1, 0) = (¼, 0),
#   ∂L/∂C = ¼((1, 0) − (1, 0)) = 0.
# Learnable per class, β = (1.2, 1.2), ν = 0.1: + ν·¼·(β_0 + β_0) = 0.06 → 0.635. ∂L/∂β_0 = ¼(−1 − 1 + 1 + 1) + ν·¼·2
#   = 0.05; ∂L/∂β_1 = 0 (C anchors no triplet).
_X = np.array([[0.0, 0.0], [1.5, 0.0], [1.0, 0.0]])
_Y = np.array([0, 0, 1])
_GRAD = np.array([[-0.25, 0.0], [0.25, 0.0], [0.0, 0.0]])
_BETA = np.array([1.2, 1.2])

# ---------------------------------------------------------------------------------------------------------------
# Nothing active: samples on their class's point, the classes opposite and 20 apart (every positive pair at 0 <
# β − α, every negative pair beyond β + α, for each distance's hyper-parameters below: the cosine distance 2 too).

_FAR = np.array([[10.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [-10.0, 0.0]])
_FAR_CLASSES = ("two classes far apart, their samples on one point", [_FAR, np.array([0, 0, 1, 1])])
_REFERENCES_INACTIVE = (
    (
        "no reference of a query's class",
        [np.zeros((2, 2)), np.full((3, 2), 5.0), np.array([0, 0]), np.array([1, 2, 3])],
    ),
    (
        "references of the query's class on it, the others far",
        [_FAR[[0, 2]], _FAR, np.array([0, 1]), np.array([0, 0, 1, 1])],
    ),
)
_ONE_CLASS_BETA = (
    "one class: no triplet (no ν term either)",
    [np.tile([[0.5, -1.0, 2.0]], (4, 1)), np.array([1.0, 1.3]), np.zeros(4, dtype=int)],
)
_ONE_SAMPLE_BETA = ("one sample", [np.array([[0.3, -0.2, 0.1]]), np.array([1.0]), np.array([0])])

_BAD = (
    _NEGATIVE_MARGIN,
    _BAD_REDUCTION,
    *_SYMMETRIC_DISTANCES_ONLY,
    ({"nu": -0.1}, ValueError, "nu must be >= 0"),
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
)
_BAD_CONSTANT = (*_BAD, ({"nu": 0.1}, ValueError, "nu must be 0 without beta"))


def _constant(id, hyper, literals=(), references=False):
    return _batch_case(
        "margin",
        id,
        ml.margin_loss,
        textbook.margin_loss,
        hyper,
        literals=literals,
        inactive=_REFERENCES_INACTIVE if references else (_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_CLASSES),
        bad_hyper=_BAD_CONSTANT,
        references=references,
    )


def _learnable(id, hyper, literals=(), inactive=()):
    return _case(
        f"margin_class_beta[{id}]",
        _beta_second(ml.margin_loss),
        ("embeddings", "beta", "labels"),
        (EMBEDDINGS, CLASS_PARAMS, LABELS),
        _beta_second(textbook.margin_loss),
        _embeddings_and_beta,
        hyper=hyper,
        literals=literals,
        inactive=(_ONE_CLASS_BETA, _ONE_SAMPLE_BETA, *inactive),
        translation_invariant=hyper.get("distance", "euclidean") != "cosine",
        rotation_invariant=True,
        bad_hyper=_BAD,
        backends=True,
        row_groups=(0, 1, 0),  # embeddings and their labels; β, one entry per class
    )


_FAR_BETA = ("two classes far apart", [_FAR, np.array([1.1, 1.3]), np.array([0, 0, 1, 1])])

CASES = [
    _constant("paper", {}, literals=(([_X, _Y], 0.575, (_GRAD,)),)),
    _constant("sqeuclidean-sum", {"distance": "sqeuclidean", "reduction": "sum", "margin": 0.3}),
    _constant("cosine-mean", {"distance": "cosine", "reduction": "mean", "margin": 0.5}),
    _constant("paper", {}, references=True),
    _constant("sum", {"reduction": "sum", "margin": 0.3}, references=True),
    _learnable(
        "nu",
        {"nu": 0.1},
        literals=(([_X, _BETA, _Y], 0.635, (_GRAD, np.array([0.05, 0.0]))),),
        inactive=(_FAR_BETA,),
    ),
    _learnable("sum", {"reduction": "sum", "margin": 0.3}, inactive=(_FAR_BETA,)),
    _learnable("cosine-mean-nu", {"distance": "cosine", "reduction": "mean", "nu": 0.2, "margin": 0.1}),
]
