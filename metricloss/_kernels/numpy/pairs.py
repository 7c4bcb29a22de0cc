"""Pair kernels in NumPy: the contrastive terms of every (anchor, reference) pair and their cotangent, and the
per-class scaling of a cotangent's same-class entries.
"""

import numpy as np

from ._rows import _own_entries, _row_blocks


def contrastive_pairs(d, classes, self_offset, margin, pos_margin, form, out, divide):
    """Every pair (a, j) of anchor and candidate reference, each h = [d − m⁺]₊ if same class (similar) else
    [m − d]₊ (dissimilar), its term ℓ = ½h² (``form`` 0, Hadsell), h² (1) or h (2), computed in float64.

    Writes every element of ``out`` (the shape of d; it may be d itself: each block of rows is read before it is
    written) with the unweighted cotangent ∂ℓ/∂d = ±∂ℓ/∂h (+ similar, − dissimilar; 0 for the anchor's own column
    and wherever ℓ = 0); with ``divide``, that over d (0 where d = 0), the Euclidean VJP's scale. Returns
    per anchor, in columns (similar, dissimilar): the sums of the terms, the number of terms > 0 and the number
    of pairs. Works on blocks of rows, so its temporaries are a few blocks, not B×R arrays.
    """
    # Every form as ℓ = (c₂h + c₁)h, ∂ℓ/∂h = 2c₂h + c₁: Hadsell (c₁, c₂) = (0, ½), squared (0, 1), linear (1, 0).
    c1 = 1.0 if form == 2 else 0.0
    c2 = 0.5 if form == 0 else (1.0 if form == 1 else 0.0)
    n_anchors, n_refs = d.shape
    values = np.zeros((n_anchors, 2))
    n_active = np.zeros((n_anchors, 2), dtype=np.int64)
    n_pairs = np.zeros((n_anchors, 2), dtype=np.int64)
    for rows in _row_blocks(n_anchors, n_refs):
        block = d[rows].astype(np.float64)
        similar = classes.ref_class[None, :] == classes.anchor_class[rows, None]
        candidate = np.ones(block.shape, dtype=bool)
        candidate[_own_entries(rows, self_offset, n_refs)] = False
        h = np.maximum(np.where(similar, block - pos_margin, margin - block), 0.0)
        term, dterm_dh = (c2 * h + c1) * h, 2 * c2 * h + c1
        live = candidate & (term > 0)
        g = np.where(live, np.where(similar, dterm_dh, -dterm_dh), 0.0)
        for column, kind in enumerate((similar, ~similar)):
            values[rows, column] = np.sum(np.where(live & kind, term, 0.0), axis=1)
            n_active[rows, column] = np.count_nonzero(live & kind, axis=1)
            n_pairs[rows, column] = np.count_nonzero(candidate & kind, axis=1)
        if divide:
            g = np.divide(g, block, out=np.zeros_like(g), where=block > 0)
        out[rows] = g
    return values, n_active, n_pairs


def scale_same_class(out, classes, factor):
    """out[a, j] *= factor for every pair of the same class (O(B·K) for classes of K references)."""
    _, anchor_class, class_order, class_starts = classes
    for c in range(class_starts.size - 1):
        anchors = np.flatnonzero(anchor_class == c)
        out[np.ix_(anchors, class_order[class_starts[c] : class_starts[c + 1]])] *= factor
