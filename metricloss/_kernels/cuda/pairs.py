"""Pair kernels on the GPU (contracts: ``numpy/pairs.py``), each device kernel beside its host wrapper: the
contrastive terms and their cotangent, and the per-class scaling of a cotangent's same-class entries.
"""

import numpy as np

from ._device import THREADS, _device_array, _indices_to_device, _launch, _store, _to_device, _to_host, cuda


@cuda.jit
def _contrastive_kernel(d, ref_class, anchor_class, self_offset, margin, pos_margin, c1, c2, out, divide, totals):
    """Block a: row a of out (the slopes ±(2c₂h + c₁) of the terms ℓ = (c₂h + c₁)h > 0), and totals[a] = (Σ ℓ
    similar, Σ ℓ dissimilar, #active similar, #active dissimilar, #similar pairs, #dissimilar pairs)."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    partial = cuda.shared.array((6, THREADS), np.float64)
    c = anchor_class[a]
    own = a + self_offset
    value_similar = 0.0
    value_dissimilar = 0.0
    active_similar = 0.0
    active_dissimilar = 0.0
    pairs_similar = 0.0
    pairs_dissimilar = 0.0
    for j in range(t, d.shape[1], THREADS):
        d_aj = float(d[a, j])
        similar = ref_class[j] == c
        h = max(d_aj - pos_margin if similar else margin - d_aj, 0.0)
        term = (c2 * h + c1) * h
        g = 0.0
        if j != own:
            if similar:
                pairs_similar += 1.0
            else:
                pairs_dissimilar += 1.0
            if term > 0:
                g = 2.0 * c2 * h + c1
                if similar:
                    value_similar += term
                    active_similar += 1.0
                else:
                    value_dissimilar += term
                    active_dissimilar += 1.0
                    g = -g
        if divide:
            g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g
    partial[0, t] = value_similar
    partial[1, t] = value_dissimilar
    partial[2, t] = active_similar
    partial[3, t] = active_dissimilar
    partial[4, t] = pairs_similar
    partial[5, t] = pairs_dissimilar
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            for r in range(6):
                partial[r, t] += partial[r, t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        for r in range(6):
            totals[a, r] = partial[r, 0]


def contrastive_pairs(d, classes, self_offset, margin, pos_margin, form, out, divide):
    """:func:`numpy.pairs.contrastive_pairs` on the GPU: one block per anchor, a thread per column (strided),
    the six per-anchor totals by shared-memory tree reductions. O(B·R) time; out may be d."""
    c1 = 1.0 if form == 2 else 0.0  # ℓ = (c₂h + c₁)h, as in the reference
    c2 = 0.5 if form == 0 else (1.0 if form == 1 else 0.0)
    totals = np.zeros((d.shape[0], 6))
    if d.shape[0]:
        d_totals = _device_array(totals.shape, np.float64)
        d_out = _device_array(out.shape, out.dtype)
        d_classes = _indices_to_device(classes.ref_class, classes.anchor_class)
        args = (_to_device(d), *d_classes, int(self_offset), float(margin), float(pos_margin), c1, c2)
        _launch(_contrastive_kernel, d.shape[0], THREADS, *args, d_out, bool(divide), d_totals)
        _store(out, d_out)
        totals = _to_host(d_totals)
    return totals[:, 0:2].copy(), totals[:, 2:4].astype(np.int64), totals[:, 4:6].astype(np.int64)


@cuda.jit
def _scale_same_class_kernel(out, anchor_class, class_order, class_starts, factor):
    """Block a, a thread per member j of a's class: out[a, j] *= factor."""
    a = cuda.blockIdx.x
    c = anchor_class[a]
    if c >= 0:
        for k in range(class_starts[c] + cuda.threadIdx.x, class_starts[c + 1], THREADS):
            j = class_order[k]
            out[a, j] = out[a, j] * factor


def scale_same_class(out, classes, factor):
    """:func:`numpy.pairs.scale_same_class` on the GPU: one block per anchor, a thread per member of its class
    (strided). O(B·K)."""
    if out.shape[0]:
        d_out = _to_device(out)
        d_classes = _indices_to_device(classes.anchor_class, classes.class_order, classes.class_starts)
        _launch(_scale_same_class_kernel, out.shape[0], THREADS, d_out, *d_classes, float(factor))
        _store(out, d_out)
