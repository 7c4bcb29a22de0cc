"""CPU kernels compiled by Numba: plain loops, ``prange`` over rows that one iteration owns (one writer per
output element, so results are deterministic whatever the thread count), ``cache=True`` where the cache directory
is writable, and no ``fastmath``. Each kernel is valid Python: ``NUMBA_DISABLE_JIT=1`` runs it as such.

The contracts (arguments, outputs, conventions) are documented once, in ``numpy_kernels``; the two modules define
the same functions with the same signatures.
"""

import math

import numba
import numpy as np

# Per anchor, batch-all sweeps the row once per positive (O(P·N)) while P is at most this, and otherwise sorts the
# negatives once and binary-searches each positive's threshold (O((P + N) log N)). P×K batches take the sweep.
SWEEP_MAX_POSITIVES = 24


def _njit(**options):
    """``numba.njit(cache=True, **options)``, without the on-disk cache where no cache directory is usable."""

    def decorate(function):
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available" on read-only installs
            return numba.njit(**options)(function)

    return decorate


@_njit(parallel=True)
def recompute_close_pairs(x, y, d2, sq_norm_x, sq_norm_y, ratio):
    for i in numba.prange(x.shape[0]):
        for j in range(y.shape[0]):
            if d2[i, j] <= ratio * (sq_norm_x[i] + sq_norm_y[j]):
                total = 0.0
                for k in range(x.shape[1]):
                    diff = np.float64(x[i, k]) - np.float64(y[j, k])
                    total += diff * diff
                d2[i, j] = total


@_njit(parallel=True)
def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    for i in numba.prange(x.shape[0]):
        for j in range(y.shape[0]):
            norms = np.float64(sq_norm_x[i]) + np.float64(sq_norm_y[j])
            d2 = norms - 2.0 * np.float64(gram[i, j])
            if d2 <= ratio * norms:
                d2 = 0.0
                for k in range(x.shape[1]):
                    diff = np.float64(x[i, k]) - np.float64(y[j, k])
                    d2 += diff * diff
            gram[i, j] = math.sqrt(d2) if root else d2


@_njit(parallel=True)
def pair_scale(g, d, weight, squared):
    row_sums = np.zeros(g.shape[0])
    for i in numba.prange(g.shape[0]):
        total = 0.0
        for j in range(g.shape[1]):
            if squared:
                s = 2.0 * weight * g[i, j]
            elif d[i, j] > 0:
                s = weight * g[i, j] / d[i, j]
            else:
                s = 0.0
            g[i, j] = s
            total += g[i, j]
        row_sums[i] = total
    return row_sums


@numba.njit(cache=True)
def _split(labels, ref_labels, self_offset, a, positives, negatives):
    """Fill positives / negatives with anchor a's reference indices; return their counts."""
    n_pos = 0
    n_neg = 0
    for j in range(ref_labels.shape[0]):
        if j == a + self_offset:
            continue
        if ref_labels[j] == labels[a]:
            positives[n_pos] = j
            n_pos += 1
        else:
            negatives[n_neg] = j
            n_neg += 1
    return n_pos, n_neg


@_njit(parallel=True)
def batch_all_triplets(d, labels, ref_labels, self_offset, margin, semihard_only, g):
    n_anchors, n_refs = d.shape
    sums = np.zeros(n_anchors)
    n_active = np.zeros(n_anchors, dtype=np.int64)
    n_valid = np.zeros(n_anchors, dtype=np.int64)
    for a in numba.prange(n_anchors):
        positives = np.empty(n_refs, dtype=np.int64)
        negatives = np.empty(n_refs, dtype=np.int64)
        n_pos, n_neg = _split(labels, ref_labels, self_offset, a, positives, negatives)
        n_valid[a] = n_pos * n_neg
        if n_pos == 0 or n_neg == 0:
            continue
        total = 0.0
        active = 0
        if n_pos <= SWEEP_MAX_POSITIVES:
            for i in range(n_pos):
                p = positives[i]
                d_ap = np.float64(d[a, p])
                threshold = d_ap + margin
                count = 0
                for k in range(n_neg):
                    n = negatives[k]
                    d_an = np.float64(d[a, n])
                    if d_an < threshold and (not semihard_only or d_an >= d_ap):
                        count += 1
                        total += threshold - d_an
                        g[a, n] -= 1
                g[a, p] += count
                active += count
        else:
            neg_d = np.empty(n_neg)
            for k in range(n_neg):
                neg_d[k] = d[a, negatives[k]]
            neg_order = np.argsort(neg_d, kind="mergesort")
            neg_sorted = neg_d[neg_order]
            prefix = np.zeros(n_neg + 1)
            for k in range(n_neg):
                prefix[k + 1] = prefix[k] + neg_sorted[k]
            pos_d = np.empty(n_pos)
            for i in range(n_pos):
                pos_d[i] = d[a, positives[i]]
            pos_sorted = np.sort(pos_d)
            thresholds = pos_sorted + margin
            for i in range(n_pos):
                threshold = pos_d[i] + margin
                hi = np.searchsorted(neg_sorted, threshold, side="left")  # d_an < d_ap + m
                lo = np.searchsorted(neg_sorted, pos_d[i], side="left") if semihard_only else 0  # d_an >= d_ap
                if hi > lo:
                    count = hi - lo
                    total += count * threshold - (prefix[hi] - prefix[lo])
                    g[a, positives[i]] += count
                    active += count
            for k in range(n_neg):
                d_an = neg_d[k]
                # positives whose threshold exceeds d_an (and, semi-hard, with d_ap <= d_an)
                first = np.searchsorted(thresholds, d_an, side="right")
                last = np.searchsorted(pos_sorted, d_an, side="right") if semihard_only else n_pos
                if last > first:
                    g[a, negatives[k]] -= last - first
        sums[a] = total
        n_active[a] = active
    return sums, n_active, n_valid


@numba.njit(cache=True)
def _softplus_and_sigmoid(z):
    if z > 0:
        e = math.exp(-z)
        return z + math.log1p(e), 1.0 / (1.0 + e)
    e = math.exp(z)
    return math.log1p(e), e / (1.0 + e)


@numba.njit(cache=True)
def _add_triplet_term(g, a, p, n, threshold, d_an, soft, out):
    """Add the term for (a, p, n) with threshold d_ap + m to g's row a; out = (sum, terms, active)."""
    if soft:
        value, slope = _softplus_and_sigmoid(threshold - d_an)
    elif d_an < threshold:
        value, slope = threshold - d_an, 1.0
    else:
        value, slope = 0.0, 0.0
    out[0] += value
    out[1] += 1
    if value > 0:
        out[2] += 1
    if slope != 0.0:
        g[a, p] += slope
        g[a, n] -= slope


@_njit(parallel=True)
def semihard_triplets(d, labels, ref_labels, self_offset, margin, soft, g):
    n_anchors, n_refs = d.shape
    sums = np.zeros(n_anchors)
    n_terms = np.zeros(n_anchors, dtype=np.int64)
    n_active = np.zeros(n_anchors, dtype=np.int64)
    for a in numba.prange(n_anchors):
        positives = np.empty(n_refs, dtype=np.int64)
        negatives = np.empty(n_refs, dtype=np.int64)
        n_pos, n_neg = _split(labels, ref_labels, self_offset, a, positives, negatives)
        if n_pos == 0 or n_neg == 0:
            continue
        farthest = negatives[0]
        for k in range(1, n_neg):
            if d[a, negatives[k]] > d[a, farthest]:
                farthest = negatives[k]
        out = np.zeros(3)
        for i in range(n_pos):
            p = positives[i]
            d_ap = d[a, p]
            chosen = -1
            for k in range(n_neg):
                n = negatives[k]
                if d[a, n] > d_ap and (chosen < 0 or d[a, n] < d[a, chosen]):
                    chosen = n
            if chosen < 0:
                chosen = farthest
            _add_triplet_term(g, a, p, chosen, np.float64(d_ap) + margin, np.float64(d[a, chosen]), soft, out)
        sums[a] = out[0]
        n_terms[a] = out[1]
        n_active[a] = out[2]
    return sums, n_terms, n_active


@_njit(parallel=True)
def select_per_anchor(d, labels, ref_labels, self_offset, positive_mode, negative_mode):
    n_anchors, n_refs = d.shape
    chosen_positive = np.full(n_anchors, -1, dtype=np.int64)
    chosen_negative = np.full(n_anchors, -1, dtype=np.int64)
    for a in numba.prange(n_anchors):
        positives = np.empty(n_refs, dtype=np.int64)
        negatives = np.empty(n_refs, dtype=np.int64)
        n_pos, n_neg = _split(labels, ref_labels, self_offset, a, positives, negatives)
        # Modes: 0 hardest, 1 easiest, 2 semi-hard (relative to the other side's choice, made first).
        p = -1
        n = -1
        if positive_mode != 2:
            p = _extreme(d, a, positives, n_pos, positive_mode == 0, np.inf, -np.inf)
        if negative_mode != 2:
            n = _extreme(d, a, negatives, n_neg, negative_mode == 1, np.inf, -np.inf)
        elif p >= 0:  # the closest negative farther than the chosen positive
            n = _extreme(d, a, negatives, n_neg, False, np.inf, d[a, p])
        if positive_mode == 2 and n >= 0:  # the farthest positive closer than the chosen negative
            p = _extreme(d, a, positives, n_pos, True, d[a, n], -np.inf)
        chosen_positive[a] = p
        chosen_negative[a] = n
    return chosen_positive, chosen_negative


@numba.njit(cache=True)
def _extreme(d, a, candidates, count, largest, below, above):
    """The candidate with the largest (or smallest) d[a, ·] strictly inside (above, below); -1 if none.
    Ties go to the lowest index (candidates are in increasing index order)."""
    best = -1
    for k in range(count):
        j = candidates[k]
        value = d[a, j]
        if not (above < value < below):
            continue
        if best < 0 or (value > d[a, best] if largest else value < d[a, best]):
            best = j
    return best
