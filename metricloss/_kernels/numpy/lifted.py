"""Lifted structure kernels in NumPy (Oh Song et al.'s and Hermans et al.'s generalized form): the negatives'
log-sum-exps and softmax weights, the positive pairs' terms, the cotangent, and the generalized lifted rows.
"""

import numpy as np

from ._rows import _own_entries, _row_blocks


def _logsumexp_rows(exponents):
    """log Σ_j e^{exponents[i, j]} per row in float64, shifted by the row's largest exponent; −inf for a row of
    −inf (an empty sum)."""
    top = exponents.max(axis=1)
    finite = np.isfinite(top)
    shift = np.where(finite, top, 0.0)
    total = np.exp(exponents - shift[:, None]).sum(axis=1)
    return np.where(finite, shift + np.log(np.where(finite, total, 1.0)), -np.inf)


def negative_softmax(d, classes, margin, out, divide):
    """λ_a = log Σ_{n ∈ N(a)} e^{m − d_an} for every anchor a, N(a) its negatives (references of another class;
    never the anchor itself), in float64, shifted by the row's largest exponent m − min_n d_an (no overflow
    whatever m and d); −inf where the anchor has no negative (the log of an empty sum). Returns λ.

    Writes the softmax weights e^{m − d_an − λ_a} of each anchor's negatives over their entries of ``out`` (with
    ``divide``, over d_an, 0 where d_an = 0) and leaves its other entries as they are: out may be d, whose
    positive distances then stay readable.
    """
    lse = np.empty(d.shape[0])
    for rows in _row_blocks(*d.shape):
        block = d[rows].astype(np.float64)
        negative = _negative_mask(classes, rows)
        exponents = np.where(negative, margin - block, -np.inf)
        lse[rows] = _logsumexp_rows(exponents)
        weights = np.exp(exponents - np.where(np.isfinite(lse[rows]), lse[rows], 0.0)[:, None])
        if divide:
            weights = np.divide(weights, block, out=np.zeros_like(weights), where=block > 0)
        out[rows] = np.where(negative, weights, out[rows])
    return lse


def _positive_mask(classes, rows, self_offset):
    """positive[r, j]: reference j is of anchor rows[r]'s class and is not the anchor itself."""
    positive = classes.ref_class[None, :] == classes.anchor_class[rows, None]
    positive[_own_entries(rows, self_offset, classes.ref_class.size)] = False
    return positive


def _negative_mask(classes, rows):
    """negative[r, j]: reference j is of another class than anchor rows[r]."""
    return classes.ref_class[None, :] != classes.anchor_class[rows, None]


def _lifted_hinge(d_block, row_lse, col_lse, positive):
    """[J]₊ on the positive entries (0 elsewhere), J_aj = log(e^{row_lse[a]} + e^{col_lse[j]}) + d_aj, and
    σ_aj = e^{row_lse[a]} / (e^{row_lse[a]} + e^{col_lse[j]}) where [J]₊ > 0 (0 elsewhere)."""
    pair_lse = np.logaddexp(row_lse[:, None], col_lse[None, :])
    hinge = np.where(positive, np.maximum(pair_lse + d_block, 0.0), 0.0)
    live = hinge > 0  # there pair_lse is finite
    share = np.exp(np.where(live, row_lse[:, None] - np.where(live, pair_lse, 0.0), -np.inf))
    return hinge, share


def lifted_pairs(d, classes, self_offset, row_lse, col_lse):
    """The lifted structure terms of every positive pair (a, p), p a reference of a's class other than a:
    J_ap = log(e^{row_lse[a]} + e^{col_lse[p]}) + d_ap, with row_lse = log Σ over a's negatives and col_lse =
    log Σ over p's (−inf where empty: then J = −inf when both are, and the pair costs nothing).

    Returns per anchor, in float64: Σ_p ½[J_ap]₊², the number of positive pairs, the number with J > 0, and
    the coefficient α_a = Σ_p [J_ap]₊ σ_ap with σ_ap = e^{row_lse[a]} / (e^{row_lse[a]} + e^{col_lse[p]}), the
    share of a's negatives in the pair's sum (what :func:`lifted_cotangent` needs).
    """
    n_anchors, n_refs = d.shape
    values, coef = np.zeros(n_anchors), np.zeros(n_anchors)
    n_pairs, n_active = np.zeros(n_anchors, np.int64), np.zeros(n_anchors, np.int64)
    for rows in _row_blocks(n_anchors, n_refs):
        positive = _positive_mask(classes, rows, self_offset)
        hinge, share = _lifted_hinge(d[rows].astype(np.float64), row_lse[rows], col_lse, positive)
        values[rows] = 0.5 * np.sum(hinge * hinge, axis=1)
        n_pairs[rows] = np.count_nonzero(positive, axis=1)
        n_active[rows] = np.count_nonzero(hinge > 0, axis=1)
        coef[rows] = np.sum(hinge * share, axis=1)
    return values, n_pairs, n_active, coef


def lifted_cotangent(d, classes, self_offset, row_lse, col_lse, row_coef, col_coef, col_weights, out, divide):
    """Turns ``out``, which holds the softmax weights of every anchor's negatives (:func:`negative_softmax`, with
    the same ``divide``), into the lifted structure cotangent; every element of out is written:

    * positive pair (a, p): [J_ap]₊ (J as in :func:`lifted_pairs`, d_ap read from d: out may be d, whose positive
      entries :func:`negative_softmax` left alone);
    * negative (a, n): −row_coef[a] · out[a, n] − col_coef[n] · col_weights[n, a], col_weights the references'
      softmax weights (:func:`negative_softmax` on dᵀ), read only where col_coef[n] != 0 (within one batch,
      where col_coef is 0, any array);
    * the anchor's own column: 0;

    positive entries with ``divide`` over d (0 where d = 0), the Euclidean VJP's scale.
    """
    n_anchors, n_refs = d.shape
    for rows in _row_blocks(n_anchors, n_refs):
        block = d[rows].astype(np.float64)
        positive = _positive_mask(classes, rows, self_offset)
        negative = _negative_mask(classes, rows)
        hinge, _ = _lifted_hinge(block, row_lse[rows], col_lse, positive)
        if divide:
            hinge = np.divide(hinge, block, out=np.zeros_like(hinge), where=block > 0)
        g = -row_coef[rows, None] * np.where(negative, out[rows], 0.0)  # out's other entries may be anything
        if np.any(col_coef):
            g -= np.where(col_coef[None, :] != 0, col_coef[None, :] * col_weights[:, rows].T, 0.0)
        out[rows] = np.where(negative, g, hinge)


def generalized_lifted_rows(d, classes, self_offset, margin, keep_incomplete, out, divide):
    """Hermans et al.'s generalized lifted structure term of every anchor a,

        t_a = [log Σ_{p ∈ P(a)} e^{d_ap} + log Σ_{n ∈ N(a)} e^{m − d_an}]₊,

    each log-sum-exp shifted by its largest exponent, in float64. An empty sum's log is −inf (so t_a = 0), or 0
    with ``keep_incomplete`` (pytorch-metric-learning's convention).

    Writes every element of ``out`` (the shape of d; it may be d itself) with the unweighted cotangent
    ∂t_a/∂d: where t_a > 0, the softmax weight e^{d_ap}/Σ on each positive and −e^{m − d_an}/Σ on each negative;
    0 elsewhere; with ``divide``, that over d (0 where d = 0). Returns the terms and whether each anchor has both
    a positive and a negative.
    """
    n_anchors, n_refs = d.shape
    terms, complete = np.zeros(n_anchors), np.zeros(n_anchors, dtype=bool)
    empty = 0.0 if keep_incomplete else -np.inf
    for rows in _row_blocks(n_anchors, n_refs):
        block = d[rows].astype(np.float64)
        positive = _positive_mask(classes, rows, self_offset)
        negative = _negative_mask(classes, rows)
        pos_exponent = np.where(positive, block, -np.inf)
        neg_exponent = np.where(negative, margin - block, -np.inf)
        pos_lse, neg_lse = _logsumexp_rows(pos_exponent), _logsumexp_rows(neg_exponent)
        has_pos, has_neg = positive.any(axis=1), negative.any(axis=1)
        total = np.where(has_pos, pos_lse, empty) + np.where(has_neg, neg_lse, empty)
        terms[rows] = np.maximum(total, 0.0)
        complete[rows] = has_pos & has_neg
        live = (total > 0)[:, None]
        g = np.where(live & positive, np.exp(pos_exponent - np.where(has_pos, pos_lse, 0.0)[:, None]), 0.0)
        g -= np.where(live & negative, np.exp(neg_exponent - np.where(has_neg, neg_lse, 0.0)[:, None]), 0.0)
        if divide:
            g = np.divide(g, block, out=np.zeros_like(g), where=block > 0)
        out[rows] = g
    return terms, complete
