"""Contract cases for the triplet-center loss (see registry/core.py): learnable centres (a CENTERS argument, rows of
their own) and batch centres (the class means of the batch), every distance and reduction, both halvings."""

import math

import numpy as np

import metricloss as ml
from metricloss import textbook

from .core import (
    _BAD_REDUCTION,
    _DUPLICATES_ONE_CLASS,
    _NEGATIVE_MARGIN,
    _ONE_SAMPLE,
    _SYMMETRIC_DISTANCES_ONLY,
    CENTERS,
    EMBEDDINGS,
    LABELS,
    _case,
    _labelled_batch,
)

# ---------------------------------------------------------------------------------------------------------------
# Inputs.


def _embeddings_and_centers(rng, dtype, n=8, n_classes=3, features=3):
    """(embeddings, centers, labels), labels[0] = 0 so that any prefix of the rows indexes the first centres."""
    labels = rng.integers(0, n_classes, size=n)
    labels[0] = 0
    x = (0.6 * rng.standard_normal((n, features))).astype(dtype)
    centers = (0.6 * rng.standard_normal((n_classes, features))).astype(dtype)
    return [x, centers, labels]


def _centers_second(loss):
    """``loss`` (triplet_center_loss or its textbook twin) with learnable centres as a function of (embeddings,
    centers, labels): the differentiable arrays first, as the contract wants them."""

    def with_centers(embeddings, centers, labels, **hyper):
        return loss(embeddings, labels, centers, **hyper)

    return with_centers


# ---------------------------------------------------------------------------------------------------------------
# Literals, by hand. A = (0, 0), B = (0, 1) of class 0 and C = (3, 0) of class 1; centres c_0 = (0, 0.5) (the mean
# of A and B) and c_1 = (3, 0) (= C). Squared distances: A: 0.25 to c_0, 9 to c_1; B: 0.25, 10; C: 9.25 to c_0.
_X = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
_Y = np.array([0, 0, 1])
_C = np.array([[0.0, 0.5], [3.0, 0.0]])
# Default (D = ½‖·‖², m = 5, sum): A: 0.125 + 5 − 4.5 = 0.625; B: 0.125 + 5 − 5 = 0.125; C: 0 + 5 − 4.625 = 0.375.
#   Total 1.125. ∂ℓ/∂f = (f − c_y) − (f − c_q) = c_q − c_y: A, B: (3, −0.5); C: (−3, 0.5).
#   ∂ℓ/∂c_y = c_y − f, ∂ℓ/∂c_q = f − c_q: c_0 gets (0, 0.5) + (0, −0.5) [own, A and B] + (3, −0.5) [C's nearest]
#   = (3, −0.5); c_1 gets (−3, 0) + (−3, 1) [A's and B's nearest] + 0 [own, C] = (−6, 1).
_DEFAULT_GRAD_X = np.array([[3.0, -0.5], [3.0, -0.5], [-3.0, 0.5]])
_DEFAULT_GRAD_C = np.array([[3.0, -0.5], [-6.0, 1.0]])
# Batch centres: the same centres, and each mean's gradient shared among its class: c_0's (3, −0.5) / 2 to A and B,
#   c_1's (−6, 1) / 1 to C: A, B: (4.5, −0.75); C: (−9, 1.5).
_BATCH_GRAD = np.array([[4.5, -0.75], [4.5, -0.75], [-9.0, 1.5]])
# Euclidean, not halved, m = 3, mean (the authors' code's form): A: 0.5 + 3 − 3 = 0.5; B: 0.5 + 3 − √10;
#   C: 0 + 3 − √9.25 < 0. Value (4 − √10)/3. ∂d(f, c)/∂f = (f − c)/d:
#   A: (A − c_0)/0.5 − (A − c_1)/3 = (0, −1) − (−1, 0) = (1, −1);
#   B: (B − c_0)/0.5 − (B − c_1)/√10 = (0, 1) − (−3, 1)/√10.
#   c_0: −(A − c_0)/0.5 − (B − c_0)/0.5 = (0, 1) + (0, −1) = 0;
#   c_1: (A − c_1)/3 + (B − c_1)/√10 = (−1, 0) + (−3, 1)/√10.
#   All divided by 3 (the mean over the three terms).
_R10 = math.sqrt(10.0)
_EUCLIDEAN_GRAD_X = np.array([[1.0, -1.0], [3 / _R10, 1 - 1 / _R10], [0.0, 0.0]]) / 3
_EUCLIDEAN_GRAD_C = np.array([[0.0, 0.0], [-1 - 3 / _R10, 1 / _R10]]) / 3

# ---------------------------------------------------------------------------------------------------------------
# Nothing active.

_ONE_CENTRE = (
    "one centre only: no other centre",
    [np.array([[0.3, -0.2], [1.0, 2.0]]), np.array([[0.5, 0.5]]), np.array([0, 0])],
)


def _at_own_centre(far):
    """Each embedding on its own centre, the other centre ``far`` away along the other axis."""
    x = np.array([[far, 0.0], [0.0, far]])
    return ("each embedding on its centre, the other far", [x, x.copy(), np.array([0, 1])])


def _far_classes(far):
    return (
        "two classes far apart, their samples on their means",
        [np.array([[far, 0.0], [far, 0.0], [0.0, far], [0.0, far]]), np.array([0, 0, 1, 1])],
    )


_BAD = (
    _NEGATIVE_MARGIN,
    _BAD_REDUCTION,
    *_SYMMETRIC_DISTANCES_ONLY,
    ({"halved": 1}, TypeError, "halved must be True or False"),
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
)


def _far_for(hyper):
    """A separation that leaves every term inactive under ``hyper``: D(other) − D(own) > m."""
    return 1.0 if hyper.get("distance") == "cosine" else 10.0


def _learnable(id, hyper, literals=()):
    return _case(
        f"triplet_center[{id}]",
        _centers_second(ml.triplet_center_loss),
        ("embeddings", "centers", "labels"),
        (EMBEDDINGS, CENTERS, LABELS),
        _centers_second(textbook.triplet_center_loss),
        _embeddings_and_centers,
        hyper=hyper,
        literals=literals,
        inactive=(_ONE_CENTRE, _at_own_centre(_far_for(hyper))),
        translation_invariant=hyper.get("distance", "sqeuclidean") != "cosine",
        rotation_invariant=True,
        bad_hyper=_BAD,
        backends=True,
        row_groups=(0, 1, 0),  # embeddings and their labels; the centres
    )


def _batch(id, hyper, literals=()):
    return _case(
        f"triplet_center_batch[{id}]",
        ml.triplet_center_loss,
        ("embeddings", "labels"),
        (EMBEDDINGS, LABELS),
        textbook.triplet_center_loss,
        _labelled_batch,
        hyper=hyper,
        literals=literals,
        inactive=(_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _far_classes(_far_for(hyper))),
        translation_invariant=hyper.get("distance", "sqeuclidean") != "cosine",
        rotation_invariant=True,
        bad_hyper=_BAD,
        backends=True,
    )


CASES = [
    _learnable("paper", {}, literals=(([_X, _C, _Y], 1.125, (_DEFAULT_GRAD_X, _DEFAULT_GRAD_C)),)),
    _learnable(
        "euclidean-authors-code",
        {"distance": "euclidean", "halved": False, "margin": 3.0, "reduction": "mean"},
        literals=(([_X, _C, _Y], (4 - _R10) / 3, (_EUCLIDEAN_GRAD_X, _EUCLIDEAN_GRAD_C)),),
    ),
    _learnable("sqeuclidean-mean_nonzero", {"halved": False, "margin": 1.0, "reduction": "mean_nonzero"}),
    _learnable("cosine-mean", {"distance": "cosine", "margin": 0.1, "reduction": "mean"}),
    _batch("paper", {}, literals=(([_X, _Y], 1.125, (_BATCH_GRAD,)),)),
    _batch("euclidean-mean", {"distance": "euclidean", "margin": 0.5, "reduction": "mean"}),
    _batch("sqeuclidean-not-halved-mean_nonzero", {"halved": False, "margin": 0.5, "reduction": "mean_nonzero"}),
    _batch("cosine-sum", {"distance": "cosine", "margin": 0.2, "halved": False}),
]
