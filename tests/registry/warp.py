"""Contract cases for WARP (see registry/core.py): ``warp_loss`` on a score matrix and ``warp_embedding_loss`` on two
embedding sets, with every sampling (random, index, exact), both weightings, a cap on the draws and every reduction.

Two kinds of case tell the contract more than their arguments' kinds (``LossCase.permutable_groups`` and
``column_groups``):

* ``sampling="random"``: each (query, positive) pair draws from its own seed, handed out in row-major pair order,
  so permuting the queries hands the seeds to other pairs and changes the draws: the loss is not equivariant under
  a permutation of its rows, and the permutation rung must skip it;
* ``warp_embedding_loss``: queries and items have different rows, and the relevance matrix's rows follow the queries
  while its columns follow the items; the permutation rung, the single-row rung and the hypothesis inputs need to
  know that. Item permutations are honest only for ``sampling="exact"`` (the scans follow the item index).

The textbook twins (``metricloss.textbook.warp_loss`` and ``warp_embedding_loss``) reproduce the documented sampling
scheme from its text (``metricloss._kernels.numpy.warp``): the seeds drawn from ``numpy.random.default_rng(rng)``,
MurmurHash3's fmix32 and the Fisher–Yates draws, in plain Python integers.
"""

import dataclasses
import math

import numpy as np

import metricloss as ml
from metricloss import textbook

from .core import _BAD_REDUCTION, _NEGATIVE_MARGIN, EMBEDDINGS, RELEVANCE, SCORE_MATRIX, _case

# ---------------------------------------------------------------------------------------------------------------
# Inputs: scores of spread 1 against the default margin 1, so that some negatives violate and some do not.


def _relevance(rng, n_queries, n_items):
    relevance = rng.random((n_queries, n_items)) < 0.3
    relevance[0, :2] = True, False  # one query with a positive and a negative, whatever the draw
    return relevance


def _score_matrix(rng, dtype, n_queries=5, n_items=8):
    return [rng.standard_normal((n_queries, n_items)).astype(dtype), _relevance(rng, n_queries, n_items)]


def _embeddings(rng, dtype, n_queries=5, n_items=8, features=3):
    return [
        rng.standard_normal((n_queries, features)).astype(dtype),
        rng.standard_normal((n_items, features)).astype(dtype),
        _relevance(rng, n_queries, n_items),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Literal cases, computed by hand. Margin 1 unless said; a negative j violates (q, p) iff z = 1 − s_qp + s_qj > 0.
#
# Query 0: scores (2, 0.5, 1.8, −1, 1.2), positive item 0 (s⁺ = 2), negatives 1..4 (n = 4): z = s_j − 1 =
#   (−0.5, 0.8, −2, 0.2) for items 1..4: violators 2 and 4.
# Query 1: scores (2.6, 3, 0.4, 2.5, −0.3), positives 1 and 3, negatives 0, 2, 4 (n = 3):
#   positive 1 (s⁺ = 3): z = s_j − 2 = (0.6, −1.6, −2.3): violator 0 only;
#   positive 3 (s⁺ = 2.5): z = s_j − 1.5 = (1.1, −1.1, −1.8): violator 0 only.
_SCORES = np.array([[2.0, 0.5, 1.8, -1.0, 1.2], [2.6, 3.0, 0.4, 2.5, -0.3]])
_RELEVANCE = np.array([[True, False, False, False, False], [False, True, False, True, False]])
_H2, _H3 = 1.5, 11 / 6  # harmonic L(2) = 1 + 1/2, L(3) = 1 + 1/2 + 1/3
_LN3 = math.log(3)

# index, harmonic, sum. (0, 0) scans 1 (no), 2 (yes): T = 2, rank ⌊4/2⌋ = 2: L(2)·0.8 = 1.2.
#   (1, 1) scans 0 (yes): T = 1, rank ⌊3/1⌋ = 3: L(3)·0.6 = 1.1; (1, 3) likewise: L(3)·1.1 = 121/60.
#   ∂/∂s: −L(rank) at the positive, +L(rank) at the violator; item 0 serves both of query 1's positives.
_INDEX_VALUE = 1.2 + 1.1 + 121 / 60
_INDEX_GRAD = np.array([[-_H2, 0, _H2, 0, 0], [2 * _H3, -_H3, 0, -_H3, 0]])
# exact, harmonic, sum. (0, 0): r = 2, L(2)/2·(0.8 + 0.2) = 0.75; (1, 1): r = 1, 0.6; (1, 3): r = 1, 1.1.
#   ∂/∂s: −L(r) at the positive, +L(r)/r at each violator.
_EXACT_VALUE = 0.75 + 0.6 + 1.1
_EXACT_GRAD = np.array([[-_H2, 0, _H2 / 2, 0, _H2 / 2], [2.0, -1.0, 0, -1.0, 0]])
# index, log, max_trials 1, mean over the 3 pairs. (0, 0) draws item 1 only, which does not violate: 0.
#   (1, 1) and (1, 3) find item 0 at T = 1: rank 3, L = ln 3: (0.6 + 1.1)·ln 3 / 3. ∂: ∓ln 3 / 3.
_CAPPED_VALUE = 1.7 * _LN3 / 3
_CAPPED_GRAD = np.array([[0.0] * 5, [2 * _LN3 / 3, -_LN3 / 3, 0, -_LN3 / 3, 0]])
# exact, log, margin 2, mean over the non-zero terms. z = 2 − s⁺ + s_j:
#   (0, 0): z = s_j = (0.5, 1.8, −1, 1.2) for items 1..4: r = 3, ln 3 / 3 · 3.5;
#   (1, 1): z = s_j − 1 = (1.6, −0.6, −1.3): r = 1, L(1) = ln 1 = 0; (1, 3): z = s_j − 0.5 = (2.1, −0.1, −0.8):
#   r = 1, 0. One non-zero term: value 3.5·ln 3 / 3; ∂: −ln 3 at (0, 0), +ln 3 / 3 at items 1, 2, 4.
_EXACT_LOG_VALUE = 3.5 * _LN3 / 3
_EXACT_LOG_GRAD = np.array([[-_LN3, _LN3 / 3, _LN3 / 3, 0, _LN3 / 3], [0.0] * 5])
# random: query 0 has one negative, so every order draws it first: z = 1 − 1 + 0.5 = 0.5, rank ⌊1/1⌋ = 1,
#   L(1) = 1: 0.5, ∂ = (−1, +1). Query 1 has no negative: its two pairs contribute 0.
_ONE_NEGATIVE = [np.array([[1.0, 0.5], [0.3, -0.2]]), np.array([[True, False], [True, True]])]

# Embeddings x_0 = (1, 0); items y = (1, 1), (2, 0), (−1, 0); item 0 is the positive: scores (1, 2, −1).
#   index: item 1 violates at T = 1 (z = 1 − 1 + 2 = 2), rank ⌊2/1⌋ = 2: L(2)·2 = 3.
#     ∂/∂x_0 = 1.5·(y_1 − y_0) = (1.5, −1.5); ∂/∂y_0 = −1.5·x_0; ∂/∂y_1 = +1.5·x_0; ∂/∂y_2 = 0.
#   exact: item 2 has z = 1 − 1 − 1 = −1: r = 1, L(1)·2 = 2, and the same gradients with L = 1.
_EMBEDDING_LITERAL = [
    np.array([[1.0, 0.0]]),
    np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0]]),
    np.array([[1, 0, 0]], bool),
]
_EMBEDDING_GRADS = (np.array([[1.0, -1.0]]), np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))


# ---------------------------------------------------------------------------------------------------------------
# Inputs where nothing is active.

_BEYOND_MARGIN = (
    "every positive above every negative by more than the margin",
    [np.array([[3.0, 0.5, 1.0], [0.0, 2.0, 5.0]]), np.array([[True, False, False], [False, False, True]])],
)
_NO_POSITIVE = ("no query has a positive", [np.array([[0.1, 0.2], [0.3, -0.4]]), np.zeros((2, 2), dtype=bool)])
_NO_NEGATIVE = ("every item relevant to every query", [np.array([[0.1, 0.2], [0.3, -0.4]]), np.ones((2, 2), bool)])
_EMBEDDINGS_BEYOND_MARGIN = (
    "every positive above every negative by more than the margin",
    [np.array([[1.0, 0.0]]), np.array([[3.0, 0.0], [-1.0, 5.0]]), np.array([[True, False]])],
)

_WARP_BAD = (
    _NEGATIVE_MARGIN,
    _BAD_REDUCTION,
    ({"sampling": "uniform"}, ValueError, "sampling must be one of 'random', 'index', 'exact'"),
    ({"weighting": "linear"}, ValueError, "weighting must be one of 'harmonic', 'log'"),
    ({"max_trials": 0}, ValueError, "max_trials must be >= 1"),
    ({"max_trials": 2.5}, TypeError, "max_trials must be an integer"),
    ({"sampling": "exact", "max_trials": 3}, ValueError, "sampling='exact' draws none"),
    ({"sampling": "random", "rng": "seed"}, TypeError, "rng must be a numpy.random.Generator, an int seed or None"),
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
)


def _warp(id, hyper, literals=()):
    return _case(
        f"warp[{id}]",
        ml.warp_loss,
        ("scores", "relevance"),
        (SCORE_MATRIX, RELEVANCE),
        textbook.warp_loss,
        _score_matrix,
        hyper=hyper,
        literals=literals,
        inactive=(_BEYOND_MARGIN, _NO_POSITIVE, _NO_NEGATIVE),
        bad_hyper=_WARP_BAD,
        backends=True,
    )


def _random_warp(id, hyper, literals=()):
    return dataclasses.replace(_warp(id, {"rng": 0, **hyper}, literals), permutable_groups=())


def _embedding(id, hyper, literals=()):
    exact = hyper.get("sampling") == "exact"
    return _case(
        f"warp_embedding[{id}]",
        ml.warp_embedding_loss,
        ("queries", "items", "relevance"),
        (EMBEDDINGS, EMBEDDINGS, RELEVANCE),
        textbook.warp_embedding_loss,
        _embeddings,
        hyper=hyper,
        literals=literals,
        inactive=(_EMBEDDINGS_BEYOND_MARGIN,),
        rotation_invariant=True,  # scores are dot products
        bad_hyper=_WARP_BAD,
        backends=True,
        row_groups=(0, 1, 0),  # queries and the relevance rows; items
        column_groups=(None, None, 1),  # the relevance columns follow the items
        # random draws follow the pair order, index scans the item order; exact permutes with both
        permutable_groups=(0, 1) if exact else () if hyper.get("sampling", "random") == "random" else (0,),
    )


CASES = [
    _warp(
        "index",
        {"sampling": "index"},
        literals=(([_SCORES, _RELEVANCE], _INDEX_VALUE, (_INDEX_GRAD,)),),
    ),
    _warp(
        "index-log-capped-mean",
        {"sampling": "index", "weighting": "log", "max_trials": 1, "reduction": "mean"},
        literals=(([_SCORES, _RELEVANCE], _CAPPED_VALUE, (_CAPPED_GRAD,)),),
    ),
    _warp(
        "exact",
        {"sampling": "exact"},
        literals=(([_SCORES, _RELEVANCE], _EXACT_VALUE, (_EXACT_GRAD,)),),
    ),
    _warp(
        "exact-log-margin-mean_nonzero",
        {"sampling": "exact", "weighting": "log", "margin": 2.0, "reduction": "mean_nonzero"},
        literals=(([_SCORES, _RELEVANCE], _EXACT_LOG_VALUE, (_EXACT_LOG_GRAD,)),),
    ),
    _warp("index-margin0-sum", {"sampling": "index", "margin": 0.0}),
    _random_warp("random", {}, literals=((_ONE_NEGATIVE, 0.5, (np.array([[-1.0, 1.0], [0.0, 0.0]]),)),)),
    _random_warp("random-log-capped-mean", {"weighting": "log", "max_trials": 2, "reduction": "mean"}),
    _random_warp("random-mean_nonzero-margin", {"reduction": "mean_nonzero", "margin": 0.5}),
    _embedding("random", {"rng": 0}),
    _embedding(
        "index",
        {"sampling": "index"},
        literals=((_EMBEDDING_LITERAL, 3.0, tuple(1.5 * g for g in _EMBEDDING_GRADS)),),
    ),
    _embedding("exact", {"sampling": "exact"}, literals=((_EMBEDDING_LITERAL, 2.0, _EMBEDDING_GRADS),)),
    _embedding("random-log-mean", {"rng": 1, "weighting": "log", "reduction": "mean", "max_trials": 3}),
]
