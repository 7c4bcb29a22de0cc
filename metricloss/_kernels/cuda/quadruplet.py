"""The quadruplet loss's kernel on the GPU (contract: ``numpy/quadruplet.py``): the negative pairs' distances and the
positive pairs' thresholds sorted by a bitonic sort, then the same counts as the NumPy kernel.
"""

import math

import numpy as np

from .._cuda import simulator_enabled
from ._device import THREADS, _device_array, _host_indices, _launch, _store, _to_device, _to_host, cuda


@cuda.jit
def _quadruplet_fill_kernel(
    d, ref_class, class_order, class_starts, rank, pair_starts, starts, row_upper_start, margin2, keys, values
):
    """Block i: row i's entries into the (key, value) lists that :func:`_bitonic_kernel` sorts, each slot written
    by one thread. Keys, in the order of their slots: c (0 <= c < C), the ordered negative entries (l, k) of rows l
    of class c, row by row in class order; C, the negative pairs (l, k), l < k, row by row; C + 1 + c, the
    thresholds T = d_ij + margin2 of class c's positive pairs (i, j), i < j, in pair order; 2C + 1, all the
    thresholds again; 2C + 2 (value +inf), the padding up to a power of two."""
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n = d.shape[0]
    n_classes = class_starts.shape[0] - 1
    c = ref_class[i]
    first = class_starts[c]
    n_c = class_starts[c + 1] - first
    r = rank[i]
    n_pairs = pair_starts[n_classes]
    own_base = starts[c] + r * (n - n_c)
    upper_base = starts[n_classes] + row_upper_start[i]
    threshold_base = starts[n_classes + 1] + pair_starts[c] + r * n_c - r * (r + 1) // 2 - r - 1
    for k in range(t, n, THREADS):
        if ref_class[k] != c:
            lo = first  # below: class c's members < k (class_order is increasing within a class)
            hi = first + n_c
            while lo < hi:
                mid = (lo + hi) // 2
                if class_order[mid] < k:
                    lo = mid + 1
                else:
                    hi = mid
            below = lo - first
            keys[own_base + k - below] = c
            values[own_base + k - below] = float(d[i, k])
            if k > i:  # after row i's upper negatives left of k: (k − i − 1) columns less the members in (i, k)
                keys[upper_base + k - i - below + r] = n_classes
                values[upper_base + k - i - below + r] = float(d[i, k])
        elif k > i:  # the positive pair (i, k), member rank[k] of the class
            threshold = float(d[i, k]) + margin2
            keys[threshold_base + rank[k]] = n_classes + 1 + c
            values[threshold_base + rank[k]] = threshold
            keys[threshold_base + rank[k] + n_pairs] = 2 * n_classes + 1
            values[threshold_base + rank[k] + n_pairs] = threshold
    for q in range(starts[n_classes + 1] + 2 * n_pairs + i * THREADS + t, keys.shape[0], n * THREADS):
        keys[q] = 2 * n_classes + 2
        values[q] = math.inf


@cuda.jit
def _bitonic_kernel(keys, values, j, k, stride):
    """One step (k, j) of a bitonic sort of (keys, values) pairs, lexicographically: thread q (of ``stride``, the
    launch's threads) compares and swaps the pairs of slots (low, low + j), low with bit j clear, numbered q,
    q + stride, ...; ascending where low & k is 0."""
    for q in range(cuda.grid(1), keys.shape[0] // 2, stride):
        low = 2 * j * (q // j) + q % j
        high = low + j
        greater = keys[low] > keys[high] or (keys[low] == keys[high] and values[low] > values[high])
        if greater == ((low & k) == 0):
            key = keys[low]
            keys[low] = keys[high]
            keys[high] = key
            value = values[low]
            values[low] = values[high]
            values[high] = value


# Blocks of the bitonic sort's launches, each a grid-stride loop over its pairs of slots: on a GPU enough to give
# every pair a thread; in the simulator two, so that the stride is exercised and a launch stays cheap.
_MAX_SORT_BLOCKS = 2 if simulator_enabled() else 1 << 30


def _bitonic_sort(keys, values):
    """Sort the device arrays (keys, values), of a power-of-two length, by key then value, in place: a bitonic
    network, one launch per step, log₂N·(log₂N + 1)/2 launches of O(N) work each."""
    size = keys.shape[0]
    blocks = max(1, min(-(-size // 2 // THREADS), _MAX_SORT_BLOCKS))
    k = 2
    while k <= size:
        j = k // 2
        while j >= 1:
            _launch(_bitonic_kernel, blocks, THREADS, keys, values, j, k, blocks * THREADS)
            j //= 2
        k *= 2


@cuda.jit
def _quadruplet_rows_kernel(d, ref_class, class_starts, pair_starts, starts, values, margin2, out, divide, totals):
    """Block i: row i of out from the sorted lists, and totals[i] = (Σ_k g[i, k]·d[i, k], Σ of its positive pairs'
    counts). Negative entry (i, k): H_c = #{T of i's class c > d} on k < i, H_c − G, G = #{T > d}, on k > i;
    positive pair (i, k), k > i: #{negative pairs below T} − #{those of rows of class c below T}, T = d_ik + m2.
    Each count is a binary search in its sorted segment."""
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    row_sum = cuda.shared.array(THREADS, np.float64)
    active_sum = cuda.shared.array(THREADS, np.float64)
    n_classes = class_starts.shape[0] - 1
    c = ref_class[i]
    n_pairs = pair_starts[n_classes]
    thresholds = starts[n_classes + 1]
    value = 0.0
    active = 0.0
    for k in range(t, d.shape[0], THREADS):
        d_ik = float(d[i, k])
        g = 0.0
        if ref_class[k] != c:
            lo = thresholds + pair_starts[c]  # H_c: class c's thresholds above d_ik
            hi = thresholds + pair_starts[c + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if values[mid] <= d_ik:
                    lo = mid + 1
                else:
                    hi = mid
            g = float(thresholds + pair_starts[c + 1] - lo)
            if k > i:
                lo = thresholds + n_pairs  # G: all thresholds above d_ik
                hi = thresholds + 2 * n_pairs
                while lo < hi:
                    mid = (lo + hi) // 2
                    if values[mid] <= d_ik:
                        lo = mid + 1
                    else:
                        hi = mid
                g -= float(thresholds + 2 * n_pairs - lo)
        elif k > i:
            threshold = d_ik + margin2
            lo = starts[n_classes]  # every negative pair below T
            hi = thresholds
            while lo < hi:
                mid = (lo + hi) // 2
                if values[mid] < threshold:
                    lo = mid + 1
                else:
                    hi = mid
            g = float(lo - starts[n_classes])
            lo = starts[c]  # less those of the rows of class c (with an end in class c) below T
            hi = starts[c + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if values[mid] < threshold:
                    lo = mid + 1
                else:
                    hi = mid
            g -= float(lo - starts[c])
            active += g
        value += g * d_ik
        if divide:
            g = g / d_ik if d_ik > 0 else 0.0
        out[i, k] = g
    row_sum[t] = value
    active_sum[t] = active
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            row_sum[t] += row_sum[t + step]
            active_sum[t] += active_sum[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        totals[i, 0] = row_sum[0]
        totals[i, 1] = active_sum[0]


def quadruplet_pairs(d, classes, margin2, out, divide):
    """:func:`numpy.quadruplet.quadruplet_pairs` on the GPU, by the same counts (never the quadruplets).

    Three steps, all on the device: (1) one block per row writes, in float64, each class's ordered negative
    entries (rows of the class, columns of other classes), every negative pair once (its upper entry), each class's
    positive-pair thresholds T = d_ij + margin2 and all thresholds once more, into one list of (segment, value)
    slots whose places follow from the class sizes alone (computed here from ``class_starts``); (2) a bitonic sort
    of that list by (segment, value), one launch per step, each thread owning the pairs of slots it compares;
    (3) one block per row, a thread per column: a negative entry's slope is a binary search in its class's sorted
    thresholds (and, above the diagonal, in all of them), a positive pair's count two binary searches in the sorted
    negatives (all pairs, less those with an end in its class); the row's Σ g·d and its pairs' counts by
    shared-memory tree reductions. About 1.5·(B² − Σ n_c²) + 2P slots (P positive pairs), padded to a power of
    two N: O(N log² N) = O(B² log² B) work in O(log² B) launches, O(B²) memory, no B³ array, no atomics. out may
    be d.
    """
    n = d.shape[0]
    ref_class, _, class_order, class_starts = (_host_indices(a) for a in classes)
    sizes = np.diff(class_starts)
    rank = np.empty(n, dtype=np.int64)  # each sample's place in its class
    rank[class_order] = np.arange(n) - np.repeat(class_starts[:-1], sizes)
    pair_starts = np.concatenate([[0], np.cumsum(sizes * (sizes - 1) // 2)])
    n_pairs = int(pair_starts[-1])
    upper = (n - 1 - np.arange(n)) - (sizes[ref_class] - 1 - rank)  # each row's negatives right of the diagonal
    n_negative = int(upper.sum())
    touching = sizes * (n - sizes)  # negative pairs with an end in each class
    starts = np.concatenate([[0], np.cumsum(touching), [touching.sum() + n_negative]])
    n_terms = int(np.sum((pair_starts[1:] - pair_starts[:-1]) * (n_negative - touching)))
    if n == 0:
        return 0.0, 0, n_terms
    size = 1 << max(int(starts[-1]) + 2 * n_pairs - 1, 0).bit_length()  # the slots, padded to a power of two
    keys = _device_array(size, np.int64)
    values = _device_array(size, np.float64)
    d_d = _to_device(d)
    d_class, d_order, d_starts = (_to_device(a) for a in (ref_class, class_order, class_starts))
    d_pair_starts, d_segments = _to_device(pair_starts), _to_device(starts)
    row_upper_start = _to_device(np.concatenate([[0], np.cumsum(upper)[:-1]]))
    args = (d_d, d_class, d_order, d_starts, _to_device(rank), d_pair_starts, d_segments, row_upper_start)
    _launch(_quadruplet_fill_kernel, n, THREADS, *args, float(margin2), keys, values)
    _bitonic_sort(keys, values)
    d_out = _device_array(out.shape, out.dtype)
    totals = _device_array((n, 2), np.float64)
    args = (d_d, d_class, d_starts, d_pair_starts, d_segments, values, float(margin2), d_out, bool(divide), totals)
    _launch(_quadruplet_rows_kernel, n, THREADS, *args)
    _store(out, d_out)
    totals = _to_host(totals)
    n_active = int(np.sum(totals[:, 1]))
    return float(margin2 * n_active + np.sum(totals[:, 0])), n_active, n_terms
