"""Contract cases for the N-pair loss (see registry/core.py): ``npair_pairs_loss`` on two views (anchors, positives),
alone (Sohn's form), with class labels (TF-Addons' soft targets) and with label sets (TF-Addons' multi-label form),
each with and without the L2 regulariser, on dot products and cosine similarities.

``npair_loss(embeddings, labels)``, the labelled batch, picks the first two samples of each class, as
pytorch-metric-learning does: permuting the batch changes which samples pair up, so its cases skip the permutation
rung (``permutable_groups=()``); test_npair.py pins that order dependence.

Label sets, a 0/1 matrix (N, C), are registered as BINARY: its mutations (a row short, a 2) apply as they are. The
hypothesis rung draws a BINARY argument 1-D, which npair_pairs_loss reads as class ids; test_npair.py draws 2-D
label sets itself.
"""

import math

import numpy as np

import metricloss as ml
from metricloss import textbook

from .core import (
    _BAD_REDUCTION,
    _DUPLICATES_ONE_CLASS,
    _ONE_SAMPLE,
    BINARY,
    EMBEDDINGS,
    LABELS,
    _case,
    _labelled_batch,
)
from .core import _FAR_APART as _ONLY_SINGLETONS

# ---------------------------------------------------------------------------------------------------------------
# Inputs.


def _pairs(rng, dtype, n=6, features=3):
    anchors = 0.8 * rng.standard_normal((n, features))
    positives = anchors + 0.6 * rng.standard_normal((n, features))
    return [anchors.astype(dtype), positives.astype(dtype)]


def _pairs_with_classes(rng, dtype, n=6):
    return [*_pairs(rng, dtype, n), rng.integers(0, 3, size=n)]


def _pairs_with_label_sets(rng, dtype, n=6, n_classes=4):
    indicators = (rng.random((n, n_classes)) < 0.4).astype(int)
    indicators[-1] = 0  # an anchor without a label: left out of the mean, its positive still a negative
    return [*_pairs(rng, dtype, n), indicators]


# ---------------------------------------------------------------------------------------------------------------
# Literal cases, computed by hand.

# Two pairs, anchors = positives = I₂: z = I. Each row: log(e¹ + e⁰) − 1 = log(1 + e⁻¹). Cotangent of the mean:
#   (softmax − target)/2, softmax(1, 0) = (1 − s, s) with s = 1/(1 + e), so G = ½[[−s, s], [s, −s]];
#   ∂L/∂A = G P = G and ∂L/∂P = Gᵀ A = G.
_EYE = np.eye(2)
_S = 1 / (1 + math.e)
_EYE_VALUE = math.log(1 + math.exp(-1))
_EYE_G = 0.5 * np.array([[-_S, _S], [_S, -_S]])
# With λ = 0.1: + (0.1/2)(1 + 1 + 1 + 1) = 0.2, and 2λ/N · f = 0.1 f on each row.
_EYE_REG_G = _EYE_G + 0.1 * _EYE

# Three pairs, anchors = positives = [(1, 0), (0, 1), (0, 0)]: z = diag(1, 1, 0).
#   Rows 0 and 1 have log-normaliser log(e + 2); row 2 log 3.
#   labels (0, 0, 1): rows 0, 1 target ½ on positives 0 and 1: ℓ = log(e + 2) − ½(1 + 0); row 2 target 2: log 3 − 0.
#     Mean: (2 log(e + 2) − 1 + log 3)/3.
#   label sets [(1, 0), (1, 1), (0, 0)]: |∩| rows (1, 1, 0) and (1, 2, 0), row 2 has no label and is left out:
#     ℓ₀ = log(e + 2) − ½·1, ℓ₁ = log(e + 2) − (⅓·0 + ⅔·1); mean log(e + 2) − 7/12.
#   Cotangent rows: softmax(1, 0, 0) = (e, 1, 1)/(e + 2), softmax(0, 1, 0) = (1, e, 1)/(e + 2),
#   softmax(0, 0, 0) = (⅓, ⅓, ⅓), minus the targets, divided by the number of rows counted. With these
#   embeddings ∂L/∂A = G P = the first two columns of G, ∂L/∂P = Gᵀ A = the first two rows of G, transposed.
_TRIO = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
_E2 = math.e + 2
_SOFTMAX_ROWS = np.array([[math.e, 1, 1], [1, math.e, 1], [_E2 / 3] * 3]) / _E2
_TRIO_CLASSES_G = (_SOFTMAX_ROWS - np.array([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1]])) / 3
_TRIO_SETS_G = np.vstack([_SOFTMAX_ROWS[:2] - np.array([[0.5, 0.5, 0], [1 / 3, 2 / 3, 0]]), np.zeros(3)]) / 2


def _trio_grads(g):
    return g[:, :2], g[:2, :].T


_TRIO_CLASSES_VALUE = (2 * math.log(_E2) - 1 + math.log(3)) / 3
_TRIO_SETS_VALUE = math.log(_E2) - 7 / 12

# ---------------------------------------------------------------------------------------------------------------
# Inputs where nothing is active.

_ONE_PAIR = ("one pair: log(1 + 0)", [np.array([[0.3, -0.2, 0.1]]), np.array([[1.0, 2.0, 0.5]])])
_FAR_APART = ("each anchor far closer to its positive", [100 * np.eye(3), 100 * np.eye(3)])  # e^(−10⁴) = 0
_AT_THE_ORIGIN = ("one pair at the origin", [np.zeros((1, 3)), np.zeros((1, 3))])


def _with(description_arrays, *extra):
    description, arrays = description_arrays
    return description, [*arrays, *extra]


_NO_LABEL = ("no anchor has a label", [np.array([[1.0, 0.0], [0.0, 2.0]]), np.ones((2, 2)), np.zeros((2, 3), int)])

_NPAIR_BAD = (
    _BAD_REDUCTION,
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
    ({"similarity": "euclidean"}, ValueError, "similarity must be one of 'dot', 'cosine'"),
    ({"l2_reg": -0.002}, ValueError, "l2_reg must be >= 0.0"),
    ({"l2_reg": "0.002"}, TypeError, "l2_reg must be a real number"),
)


def _npair(id, hyper, *, labels=None, literals=()):
    """One configuration; ``labels`` None (pairs only), LABELS (class ids) or BINARY (label sets)."""
    l2_reg = hyper.get("l2_reg", 0.0)
    if labels is None:
        names, kinds, make = ("anchors", "positives"), (EMBEDDINGS, EMBEDDINGS), _pairs
        inactive = (_AT_THE_ORIGIN,) if l2_reg else (_ONE_PAIR, _FAR_APART)
    elif labels == LABELS:
        names, kinds, make = (
            ("anchors", "positives", "labels"),
            (EMBEDDINGS, EMBEDDINGS, LABELS),
            _pairs_with_classes,
        )
        inactive = (
            (_with(_AT_THE_ORIGIN, np.array([4])),)
            if l2_reg
            else (_with(_ONE_PAIR, np.array([4])), _with(_FAR_APART, np.array([5, 3, 8])))
        )
    else:
        names, kinds, make = (
            ("anchors", "positives", "labels"),
            (EMBEDDINGS, EMBEDDINGS, BINARY),
            _pairs_with_label_sets,
        )
        inactive = (_with(_AT_THE_ORIGIN, np.array([[1, 0]])),) if l2_reg else (_NO_LABEL,)
    if hyper.get("similarity") == "cosine":  # cosine logits lie in [−1, 1]: no anchor is ever far enough apart
        inactive = tuple(entry for entry in inactive if entry[0] != _FAR_APART[0])
    return _case(
        f"npair_pairs[{id}]",
        ml.npair_pairs_loss,
        names,
        kinds,
        textbook.npair_pairs_loss,
        make,
        hyper=hyper,
        literals=literals,
        inactive=inactive,
        rotation_invariant=True,
        bad_hyper=_NPAIR_BAD,
        backends=True,
    )


# The labelled batch of the docstring: rows 0, 3 (class 7) and 2, 4 (class 5) pair up as anchors = positives = I₂,
# row 1 is alone: the two-pair literal above, its cotangent rows scattered to rows 0, 2 (anchors) and 3, 4.
_BATCH = [np.array([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), np.array([7, 9, 5, 7, 5])]
_BATCH_GRAD = np.array([_EYE_G[0], [0.0, 0.0], _EYE_G[1], _EYE_G[0], _EYE_G[1]])


def _npair_batch(id, hyper, literals=()):
    return _case(
        f"npair[{id}]",
        ml.npair_loss,
        ("embeddings", "labels"),
        (EMBEDDINGS, LABELS),
        textbook.npair_loss,
        _labelled_batch,
        hyper=hyper,
        literals=literals,
        # no pair; one pair (log(1 + 0) = 0, but its rows are regularised)
        inactive=(_ONE_SAMPLE, _ONLY_SINGLETONS) + (() if hyper.get("l2_reg") else (_DUPLICATES_ONE_CLASS,)),
        rotation_invariant=True,
        bad_hyper=_NPAIR_BAD,
        permutable_groups=(),  # the first two samples of a class pair up: their order matters
        backends=True,
    )


CASES = [
    _npair("sohn", {}, literals=(([_EYE, _EYE], _EYE_VALUE, (_EYE_G, _EYE_G)),)),
    _npair(
        "sohn-l2_reg",
        {"l2_reg": 0.1},
        literals=(([_EYE, _EYE], _EYE_VALUE + 0.2, (_EYE_REG_G, _EYE_REG_G)),),
    ),
    _npair("sohn-sum", {"reduction": "sum"}),
    _npair(
        "tfa-classes",
        {},
        labels=LABELS,
        literals=(([_TRIO, _TRIO, np.array([0, 0, 1])], _TRIO_CLASSES_VALUE, _trio_grads(_TRIO_CLASSES_G)),),
    ),
    _npair("tfa-classes-contrib-l2_reg", {"l2_reg": 0.002 / 4}, labels=LABELS),  # tf.contrib's reg_lambda=0.002
    _npair(
        "tfa-label-sets",
        {},
        labels=BINARY,
        literals=(([_TRIO, _TRIO, np.array([[1, 0], [1, 1], [0, 0]])], _TRIO_SETS_VALUE, _trio_grads(_TRIO_SETS_G)),),
    ),
    _npair("tfa-label-sets-l2_reg-mean_nonzero", {"l2_reg": 0.05, "reduction": "mean_nonzero"}, labels=BINARY),
    _npair("sohn-cosine", {"similarity": "cosine"}),
    _npair("tfa-classes-cosine-l2_reg", {"similarity": "cosine", "l2_reg": 0.01}, labels=LABELS),
    _npair("tfa-label-sets-cosine", {"similarity": "cosine"}, labels=BINARY),
    _npair_batch("pml-labelled-batch", {}, literals=((_BATCH, _EYE_VALUE, (_BATCH_GRAD,)),)),
    _npair_batch("pml-labelled-batch-l2_reg-sum", {"l2_reg": 0.01, "reduction": "sum"}),
    _npair_batch("pml-default-cosine", {"similarity": "cosine"}),  # NPairsLoss()'s normalising dot product
]
