"""The quadruplet loss's kernel compiled by Numba (contract: ``numpy/quadruplet.py``): counts of thresholds and
negative distances (sweeps, binary searches, bucketed ranks), never the quadruplets.
"""

import numba
import numpy as np

from ._jit import _exclusive_bound, _njit, _rows_kernel

# The quadruplet kernel counts each class's own thresholds with one vectorised sweep of the row per threshold
# while the class has at most this many positive pairs (6 for classes of 4), else by a binary search per entry.
QUADRUPLET_SWEEP_MAX_PAIRS = 16
# Its pass over the rows runs in at most this many chunks, each with its own histogram of threshold ranks (of
# integers: the result does not depend on the chunking or the thread count).
QUADRUPLET_MAX_CHUNKS = 64


@_njit(inline="always")
def _sorted_count_at_most(sorted_values, lo, hi, value):
    """The number of entries of sorted_values[lo:hi] that are <= value: a count for short runs, else a binary
    search."""
    if hi - lo <= 16:
        count = 0
        for s in range(lo, hi):
            count += sorted_values[s] <= value
        return count
    first, last = lo, hi
    while first < last:
        middle = (first + last) // 2
        if sorted_values[middle] <= value:
            first = middle + 1
        else:
            last = middle
    return first - lo


@_njit(inline="always")
def _threshold_bucket(value, origin, scale, n_buckets):
    """⌊(value − origin)·scale⌋ clipped to [0, n_buckets − 1]: a bucket index that never decreases with value
    (selects, not min/max, so that a NaN from inf·0 goes to bucket 0 and never reaches int())."""
    position = (value - origin) * scale
    position = position if position > 0.0 else 0.0
    return int(position if position < n_buckets - 1.0 else n_buckets - 1.0)


_THRESHOLD_WINDOW = 4  # the thresholds a bucket holds, at most, for the branch-free count


@_njit(inline="always")
def _rank_among_thresholds(padded_sorted, bucket_starts, origin, scale, value):
    """#{sorted values <= value}, given bucket_starts[b] = #{values in buckets < b}: a value in an earlier bucket
    is below this one and a value in a later bucket above it (buckets never decrease), so only the value's own
    bucket is counted: branch-free over a window when it is short (``padded_sorted`` ends with that many +inf)."""
    b = _threshold_bucket(value, origin, scale, bucket_starts.size - 1)
    lo, hi = bucket_starts[b], bucket_starts[b + 1]
    if hi - lo > _THRESHOLD_WINDOW:
        return lo + _sorted_count_at_most(padded_sorted, lo, hi, value)
    count = lo
    for w in range(_THRESHOLD_WINDOW):
        count += padded_sorted[lo + w] <= value
    return count


@_rows_kernel
def quadruplet_pairs(d, classes, margin2, out, divide):
    ref_class, _, class_order, class_starts = classes
    n = d.shape[0]
    n_classes = class_starts.size - 1
    # Positive pairs class by class (i < j in member order): class c's P_c = n_c(n_c − 1)/2 from pair_starts[c].
    pair_starts = np.zeros(n_classes + 1, dtype=np.int64)
    for c in range(n_classes):
        size = class_starts[c + 1] - class_starts[c]
        pair_starts[c + 1] = pair_starts[c] + size * (size - 1) // 2
    n_pos = pair_starts[n_classes]
    pair_d = np.empty(n_pos)  # d_ij, float64 (out may be d)
    class_sorted = np.empty(n_pos)  # each class's thresholds T = d_ij + m2, sorted
    for c in numba.prange(n_classes):
        at = pair_starts[c]
        for a in range(class_starts[c], class_starts[c + 1]):
            for b in range(a + 1, class_starts[c + 1]):
                pair_d[at] = d[class_order[a], class_order[b]]
                class_sorted[at] = pair_d[at] + margin2
                at += 1
        class_sorted[pair_starts[c] : pair_starts[c + 1]] = np.sort(class_sorted[pair_starts[c] : pair_starts[c + 1]])
    all_sorted = np.full(n_pos + _THRESHOLD_WINDOW, np.inf)
    all_sorted[:n_pos] = np.sort(class_sorted)
    # Buckets over the thresholds' range, one threshold each on average: a distance's rank among them in O(1).
    # all_sorted ends with _THRESHOLD_WINDOW +inf, for the branch-free count.
    n_buckets = max(1, n_pos)
    origin = all_sorted[0] if n_pos else 0.0
    spread = all_sorted[n_pos - 1] - origin if n_pos else 0.0
    scale = n_buckets / spread if spread > 0 else 0.0
    if not scale < np.inf:  # a spread so small that n_buckets / spread overflows: one bucket, searched
        scale = 0.0
    bucket_starts = np.zeros(n_buckets + 1, dtype=np.int64)
    for s in range(n_pos):
        bucket_starts[_threshold_bucket(all_sorted[s], origin, scale, n_buckets) + 1] += 1
    for b in range(n_buckets):
        bucket_starts[b + 1] += bucket_starts[b]

    # Row i of class c, entry k of another class: the negative pair {i, k} is active with G(d) = #{T > d} positive
    # pairs, less H_c(d) = #{T of class c > d} of i's class and those of k's class, which row k counts. So row i
    # writes −(G − H_c) on (i, k) for k > i and +H_c on (i, k) for k < i; the pullback adds gᵀ, and the pair gets
    # −(G − H_c(i) − H_c(k)), minus its count of partners. The same pass counts, per threshold of class c, the
    # negatives of the class's rows below it (below_own), and histograms the rank of each pair among all thresholds.
    n_chunks = max(1, min(n_classes, QUADRUPLET_MAX_CHUNKS, (n * n // 8) // (n_pos + 1)))
    histograms = np.zeros((n_chunks, n_pos + 1), dtype=np.int64)
    below_own = np.zeros(n_pos, dtype=np.int64)
    row_sums = np.zeros(n)  # Σ_k g[i, k]·d[i, k], row by row: the value, in an order that ignores the classes
    for chunk in numba.prange(n_chunks):
        own = np.empty(n, dtype=np.int32)
        for c in range(chunk, n_classes, n_chunks):
            lo_c, hi_c = pair_starts[c], pair_starts[c + 1]
            sweep = hi_c - lo_c <= QUADRUPLET_SWEEP_MAX_PAIRS
            for a in range(class_starts[c], class_starts[c + 1]):
                i = class_order[a]
                row = d[i]
                for k in range(n):
                    own[k] = 0
                if sweep:
                    for s in range(lo_c, hi_c):  # vectorised: the class's thresholds one at a time
                        upper = _exclusive_bound(row, class_sorted[s])  # d < T, decided as in float64
                        count = 0
                        for k in range(n):
                            hit = (ref_class[k] != c) & (row[k] < upper)
                            own[k] += hit
                            count += hit
                        below_own[s] += count
                else:
                    for k in range(n):
                        if ref_class[k] != c:
                            r_own = _sorted_count_at_most(class_sorted, lo_c, hi_c, np.float64(row[k]))
                            own[k] = hi_c - lo_c - r_own
                            if r_own < hi_c - lo_c:
                                below_own[lo_c + r_own] += 1  # a histogram here; summed below
                # g: +H_c below the diagonal, −(G − H_c) above it, 0 on the diagonal and the positive pairs (those
                # above it are written below). Row k's entry (k, i) reads d[k, i], not this one: out may be d.
                row_sum = 0.0
                for k in range(n):
                    value = np.float64(row[k])
                    slope = np.float64(own[k]) if k < i else 0.0
                    if k > i and ref_class[k] != c:
                        r = _rank_among_thresholds(all_sorted, bucket_starts, origin, scale, value)
                        histograms[chunk, r] += 1
                        slope = own[k] - np.float64(n_pos - r)
                    row_sum += slope * value
                    if divide:
                        quotient = slope / (value if value > 0 else 1.0)  # no 0/0: both selects vectorise
                        out[i, k] = quotient if value > 0 else 0.0
                    else:
                        out[i, k] = slope
                row_sums[i] = row_sum
            if not sweep:  # the histogram of class c's own ranks, into counts below each threshold
                for s in range(lo_c + 1, hi_c):
                    below_own[s] += below_own[s - 1]

    # below[s]: negative pairs under the s-th smallest threshold (the chunks' histograms summed, then cumulated).
    below = histograms[0]
    for chunk in range(1, n_chunks):
        for s in range(n_pos + 1):
            below[s] += histograms[chunk, s]
    for s in range(1, n_pos + 1):
        below[s] += below[s - 1]
    class_active = np.zeros(n_classes, dtype=np.int64)
    for c in numba.prange(n_classes):
        lo_c, hi_c = pair_starts[c], pair_starts[c + 1]
        at = lo_c
        for a in range(class_starts[c], class_starts[c + 1]):
            for b in range(a + 1, class_starts[c + 1]):  # row class_order[a]'s pairs, in increasing order
                t = pair_d[at] + margin2
                overall = below[_rank_among_thresholds(all_sorted, bucket_starts, origin, scale, t) - 1]
                count = overall - below_own[lo_c + _sorted_count_at_most(class_sorted, lo_c, hi_c, t) - 1]
                class_active[c] += count
                if divide:
                    quotient = count / (pair_d[at] if pair_d[at] > 0 else 1.0)
                    out[class_order[a], class_order[b]] = quotient if pair_d[at] > 0 else 0.0
                else:
                    out[class_order[a], class_order[b]] = count
                row_sums[class_order[a]] += count * pair_d[at]
                at += 1
    # Σ_positive #partners·(d + m2) − Σ_negative #partners·d = Σ g·d + m2·#active, row by row.
    n_active = 0
    for c in range(n_classes):
        n_active += class_active[c]
    total = margin2 * n_active
    for i in range(n):
        total += row_sums[i]
    n_negative = n * (n - 1) // 2 - n_pos
    n_terms = 0
    for c in range(n_classes):
        size = class_starts[c + 1] - class_starts[c]
        n_terms += (pair_starts[c + 1] - pair_starts[c]) * (n_negative - size * (n - size))
    return total, n_active, n_terms
