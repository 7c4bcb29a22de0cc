"""Triplet kernels on the GPU (contracts: ``numpy/triplets.py``), each device kernel beside its host wrapper: batch-all
(hinge and soft margin) and its symmetrized form, the per-anchor choice of one positive and one negative, and
FaceNet's semi-hard negatives.

The batch-all kernel counts, for each positive, its active negatives by a loop over the anchor's negatives, and
for each negative its active positives by a loop over the anchor's class (``class_order``): O(B · R · K) for
classes of K references, no sort and no B³ array.
"""

import math

import numpy as np

from ._device import THREADS, _device_array, _indices_to_device, _is_host, _launch, _store, _to_device, _to_host, cuda
from .distances import _gram_on_device, _symmetrize_on_device


def _output_buffer(out, d):
    """Where a per-anchor kernel writes its B×R output: ``out`` itself if it is a device array other than d (which
    the kernel reads while it writes), else a new device array."""
    if _is_host(out) or out is d:
        return _device_array(out.shape, out.dtype)
    return out


@cuda.jit
def _batch_all_kernel(
    d,
    ref_class,
    anchor_class,
    class_order,
    class_starts,
    self_offset,
    margin,
    semihard_only,
    soft,
    smallest,
    out,
    divide,
    totals,
):
    """Block a: row a of out, and totals[a] = (Σ terms, #terms counted, #valid triplets), z = d_ap − d_an + m.
    Hinge: a positive counts its active negatives (d_an < d_ap + m; semi-hard: and d_an >= d_ap), a negative its
    active positives, each a slope ±1. ``soft``: every term softplus(z), the slopes ±σ(z), a term counted (and
    given a slope) unless it rounds to 0 in the input dtype (at most ``smallest``). A positive scans the anchor's
    negatives, a negative the anchor's class: O(R·K) per anchor."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    value_sum = cuda.shared.array(THREADS, np.float64)
    counted_sum = cuda.shared.array(THREADS, np.float64)
    n_refs = d.shape[1]
    c = anchor_class[a]
    own = a + self_offset
    start = 0
    stop = 0
    if c >= 0:
        start = class_starts[c]
        stop = class_starts[c + 1]
    value = 0.0
    counted = 0.0
    for j in range(t, n_refs, THREADS):
        d_aj = float(d[a, j])
        g = 0.0
        if j != own:
            if ref_class[j] == c:  # a positive: its terms with the anchor's negatives
                for n in range(n_refs):
                    if n != own and ref_class[n] != c:
                        d_an = float(d[a, n])
                        if soft:
                            z = (d_aj - d_an) + margin
                            term = max(z, 0.0) + math.log1p(math.exp(-abs(z)))  # softplus(z), no overflow
                            if term > smallest:
                                g += math.exp(z - term)  # σ(z)
                                value += term
                                counted += 1.0
                        elif d_an < d_aj + margin and (not semihard_only or d_an >= d_aj):
                            g += 1.0
                            value += (d_aj + margin) - d_an
                            counted += 1.0
            else:  # a negative: its slopes with the anchor's positives
                for k in range(start, stop):
                    p = class_order[k]
                    if p != own:
                        d_ap = float(d[a, p])
                        if soft:
                            z = (d_ap - d_aj) + margin
                            term = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
                            if term > smallest:
                                g -= math.exp(z - term)
                        elif d_aj < d_ap + margin and (not semihard_only or d_aj >= d_ap):
                            g -= 1.0
        if divide:
            g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g
    value_sum[t] = value
    counted_sum[t] = counted
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            value_sum[t] += value_sum[t + step]
            counted_sum[t] += counted_sum[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        n_positive = 0.0
        for k in range(start, stop):
            if class_order[k] != own:
                n_positive += 1.0
        n_own = 1.0 if 0 <= own < n_refs else 0.0
        n_negative = n_refs - (stop - start) - (n_own if n_positive == stop - start else 0.0)
        totals[a, 0] = value_sum[0]
        totals[a, 1] = counted_sum[0]
        totals[a, 2] = n_positive * n_negative


def _batch_all_on_device(d_d, classes, self_offset, margin, semihard_only, d_out, divide, soft=False, smallest=0.0):
    totals = _device_array((d_d.shape[0], 3), np.float64)
    if d_d.shape[0]:
        flags = (bool(semihard_only), bool(soft), float(smallest))
        args = (d_d, *_indices_to_device(*classes), int(self_offset), float(margin), *flags, d_out, bool(divide))
        _launch(_batch_all_kernel, d_d.shape[0], THREADS, *args, totals)
    totals = _to_host(totals)
    return totals[:, 0].copy(), totals[:, 1].astype(np.int64), totals[:, 2].astype(np.int64)


def batch_all_triplets(d, classes, self_offset, margin, semihard_only, out, divide):
    """:func:`numpy.triplets.batch_all_triplets` on the GPU (one block per anchor; out may be d)."""
    d_d = _to_device(d)
    d_out = _output_buffer(out, d)
    totals = _batch_all_on_device(d_d, classes, self_offset, margin, semihard_only, d_out, divide)
    _store(out, d_out)
    return totals


def batch_all_symmetric(d, classes, margin, semihard_only, out, divide, gram=None):
    """:func:`numpy.triplets.batch_all_symmetric` on the GPU: the Gram conversion (with ``gram``), the per-anchor
    kernel and the symmetrize, all on the device; d holds the distances afterwards unless out is d."""
    d_d = _to_device(d)
    if gram is not None:
        _gram_on_device(d_d, gram[0], gram[0], gram[1], gram[1], gram[2], gram[3])
    d_out = _output_buffer(out, d)
    totals = _batch_all_on_device(d_d, classes, 0, margin, semihard_only, d_out, divide)
    _symmetrize_on_device(d_out)
    if gram is not None and out is not d:
        _store(d, d_d)
    _store(out, d_out)
    return totals


def soft_all_triplets(d, classes, self_offset, margin, smallest, out, divide):
    """:func:`numpy.triplets.soft_all_triplets` on the GPU: the batch-all kernel with softplus terms and σ slopes
    (each term's softplus computed twice, by its positive and by its negative); out may be d."""
    d_d = _to_device(d)
    d_out = _output_buffer(out, d)
    totals = _batch_all_on_device(d_d, classes, self_offset, margin, False, d_out, divide, True, smallest)
    _store(out, d_out)
    return totals


@cuda.jit
def _select_kernel(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode, chosen):
    """Block a: chosen[a] = (positive, negative), each the candidate with the largest (smallest) distance strictly
    inside (above, below), lowest index on ties, -1 if none: found in up to three stages (the positive, the
    negative, the semi-hard positive), each a strided scan and a shared-memory arg-reduction. (One kernel, no
    device function: a device function cannot be compiled to PTX without a GPU.)"""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    best_value = cuda.shared.array(THREADS, np.float64)
    best_index = cuda.shared.array(THREADS, np.int64)
    c = anchor_class[a]
    own = a + self_offset
    p = -1
    n = -1
    for stage in range(3):
        above = -math.inf
        below = math.inf
        if stage == 0:  # the hardest or easiest positive
            active = positive_mode != 2
            positive = True
            largest = positive_mode == 0
        elif stage == 1:  # the hardest, easiest, or semi-hard negative (closest farther than p)
            active = negative_mode != 2 or p >= 0
            positive = False
            largest = negative_mode == 1
            if negative_mode == 2 and p >= 0:
                above = float(d[a, p])
        else:  # the semi-hard positive: the farthest closer than n
            active = positive_mode == 2 and n >= 0
            positive = True
            largest = True
            if active:
                below = float(d[a, n])
        if active:
            value = 0.0
            index = -1
            for j in range(t, d.shape[1], THREADS):
                if j != own and (ref_class[j] == c) == positive:
                    v = float(d[a, j])
                    if v > above and v < below and (index < 0 or (v > value if largest else v < value)):
                        value = v
                        index = j
            best_value[t] = value
            best_index[t] = index
            cuda.syncthreads()
            step = THREADS // 2
            while step > 0:
                if t < step:
                    other_value = best_value[t + step]
                    other_index = best_index[t + step]
                    mine = best_index[t]
                    if other_index >= 0 and (
                        mine < 0
                        or (other_value > best_value[t] if largest else other_value < best_value[t])
                        or (other_value == best_value[t] and other_index < mine)
                    ):
                        best_value[t] = other_value
                        best_index[t] = other_index
                cuda.syncthreads()
                step //= 2
            if stage == 1:
                n = best_index[0]
            else:
                p = best_index[0]
            cuda.syncthreads()  # everyone has read the result before the next stage overwrites it
    if t == 0:
        chosen[a, 0] = p
        chosen[a, 1] = n


def select_per_anchor(d, classes, self_offset, positive_mode, negative_mode):
    """:func:`numpy.triplets.select_per_anchor` on the GPU (one block per anchor, shared-memory arg-reductions)."""
    chosen = _device_array((d.shape[0], 2), np.int64)
    if d.shape[0]:
        d_classes = _indices_to_device(classes.ref_class, classes.anchor_class)
        args = (_to_device(d), *d_classes, int(self_offset), int(positive_mode), int(negative_mode))
        _launch(_select_kernel, d.shape[0], THREADS, *args, chosen)
    chosen = _to_host(chosen)
    return chosen[:, 0].copy(), chosen[:, 1].copy()


@cuda.jit
def _semihard_kernel(d, ref_class, anchor_class, class_order, class_starts, self_offset, offsets, chosen):
    """Block a, one thread per positive: chosen[offsets[a] + rank] = (positive, its semi-hard negative or -1)."""
    a = cuda.blockIdx.x
    c = anchor_class[a]
    if c < 0:
        return
    own = a + self_offset
    start = class_starts[c]
    stop = class_starts[c + 1]
    for k in range(start + cuda.threadIdx.x, stop, THREADS):
        p = class_order[k]
        if p == own:
            continue
        rank = k - start
        if 0 <= own < d.shape[1] and ref_class[own] == c and own < p:
            rank -= 1  # the anchor itself comes before p in its class and is not a positive
        d_ap = float(d[a, p])
        farther = -1
        farther_value = 0.0
        farthest = -1
        farthest_value = 0.0
        for j in range(d.shape[1]):
            if j != own and ref_class[j] != c:
                v = float(d[a, j])
                if v > d_ap and (farther < 0 or v < farther_value):
                    farther = j
                    farther_value = v
                if farthest < 0 or v > farthest_value:
                    farthest = j
                    farthest_value = v
        chosen[offsets[a] + rank, 0] = p
        chosen[offsets[a] + rank, 1] = farther if farther >= 0 else farthest


def semihard_negatives(d, classes, self_offset, offsets, positives, negatives):
    """:func:`numpy.triplets.semihard_negatives` on the GPU (one block per anchor, one thread per positive)."""
    chosen = _device_array((positives.size, 2), np.int64)
    if positives.size:
        args = (_to_device(d), *_indices_to_device(*classes), int(self_offset), *_indices_to_device(offsets), chosen)
        _launch(_semihard_kernel, d.shape[0], THREADS, *args)
    chosen = _to_host(chosen)
    positives[...] = chosen[:, 0]
    negatives[...] = chosen[:, 1]
