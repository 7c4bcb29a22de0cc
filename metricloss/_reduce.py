"""Reductions ρ: how the per-term losses ℓ_k of a batch become one scalar.

Every reduction here is a scalar weight times the sum of the terms, ρ(ℓ) = w · Σ_k ℓ_k, so that the
gradient of ρ is the same weight times the gradient of each term (the count of non-zero terms is piecewise
constant, so ``"mean_nonzero"`` differentiates like ``"mean"`` with a different divisor):

==================  =======================  ============================================
reduction           w                        when there are no terms (or none > 0)
==================  =======================  ============================================
``"mean"``          1 / n_terms              0
``"sum"``           1                        (the sum is 0)
``"mean_nonzero"``  1 / #{k : ℓ_k > 0}       0
==================  =======================  ============================================
"""

import numpy as np

REDUCTIONS = ("mean", "sum", "mean_nonzero")


def weight_from_counts(reduction, n_terms, n_nonzero):
    """The scalar w with ρ(terms) = w · Σ terms, from the number of terms and of terms > 0."""
    if reduction == "sum":
        return 1.0
    count = int(n_terms if reduction == "mean" else n_nonzero)
    return 1.0 / count if count else 0.0


def reduction_weight(reduction, terms):
    """The scalar w with ρ(terms) = w · Σ terms."""
    return weight_from_counts(reduction, terms.size, np.count_nonzero(terms > 0))


def reduce_terms(terms, dterms, reduction):
    """Value w · Σ terms, accumulated in float64, and the cotangent w · dterms in the terms' dtype."""
    weight = reduction_weight(reduction, terms)
    value = weight * float(np.sum(terms, dtype=np.float64))
    return value, (weight * dterms).astype(terms.dtype, copy=False)
