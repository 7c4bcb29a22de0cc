"""Lifted structure kernels on the GPU (contracts: ``numpy/lifted.py``), each device kernel beside its host wrapper.

negative_softmax and generalized_lifted_rows run one block per anchor: a strided scan of the row for the shift
(the closest negative, the farthest positive), a shared-memory min/max reduction, a strided sum of the shifted
exponentials and a tree sum, then each thread writes the columns it scanned (so out may be d: a thread reads each
of its entries before writing it, and no other thread touches them). lifted_pairs is one block per anchor over
the anchor's class, four tree sums. lifted_cotangent is one thread per entry, the x index on the output's columns
(coalesced writes).
"""

import math

import numpy as np

from ._device import (
    THREADS,
    _device_array,
    _floats_to_device,
    _grid2,
    _indices_to_device,
    _launch,
    _store,
    _to_device,
    _to_host,
    cuda,
)


@cuda.jit
def _negative_softmax_kernel(d, ref_class, anchor_class, margin, out, divide, lse):
    """Block a: lse[a] = log Σ_n e^{m − d_an} over a's negatives, shifted by the closest one (−inf if none), and
    out[a, n] = e^{closest − d_an} / Σ (over d_an with ``divide``, 0 where d_an = 0) on each negative."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    low = cuda.shared.array(THREADS, np.float64)
    total = cuda.shared.array(THREADS, np.float64)
    c = anchor_class[a]
    n_refs = d.shape[1]
    closest = math.inf
    for j in range(t, n_refs, THREADS):
        if ref_class[j] != c:
            closest = min(closest, float(d[a, j]))
    low[t] = closest
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            low[t] = min(low[t], low[t + step])
        cuda.syncthreads()
        step //= 2
    closest = low[0]
    found = closest < math.inf
    acc = 0.0
    if found:
        for j in range(t, n_refs, THREADS):
            if ref_class[j] != c:
                acc += math.exp(closest - float(d[a, j]))
    total[t] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            total[t] += total[t + step]
        cuda.syncthreads()
        step //= 2
    norm = total[0]  # >= 1 when found: the closest negative contributes e^0
    if found:
        for j in range(t, n_refs, THREADS):
            if ref_class[j] != c:
                d_aj = float(d[a, j])
                weight = math.exp(closest - d_aj) / norm
                if divide:
                    weight = weight / d_aj if d_aj > 0 else 0.0
                out[a, j] = weight
    if t == 0:
        lse[a] = margin - closest + math.log(norm) if found else -math.inf


def negative_softmax(d, classes, margin, out, divide):
    """:func:`numpy.lifted.negative_softmax` on the GPU (one block per anchor; out may be d)."""
    if d.shape[0] == 0:
        return np.empty(0)
    d_d = _to_device(d)
    d_out = d_d if out is d else _to_device(out)  # copied in: its entries other than the negatives are kept
    lse = _device_array(d.shape[0], np.float64)
    d_classes = _indices_to_device(classes.ref_class, classes.anchor_class)
    args = (d_d, *d_classes, float(margin), d_out, bool(divide), lse)
    _launch(_negative_softmax_kernel, d.shape[0], THREADS, *args)
    _store(out, d_out)
    return _to_host(lse)


@cuda.jit
def _lifted_pairs_kernel(d, anchor_class, class_order, class_starts, self_offset, row_lse, col_lse, totals):
    """Block a, threads strided over a's class: totals[a] = (Σ_p ½[J_ap]₊², #pairs, #{J > 0}, Σ_p [J_ap]₊ σ_ap),
    J_ap = logaddexp(row_lse[a], col_lse[p]) + d_ap and σ_ap = e^{row_lse[a] − logaddexp(...)}."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    value_sum = cuda.shared.array(THREADS, np.float64)
    pair_sum = cuda.shared.array(THREADS, np.float64)
    active_sum = cuda.shared.array(THREADS, np.float64)
    coef_sum = cuda.shared.array(THREADS, np.float64)
    c = anchor_class[a]
    own = a + self_offset
    value = 0.0
    pairs = 0.0
    active = 0.0
    coef = 0.0
    if c >= 0:
        row = row_lse[a]
        for k in range(class_starts[c] + t, class_starts[c + 1], THREADS):
            p = class_order[k]
            if p != own:
                pairs += 1.0
                column = col_lse[p]
                top = max(row, column)  # logaddexp(row, column), −inf when both are
                pair_lse = top
                if top > -math.inf:
                    pair_lse = top + math.log1p(math.exp(min(row, column) - top))
                hinge = pair_lse + float(d[a, p])
                if hinge > 0:
                    active += 1.0
                    value += 0.5 * hinge * hinge
                    coef += hinge * math.exp(row - pair_lse)
    value_sum[t] = value
    pair_sum[t] = pairs
    active_sum[t] = active
    coef_sum[t] = coef
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            value_sum[t] += value_sum[t + step]
            pair_sum[t] += pair_sum[t + step]
            active_sum[t] += active_sum[t + step]
            coef_sum[t] += coef_sum[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        totals[a, 0] = value_sum[0]
        totals[a, 1] = pair_sum[0]
        totals[a, 2] = active_sum[0]
        totals[a, 3] = coef_sum[0]


def lifted_pairs(d, classes, self_offset, row_lse, col_lse):
    """:func:`numpy.lifted.lifted_pairs` on the GPU (one block per anchor, threads strided over its class)."""
    totals = np.zeros((d.shape[0], 4))
    if d.shape[0]:
        d_totals = _device_array(totals.shape, np.float64)
        lse = _floats_to_device(row_lse, col_lse)
        d_classes = _indices_to_device(classes.anchor_class, classes.class_order, classes.class_starts)
        _launch(_lifted_pairs_kernel, d.shape[0], THREADS, _to_device(d), *d_classes, int(self_offset), *lse, d_totals)
        totals = _to_host(d_totals)
    return totals[:, 0].copy(), totals[:, 1].astype(np.int64), totals[:, 2].astype(np.int64), totals[:, 3].copy()


@cuda.jit
def _lifted_cotangent_kernel(
    d, ref_class, anchor_class, self_offset, row_lse, col_lse, row_coef, col_coef, col_weights, out, divide
):
    """Entry (a, j), j the x index: a negative −row_coef[a]·out[a, j] − col_coef[j]·col_weights[j, a] (the latter
    read only where col_coef[j] != 0), a positive [J_aj]₊ (over d_aj with ``divide``), the anchor itself 0."""
    j, a = cuda.grid(2)
    if a < out.shape[0] and j < out.shape[1]:
        d_aj = float(d[a, j])
        if ref_class[j] != anchor_class[a]:
            g = -row_coef[a] * float(out[a, j])
            if col_coef[j] != 0:
                g -= col_coef[j] * float(col_weights[j, a])
        elif j == a + self_offset:
            g = 0.0
        else:
            row = row_lse[a]
            column = col_lse[j]
            top = max(row, column)  # logaddexp(row, column), −inf when both are
            pair_lse = top
            if top > -math.inf:
                pair_lse = top + math.log1p(math.exp(min(row, column) - top))
            g = max(pair_lse + d_aj, 0.0)
            if divide:
                g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g


def lifted_cotangent(d, classes, self_offset, row_lse, col_lse, row_coef, col_coef, col_weights, out, divide):
    """:func:`numpy.lifted.lifted_cotangent` on the GPU (one thread per entry; out may be d). col_weights is
    copied only where some col_coef is not 0 (within one batch it is out itself, and never read)."""
    if out.size == 0:
        return
    d_d = _to_device(d)
    d_out = d_d if out is d else _to_device(out)  # copied in: it holds the negatives' softmax weights
    col_coef = np.asarray(col_coef, dtype=np.float64)
    d_col_weights = _to_device(col_weights) if np.any(col_coef) else d_out
    floats = _floats_to_device(row_lse, col_lse, row_coef, col_coef)
    d_classes = _indices_to_device(classes.ref_class, classes.anchor_class)
    args = (d_d, *d_classes, int(self_offset), *floats, d_col_weights, d_out)
    _launch(_lifted_cotangent_kernel, *_grid2(*d.shape), *args, bool(divide))
    _store(out, d_out)


@cuda.jit
def _generalized_lifted_kernel(d, ref_class, anchor_class, self_offset, margin, keep_incomplete, out, divide, totals):
    """Block a: totals[a] = (t_a, whether a has a positive and a negative) and row a of out, the softmax weights
    e^{d_ap − farthest}/Σ on the positives and −e^{closest − d_an}/Σ on the negatives where t_a > 0, else 0."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    high = cuda.shared.array(THREADS, np.float64)
    low = cuda.shared.array(THREADS, np.float64)
    pos_sum = cuda.shared.array(THREADS, np.float64)
    neg_sum = cuda.shared.array(THREADS, np.float64)
    c = anchor_class[a]
    own = a + self_offset
    n_refs = d.shape[1]
    farthest = -math.inf
    closest = math.inf
    for j in range(t, n_refs, THREADS):
        d_aj = float(d[a, j])
        if ref_class[j] != c:
            closest = min(closest, d_aj)
        elif j != own:
            farthest = max(farthest, d_aj)
    high[t] = farthest
    low[t] = closest
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            high[t] = max(high[t], high[t + step])
            low[t] = min(low[t], low[t + step])
        cuda.syncthreads()
        step //= 2
    farthest = high[0]
    closest = low[0]
    pos = 0.0
    neg = 0.0
    for j in range(t, n_refs, THREADS):  # a positive exists where farthest > −inf, a negative where closest < inf
        d_aj = float(d[a, j])
        if ref_class[j] != c:
            neg += math.exp(closest - d_aj)
        elif j != own:
            pos += math.exp(d_aj - farthest)
    pos_sum[t] = pos
    neg_sum[t] = neg
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            pos_sum[t] += pos_sum[t + step]
            neg_sum[t] += neg_sum[t + step]
        cuda.syncthreads()
        step //= 2
    pos_total = pos_sum[0]
    neg_total = neg_sum[0]
    has_pos = farthest > -math.inf
    has_neg = closest < math.inf
    empty = 0.0 if keep_incomplete else -math.inf
    pos_lse = farthest + math.log(pos_total) if has_pos else empty
    neg_lse = margin - closest + math.log(neg_total) if has_neg else empty
    total = pos_lse + neg_lse
    live = total > 0
    pos_scale = 1.0 / pos_total if live and has_pos else 0.0
    neg_scale = -1.0 / neg_total if live and has_neg else 0.0
    for j in range(t, n_refs, THREADS):
        d_aj = float(d[a, j])
        g = 0.0
        if ref_class[j] != c:
            g = neg_scale * math.exp(closest - d_aj)
        elif j != own:
            g = pos_scale * math.exp(d_aj - farthest)
        if divide:
            g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g
    if t == 0:
        totals[a, 0] = total if live else 0.0
        totals[a, 1] = 1.0 if has_pos and has_neg else 0.0


def generalized_lifted_rows(d, classes, self_offset, margin, keep_incomplete, out, divide):
    """:func:`numpy.lifted.generalized_lifted_rows` on the GPU (one block per anchor; out may be d)."""
    totals = np.zeros((d.shape[0], 2))
    if d.shape[0]:
        d_d = _to_device(d)
        d_out = d_d if out is d else _device_array(out.shape, out.dtype)  # every element is written
        d_totals = _device_array(totals.shape, np.float64)
        d_classes = _indices_to_device(classes.ref_class, classes.anchor_class)
        args = (d_d, *d_classes, int(self_offset), float(margin), bool(keep_incomplete), d_out, bool(divide), d_totals)
        _launch(_generalized_lifted_kernel, d.shape[0], THREADS, *args)
        _store(out, d_out)
        totals = _to_host(d_totals)
    return totals[:, 0].copy(), totals[:, 1] > 0
