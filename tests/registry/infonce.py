"""Contract cases for the temperature-scaled cross-entropies on similarities (see registry/core.py): NT-Xent as
pytorch-metric-learning defines it on a labelled batch, Khosla et al.'s supervised contrastive loss (within one
batch and query-vs-reference), and sentence-transformers' multiple-negatives ranking loss (with hard negatives,
symmetric). These losses are smooth: their inputs need no clearance from kinks.
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
    _case,
)
from .modern import _UNMATCHED, _similarity_case

# ---------------------------------------------------------------------------------------------------------------
# Literals, by hand.

# NT-Xent and SupCon, cosine, τ = 1: rows 0-2 equal, (1, 0), of class 0; row 3, (0, 1), of class 1. S = 1 within
# class 0, 0 across. Between equal rows ∂S_ij/∂x_i = x̂_j − S_ij x̂_i = 0; ∂S_a3/∂x_a = (0, 1), ∂S_a3/∂x_3 = (1, 0).
#   NT-Xent: 6 ordered positive pairs, each −log(e / (e + 1)) = log(1 + e⁻¹) (the other positive left out).
#     x_ap = log e⁰ − 1 = −1, σ(−1) = 1/(1 + e); anchor a (0-2) puts w = 1 times 2σ(−1) on S_a3; mean: 1/6.
#     ∂L/∂x_a = (1/6)(2/(1 + e))(0, 1) = (0, 1/(3(1 + e))); ∂L/∂x_3 = 3 (1/6)(2/(1 + e))(1, 0) = (1/(1 + e), 0).
#   SupCon: anchors 0-2, each log(2e + 1) − 1 = log(2 + e⁻¹); anchor 3 has no positive (left out). Mean over 3.
#     Cotangent at S_a3: softmax = 1/(2e + 1), times 1/3: ∂L/∂x_a = (0, 1/(3(2e + 1))), ∂L/∂x_3 = (1/(2e + 1), 0).
_TRIPLE = [np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([0, 0, 0, 1])]
_E = math.e
_NTXENT_TRIPLE = (
    math.log1p(math.exp(-1)),
    (np.array([[0.0, 1 / (3 * (1 + _E))]] * 3 + [[1 / (1 + _E), 0.0]]),),
)
_SUPCON_TRIPLE = (
    math.log(2 + math.exp(-1)),
    (np.array([[0.0, 1 / (3 * (2 * _E + 1))]] * 3 + [[1 / (2 * _E + 1), 0.0]]),),
)

# Ranking, cosine, scale 1: a = p = I₂, S = I. Each row: log(e + 1) − 1 = log(1 + e⁻¹). Cotangent (mean):
#   (softmax − I)/2 = ½[[−s, s], [s, −s]], s = 1/(1 + e). ∂S_ij/∂a_i = p̂_j − S_ij â_i: only j ≠ i pulls, p̂_j;
#   ∂L/∂a_0 = (s/2) p_1 = (0, s/2), ∂L/∂a_1 = (s/2, 0); the positives' the same by symmetry. Symmetric: S is
#   symmetric, so the backward direction is the forward one: the same value and gradients.
#   With the negative n = (1, 1): S(a_i, n) = r = 1/√2, each row log(e + 1 + e^r) − 1 (value only).
_EYE = np.eye(2)
_S_EYE = 1 / (1 + _E)
_EYE_GRAD = np.array([[0.0, _S_EYE / 2], [_S_EYE / 2, 0.0]])
_MNRL_EYE = (math.log1p(math.exp(-1)), (_EYE_GRAD, _EYE_GRAD))
_HARD = np.array([[1.0, 1.0]])
_MNRL_HARD_VALUE = math.log(_E + 1 + math.exp(1 / math.sqrt(2))) - 1

# ---------------------------------------------------------------------------------------------------------------
# Cases.

_BAD_TEMPERATURE = "temperature must be >= 1e-18 and <= 1e+18"
_BATCH_BAD = (
    _BAD_REDUCTION,
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
    ({"temperature": 0.0}, ValueError, _BAD_TEMPERATURE),
    ({"temperature": -0.1}, ValueError, _BAD_TEMPERATURE),
    ({"temperature": 1e19}, ValueError, _BAD_TEMPERATURE),
    ({"temperature": math.inf}, ValueError, "temperature must be finite"),
    ({"temperature": "0.1"}, TypeError, "temperature must be a real number"),
    ({"similarity": "euclidean"}, ValueError, "similarity must be one of 'dot', 'cosine'"),
)


def _ntxent(id, hyper, literals=(), references=False):
    inactive = (_UNMATCHED,) if references else (_ONE_SAMPLE, _DUPLICATES_ONE_CLASS, _FAR_APART)
    return _similarity_case(
        "ntxent",
        id,
        ml.ntxent_loss,
        textbook.ntxent_loss,
        hyper,
        inactive=inactive,
        bad_hyper=_BATCH_BAD,
        literals=literals,
        references=references,
    )


def _supcon(id, hyper, literals=(), references=False):
    # one class of equal rows is no inactive batch here: each anchor's positives compete, log(B − 1) (PML: 0)
    inactive = (_UNMATCHED,) if references else (_ONE_SAMPLE, _FAR_APART)
    return _similarity_case(
        "supcon",
        id,
        ml.supcon_loss,
        textbook.supcon_loss,
        hyper,
        inactive=inactive,
        bad_hyper=_BATCH_BAD,
        literals=literals,
        references=references,
    )


def _pairs(rng, dtype, n=6, features=3):
    anchors = 0.6 * rng.standard_normal((n, features))
    positives = anchors + 0.5 * rng.standard_normal((n, features))
    return [anchors.astype(dtype), positives.astype(dtype)]


def _pairs_and_negatives(rng, dtype, n=6, n_negatives=4, features=3):
    return [*_pairs(rng, dtype, n, features), (0.6 * rng.standard_normal((n_negatives, features))).astype(dtype)]


_ONE_PAIR = ("one anchor and its positive: −log 1", [np.array([[0.3, -0.2, 0.1]]), np.array([[1.0, 2.0, 0.5]])])
_MNRL_BAD = (
    _BAD_REDUCTION,
    ({"backend": "gpu"}, ValueError, "backend must be one of 'numpy', 'numba'"),
    ({"scale": 0.0}, ValueError, "scale must be > 0.0 and <= 1e+18"),
    ({"scale": 1e19}, ValueError, "scale must be > 0.0 and <= 1e+18"),
    ({"scale": "20"}, TypeError, "scale must be a real number"),
    ({"symmetric": "yes"}, TypeError, "symmetric must be True or False"),
    ({"similarity": "euclidean"}, ValueError, "similarity must be one of 'dot', 'cosine'"),
)


def _mnrl(id, hyper, literals=(), negatives=False):
    options = {
        "hyper": hyper,
        "literals": literals,
        "rotation_invariant": True,
        "bad_hyper": _MNRL_BAD,
        "backends": True,
    }
    if not negatives:
        return _case(
            f"multiple_negatives_ranking[{id}]",
            ml.multiple_negatives_ranking_loss,
            ("anchors", "positives"),
            (EMBEDDINGS, EMBEDDINGS),
            textbook.multiple_negatives_ranking_loss,
            _pairs,
            inactive=(_ONE_PAIR,),
            **options,
        )
    return _case(
        f"multiple_negatives_ranking[hard-negatives-{id}]",
        ml.multiple_negatives_ranking_loss,
        ("anchors", "positives", "negatives"),
        (EMBEDDINGS, EMBEDDINGS, EMBEDDINGS),
        textbook.multiple_negatives_ranking_loss,
        _pairs_and_negatives,
        row_groups=(0, 0, 1),
        no_inactive="each anchor's softmax has its positive and a negative in it: every term is > 0",
        **options,
    )


_TAU_1 = {"temperature": 1.0}

CASES = [
    _ntxent("pml", {}),
    _ntxent("literal", {**_TAU_1}, literals=((_TRIPLE, *_NTXENT_TRIPLE),)),
    _ntxent("simclr-tau-0.5-sum", {"temperature": 0.5, "reduction": "sum"}),
    _ntxent("dot-mean_nonzero", {"temperature": 0.5, "similarity": "dot", "reduction": "mean_nonzero"}),
    _ntxent("pml", {}, references=True),
    _supcon("pml", {}),
    _supcon("literal", {**_TAU_1}, literals=((_TRIPLE, *_SUPCON_TRIPLE),)),
    _supcon("pml-mean_nonzero-tau-0.07", {"temperature": 0.07, "reduction": "mean_nonzero"}),
    _supcon("dot-sum", {"temperature": 0.5, "similarity": "dot", "reduction": "sum"}),
    _supcon("pml", {}, references=True),
    _mnrl("sentence-transformers", {}),
    _mnrl("literal", {"scale": 1.0}, literals=(([_EYE, _EYE], *_MNRL_EYE),)),
    _mnrl("symmetric-literal", {"scale": 1.0, "symmetric": True}, literals=(([_EYE, _EYE], *_MNRL_EYE),)),
    _mnrl("dot-sum", {"scale": 1.0, "similarity": "dot", "reduction": "sum"}),
    _mnrl("sentence-transformers", {"scale": 20.0}, negatives=True),
    _mnrl("literal", {"scale": 1.0}, literals=(([_EYE, _EYE, _HARD], _MNRL_HARD_VALUE, None),), negatives=True),
    _mnrl("symmetric-mean_nonzero", {"symmetric": True, "reduction": "mean_nonzero"}, negatives=True),
]
