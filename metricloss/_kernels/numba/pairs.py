"""Pair kernels compiled by Numba (contracts: ``numpy/pairs.py``): the contrastive terms and their cotangent, and the
per-class scaling of a cotangent's same-class entries.
"""

import numba
import numpy as np

from ._jit import _rows_kernel


@_rows_kernel
def contrastive_pairs(d, classes, self_offset, margin, pos_margin, form, out, divide):
    ref_class, anchor_class = classes.ref_class, classes.anchor_class
    # Every form as ℓ = (c₂h + c₁)h with ∂ℓ/∂h = 2c₂h + c₁: Hadsell (c₁, c₂) = (0, ½), squared (0, 1), linear
    # (1, 0); so the row loop has no branch on the form, only selects, and vectorises.
    c1 = 1.0 if form == 2 else 0.0
    c2 = 0.5 if form == 0 else (1.0 if form == 1 else 0.0)
    n_anchors, n_refs = d.shape
    values = np.zeros((n_anchors, 2))
    n_active = np.zeros((n_anchors, 2), dtype=np.int64)
    n_pairs = np.zeros((n_anchors, 2), dtype=np.int64)
    for a in numba.prange(n_anchors):
        c = anchor_class[a]
        self_column = a + self_offset
        sum_similar = 0.0
        sum_dissimilar = 0.0
        active_similar = 0
        active_dissimilar = 0
        similar_pairs = 0
        for j in range(n_refs):  # vectorised: selects, no branches
            dj = np.float64(d[a, j])
            similar = ref_class[j] == c
            h = max(dj - pos_margin if similar else margin - dj, 0.0)
            term = (c2 * h + c1) * h
            live = (j != self_column) & (term > 0)
            sum_similar += term if live & similar else 0.0
            sum_dissimilar += term if live & (not similar) else 0.0
            active_similar += live & similar
            active_dissimilar += live & (not similar)
            similar_pairs += similar
            slope = 2.0 * c2 * h + c1
            slope = (slope if similar else -slope) if live else 0.0
            if divide:
                quotient = slope / (dj if dj > 0 else 1.0)  # no 0/0: both selects vectorise
                slope = quotient if dj > 0 else 0.0
            out[a, j] = slope
        own = 1 if 0 <= self_column < n_refs else 0  # the anchor's own column, of its own class
        values[a, 0] = sum_similar
        values[a, 1] = sum_dissimilar
        n_active[a, 0] = active_similar
        n_active[a, 1] = active_dissimilar
        n_pairs[a, 0] = similar_pairs - own
        n_pairs[a, 1] = n_refs - similar_pairs
    return values, n_active, n_pairs


@_rows_kernel
def scale_same_class(out, classes, factor):
    _, anchor_class, class_order, class_starts = classes
    for a in numba.prange(out.shape[0]):
        c = anchor_class[a]
        if c < 0:
            continue
        for m in range(class_starts[c], class_starts[c + 1]):
            out[a, class_order[m]] *= factor
