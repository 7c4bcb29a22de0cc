"""Lifted structure kernels compiled by Numba (contracts: ``numpy/lifted.py``): the negatives' log-sum-exps and
softmax weights, the positive pairs' terms, the cotangent (with a tiled read of the references' weights), and the
generalized lifted rows.
"""

import numba
import numpy as np

from ._jit import _TILE, _njit, _rows_kernel, _scaled


@_njit()
def _logaddexp(x, y):
    """log(e^x + e^y) for x, y in [−inf, inf), −inf when both are."""
    top = max(x, y)
    if top == -np.inf:
        return top
    return top + np.log1p(np.exp(min(x, y) - top))


@_njit()
def _negative_weights_row(row, ref_class, c, margin, out_row, divide):
    """One row's negatives n (ref_class[n] != c), shifted by the closest one: out_row[n] = e^{closest − row[n]}
    (≤ 1; with ``divide`` over row[n], 0 where row[n] = 0; out_row's other entries untouched, and out_row may be
    row: each entry is read before it is written). Returns (λ, total): total = Σ_n e^{closest − row[n]} and
    λ = log Σ_n e^{margin − row[n]} = margin − closest + log total; (−inf, 0) where there is no negative."""
    closest = np.inf
    for j in range(row.shape[0]):  # vectorised: a select and a min
        closest = min(closest, np.float64(row[j]) if ref_class[j] != c else np.inf)
    if closest == np.inf:
        return -np.inf, 0.0
    total = 0.0
    for j in range(row.shape[0]):  # one exp per negative, for the sum and for the cotangent
        if ref_class[j] != c:
            dj = np.float64(row[j])
            weight = np.exp(closest - dj)
            total += weight
            out_row[j] = _scaled(weight, dj, divide)
    return margin - closest + np.log(total), total


@_rows_kernel
def negative_softmax(d, classes, margin, out, divide):
    ref_class, anchor_class = classes.ref_class, classes.anchor_class
    lse = np.empty(d.shape[0])
    for a in numba.prange(d.shape[0]):
        c = anchor_class[a]
        row_lse, total = _negative_weights_row(d[a], ref_class, c, margin, out[a], divide)
        lse[a] = row_lse
        if total > 0:
            normaliser = 1.0 / total
            for j in range(d.shape[1]):
                if ref_class[j] != c:
                    out[a, j] *= normaliser
    return lse


@_njit()
def _lifted_hinge(d_ap, row_lse_a, col_lse_p):
    """([J]₊, σ) for one positive pair (see numpy/lifted.py's lifted_pairs); σ = 0 where [J]₊ = 0."""
    pair_lse = _logaddexp(row_lse_a, col_lse_p)
    j = pair_lse + d_ap
    if not j > 0:
        return 0.0, 0.0
    return j, np.exp(row_lse_a - pair_lse)


@_rows_kernel
def lifted_pairs(d, classes, self_offset, row_lse, col_lse):
    _, anchor_class, class_order, class_starts = classes
    n_anchors = d.shape[0]
    values, coef = np.zeros(n_anchors), np.zeros(n_anchors)
    n_pairs, n_active = np.zeros(n_anchors, dtype=np.int64), np.zeros(n_anchors, dtype=np.int64)
    for a in numba.prange(n_anchors):
        c = anchor_class[a]
        if c < 0:
            continue
        for m in range(class_starts[c], class_starts[c + 1]):
            p = class_order[m]
            if p == a + self_offset:
                continue
            hinge, share = _lifted_hinge(np.float64(d[a, p]), row_lse[a], col_lse[p])
            n_pairs[a] += 1
            n_active[a] += hinge > 0
            values[a] += 0.5 * hinge * hinge
            coef[a] += hinge * share
    return values, n_pairs, n_active, coef


@_rows_kernel
def lifted_cotangent(d, classes, self_offset, row_lse, col_lse, row_coef, col_coef, col_weights, out, divide):
    ref_class, anchor_class, class_order, class_starts = classes
    n_anchors, n_refs = d.shape
    # Square tiles of rows and columns, so that col_weights[j, a] is read a tile at a time, not down a column.
    for t in numba.prange((n_anchors + _TILE - 1) // _TILE):
        a0, a1 = t * _TILE, min(n_anchors, (t + 1) * _TILE)
        for a in range(a0, a1):
            c = anchor_class[a]
            if c >= 0:  # the anchor's class: its positives (each d_ap read before it is written) and itself
                for m in range(class_starts[c], class_starts[c + 1]):
                    p = class_order[m]
                    d_ap = np.float64(d[a, p])
                    hinge = 0.0 if p == a + self_offset else _lifted_hinge(d_ap, row_lse[a], col_lse[p])[0]
                    out[a, p] = _scaled(hinge, d_ap, divide)
        for j0 in range(0, n_refs, _TILE):  # the negatives: their softmax weights, in out, times the coefficients
            j1 = min(n_refs, j0 + _TILE)
            for a in range(a0, a1):
                c = anchor_class[a]
                coef = row_coef[a]
                for j in range(j0, j1):
                    if ref_class[j] != c:
                        g = -coef * out[a, j]
                        if col_coef[j] != 0:
                            g -= col_coef[j] * col_weights[j, a]
                        out[a, j] = g


@_rows_kernel
def generalized_lifted_rows(d, classes, self_offset, margin, keep_incomplete, out, divide):
    ref_class, anchor_class, class_order, class_starts = classes
    n_anchors, n_refs = d.shape
    terms = np.zeros(n_anchors)
    complete = np.zeros(n_anchors, dtype=np.bool_)
    empty = 0.0 if keep_incomplete else -np.inf
    for a in numba.prange(n_anchors):
        row = d[a]
        c = anchor_class[a]
        start, stop = (class_starts[c], class_starts[c + 1]) if c >= 0 else (0, 0)
        farthest = -np.inf  # the positives' log-sum-exp, shifted by the largest d_ap
        for m in range(start, stop):
            if class_order[m] != a + self_offset:
                farthest = max(farthest, np.float64(row[class_order[m]]))
        pos_total = 0.0
        for m in range(start, stop):
            if class_order[m] != a + self_offset:
                pos_total += np.exp(np.float64(row[class_order[m]]) - farthest)
        has_pos = farthest > -np.inf
        pos_lse = farthest + np.log(pos_total) if has_pos else empty
        # The negatives' weights e^{closest − d_an} (over d_an with divide) go straight to the row of out; the
        # positive entries are left alone, so they stay readable when out is d.
        neg_lse, neg_total = _negative_weights_row(row, ref_class, c, margin, out[a], divide)
        has_neg = neg_total > 0
        if not has_neg:
            neg_lse = empty
        total = pos_lse + neg_lse
        complete[a] = has_pos and has_neg
        live = total > 0
        terms[a] = total if live else 0.0
        # The cotangent: −softmax weights over m − d_an on the negatives, softmax weights over d_ap on the
        # positives (0 for the anchor itself), where the term is live.
        neg_scale = -1.0 / neg_total if live and has_neg else 0.0
        for j in range(n_refs):
            if ref_class[j] != c:
                out[a, j] *= neg_scale
        pos_scale = 1.0 / pos_total if live and has_pos else 0.0
        for m in range(start, stop):
            p = class_order[m]
            d_ap = np.float64(row[p])
            g = 0.0 if p == a + self_offset else pos_scale * np.exp(d_ap - farthest)
            out[a, p] = _scaled(g, d_ap, divide)
    return terms, complete
