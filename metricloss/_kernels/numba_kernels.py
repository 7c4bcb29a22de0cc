"""CPU kernels compiled by Numba: plain loops, ``prange`` over rows that one iteration owns (one writer per
output element, so results are deterministic whatever the thread count), ``cache=True`` where the cache directory
is writable, and no ``fastmath``. ``error_model="numpy"`` drops Python's division-by-zero checks so that the loops
vectorise; no kernel divides by zero (the divisor is selected away from 0 and the quotient selected to 0). Each
kernel is valid Python: ``NUMBA_DISABLE_JIT=1`` runs it as such (tests/test_triplet.py does).

The contracts (arguments, outputs, conventions) are documented once, in ``numpy_kernels``; the two modules define
the same functions with the same signatures.
"""

import numba
import numpy as np

# Per anchor, batch-all sweeps the row once per positive (O(P·R), vectorised) while P is at most this, and
# otherwise sorts the negatives once and binary-searches each positive's threshold (O(R log R)).
SWEEP_MAX_POSITIVES = 24
_TILE = 32  # the side of the square tiles that symmetrize transposes (32: fastest measured here)


def _njit(**options):
    """``numba.njit(cache=True, error_model="numpy", **options)``; no on-disk cache where none is usable."""

    def decorate(function):
        try:
            return numba.njit(cache=True, error_model="numpy", **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available" on read-only installs
            return numba.njit(error_model="numpy", **options)(function)

    return decorate


@_njit()
def _direct_squared_distance(x, y, i, j):
    total = 0.0
    for k in range(x.shape[1]):
        diff = np.float64(x[i, k]) - np.float64(y[j, k])
        total += diff * diff
    return total


@_njit(parallel=True)
def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    threshold = np.empty(1, dtype=gram.dtype)  # the ratio in the matrix's dtype, so that the loop stays in it
    threshold[0] = ratio
    ratio_ = threshold[0]
    for i in numba.prange(x.shape[0]):
        row = gram[i]
        flagged = 0
        for j in range(row.shape[0]):  # vectorised: the GEMM form, and a count of the pairs it cannot resolve
            norms = sq_norm_x[i] + sq_norm_y[j]
            row[j] = norms - (row[j] + row[j])
            flagged += row[j] <= ratio_ * norms
        if flagged:
            for j in range(row.shape[0]):
                if row[j] <= ratio_ * (sq_norm_x[i] + sq_norm_y[j]):
                    row[j] = _direct_squared_distance(x, y, i, j)
        if root:
            for j in range(row.shape[0]):
                row[j] = np.sqrt(row[j])


@_njit(parallel=True)
def pair_scale(g, d, squared):
    if squared:
        return
    for i in numba.prange(g.shape[0]):
        for j in range(g.shape[1]):
            positive = d[i, j] > 0
            quotient = g[i, j] / (d[i, j] if positive else 1.0)  # no 0/0: both selects vectorise
            g[i, j] = quotient if positive else 0.0


@_njit(parallel=True)
def symmetrize(s):
    n = s.shape[0]
    n_tiles = (n + _TILE - 1) // _TILE
    # Tile row t owns the tiles (t, u) and (u, t) for u >= t: no element has two writers. Pairing tile rows t and
    # n_tiles − 1 − t gives every iteration the same number of tiles.
    for t in numba.prange((n_tiles + 1) // 2):
        transposed = np.empty((_TILE, _TILE), dtype=s.dtype)
        _symmetrize_tile_row(s, t, n_tiles, n, transposed)
        if n_tiles - 1 - t != t:
            _symmetrize_tile_row(s, n_tiles - 1 - t, n_tiles, n, transposed)


@_njit()
def _symmetrize_tile_row(s, t, n_tiles, n, transposed):
    """Tiles (t, u) ← (t, u) + (u, t)ᵀ and (u, t) ← its transpose, for u >= t; rows are read contiguously."""
    i0, i1 = t * _TILE, min(n, (t + 1) * _TILE)
    for u in range(t, n_tiles):
        j0, j1 = u * _TILE, min(n, (u + 1) * _TILE)
        for j in range(j0, j1):
            for i in range(i0, i1):
                transposed[i - i0, j - j0] = s[j, i]
        for i in range(i0, i1):
            for j in range(j0, j1):
                s[i, j] += transposed[i - i0, j - j0]
        for j in range(j0, j1):
            for i in range(i0, i1):
                s[j, i] = s[i, j]


@_njit()
def _exclusive_bound(row, t):
    """A value u of the row's dtype with row[j] < u  ⇔  float64(row[j]) < t, so that the sweeps compare in the
    row's own dtype (twice the SIMD width for float32) and decide exactly as float64 would."""
    u = np.empty(1, dtype=row.dtype)
    u[0] = t
    if u[0] < t:
        u[0] = np.nextafter(u[0], np.inf)
    return u[0]


@_njit(parallel=True)
def batch_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, semihard_only, out, divide
):
    n_anchors, n_refs = d.shape
    values = np.zeros(n_anchors)
    n_active = np.zeros(n_anchors, dtype=np.int64)
    n_valid = np.zeros(n_anchors, dtype=np.int64)
    for a in numba.prange(n_anchors):
        row = d[a]
        c = anchor_class[a]
        counts = np.zeros(n_refs, dtype=np.int32)  # ∂(Σ terms)/∂d[a, j]: + per positive, − per negative
        members = class_starts[c + 1] - class_starts[c] if c >= 0 else 0
        n_pos = 0
        if c >= 0:
            for m in range(class_starts[c], class_starts[c + 1]):
                if class_order[m] != a + self_offset:
                    n_pos += 1
        positive_part = 0.0
        active = 0
        if 0 < n_pos <= SWEEP_MAX_POSITIVES:
            no_lower_bound = _exclusive_bound(row, -np.inf)
            for m in range(class_starts[c], class_starts[c + 1]):
                p = class_order[m]
                if p == a + self_offset:
                    continue
                d_ap = np.float64(row[p])
                threshold = d_ap + margin
                upper = _exclusive_bound(row, threshold)  # d_an < d_ap + m
                lower = _exclusive_bound(row, d_ap) if semihard_only else no_lower_bound  # d_an >= d_ap
                count = 0
                for j in range(n_refs):  # vectorised: a few compares per reference
                    hit = (ref_class[j] != c) & (row[j] < upper) & (row[j] >= lower)
                    count += hit
                    counts[j] -= hit
                counts[p] += count
                positive_part += count * threshold
                active += count
        elif n_pos > 0:
            positive_part, active = _batch_all_sorted(
                row, ref_class, c, class_order, class_starts, a + self_offset, n_pos, margin, semihard_only, counts
            )
        n_valid[a] = n_pos * (n_refs - members)
        n_active[a] = active
        negative_part = 0.0
        for j in range(n_refs):  # one pass: the value's negative part, and the row of the output
            dj = row[j]
            cj = counts[j]
            negative_part += min(cj, 0) * np.float64(dj)
            if divide:
                quotient = cj / (dj if dj > 0 else 1.0)  # no 0/0: both selects vectorise
                out[a, j] = quotient if dj > 0 else 0.0
            else:
                out[a, j] = cj
        values[a] = positive_part + negative_part
    return values, n_active, n_valid


@_njit()
def _batch_all_sorted(row, ref_class, c, class_order, class_starts, self_column, n_pos, margin, semihard_only, counts):
    """Batch-all for one anchor with many positives: sort the negatives once, binary-search each positive."""
    n_refs = row.shape[0]
    members = class_starts[c + 1] - class_starts[c]
    negatives = np.empty(n_refs - members, dtype=np.int64)
    k = 0
    for j in range(n_refs):
        if ref_class[j] != c:
            negatives[k] = j
            k += 1
    positives = np.empty(n_pos, dtype=np.int64)
    i = 0
    for m in range(class_starts[c], class_starts[c + 1]):
        if class_order[m] != self_column:
            positives[i] = class_order[m]
            i += 1
    neg_d = np.empty(negatives.size)
    for k in range(negatives.size):
        neg_d[k] = row[negatives[k]]
    neg_sorted = np.sort(neg_d)
    pos_d = np.empty(n_pos)
    for i in range(n_pos):
        pos_d[i] = row[positives[i]]
    pos_sorted = np.sort(pos_d)
    thresholds = pos_sorted + margin
    positive_part = 0.0
    active = 0
    for i in range(n_pos):
        threshold = pos_d[i] + margin
        hi = np.searchsorted(neg_sorted, threshold, side="left")  # d_an < d_ap + m
        lo = np.searchsorted(neg_sorted, pos_d[i], side="left") if semihard_only else 0  # d_an >= d_ap
        if hi > lo:
            counts[positives[i]] += hi - lo
            positive_part += (hi - lo) * threshold
            active += hi - lo
    for k in range(negatives.size):
        first = np.searchsorted(thresholds, neg_d[k], side="right")  # positives whose threshold exceeds d_an
        last = np.searchsorted(pos_sorted, neg_d[k], side="right") if semihard_only else n_pos
        if last > first:
            counts[negatives[k]] -= last - first
    return positive_part, active


@_njit(parallel=True)
def semihard_negatives(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, offsets, positives, negatives
):
    for a in numba.prange(d.shape[0]):
        if offsets[a + 1] == offsets[a]:
            continue
        row = d[a]
        c = anchor_class[a]
        # The anchor's positives in increasing distance: the negatives farther than positive i are then nested
        # sets, S_0 ⊇ S_1 ⊇ ..., so one pass drops each negative into the bucket k = #positives closer than it,
        # and the closest negative beyond positive i is the minimum over buckets k > i.
        n_pos = offsets[a + 1] - offsets[a]
        pos = np.empty(n_pos, dtype=np.int64)
        at = 0
        for m in range(class_starts[c], class_starts[c + 1]):
            if class_order[m] != a + self_offset:
                pos[at] = class_order[m]
                at += 1
        pos_d = np.empty(n_pos, dtype=row.dtype)
        for i in range(n_pos):
            pos_d[i] = row[pos[i]]
        order = np.argsort(pos_d, kind="mergesort")
        sorted_d = pos_d[order]
        bucket_best = np.full(n_pos + 1, -1, dtype=np.int64)
        bucket_value = np.full(n_pos + 1, np.inf)
        farthest = -1
        farthest_value = -np.inf
        for j in range(row.shape[0]):
            if ref_class[j] == c:
                continue
            value = row[j]
            if value > farthest_value:
                farthest_value = value
                farthest = j
            if n_pos <= SWEEP_MAX_POSITIVES:  # positives strictly closer than this negative
                k = 0
                for i in range(n_pos):
                    k += sorted_d[i] < value
            else:
                k = np.searchsorted(sorted_d, value, side="left")
            if value < bucket_value[k]:
                bucket_value[k] = value
                bucket_best[k] = j
        best = -1  # running minimum over buckets k > i, from the last bucket down; ties to the lowest index
        for i in range(n_pos - 1, -1, -1):
            candidate = bucket_best[i + 1]
            if candidate >= 0 and (
                best < 0 or row[candidate] < row[best] or (row[candidate] == row[best] and candidate < best)
            ):
                best = candidate
            positives[offsets[a] + order[i]] = pos[order[i]]
            negatives[offsets[a] + order[i]] = best if best >= 0 else farthest


@_njit(parallel=True)
def select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode):
    n_anchors = d.shape[0]
    chosen_positive = np.full(n_anchors, -1, dtype=np.int64)
    chosen_negative = np.full(n_anchors, -1, dtype=np.int64)
    for a in numba.prange(n_anchors):
        row = d[a]
        c = anchor_class[a]
        self_column = a + self_offset
        # Modes: 0 hardest, 1 easiest, 2 semi-hard (relative to the other side's choice, made first).
        p = -1
        n = -1
        if positive_mode == 0 and negative_mode == 0:  # batch-hard: the running extremes kept in registers
            best_positive = -np.inf
            best_negative = np.inf
            for j in range(row.shape[0]):
                value = row[j]
                if ref_class[j] == c:
                    if j != self_column and value > best_positive:
                        best_positive = value
                        p = j
                elif value < best_negative:
                    best_negative = value
                    n = j
        elif positive_mode != 2:
            p = _extreme(row, ref_class, c, True, self_column, positive_mode == 0, np.inf, -np.inf)
        if negative_mode != 2:
            n = _extreme(row, ref_class, c, False, self_column, negative_mode == 1, np.inf, -np.inf)
        elif p >= 0:  # the closest negative farther than the chosen positive
            n = _extreme(row, ref_class, c, False, self_column, False, np.inf, row[p])
        if positive_mode == 2 and n >= 0:  # the farthest positive closer than the chosen negative
            p = _extreme(row, ref_class, c, True, self_column, True, row[n], -np.inf)
        chosen_positive[a] = p
        chosen_negative[a] = n
    return chosen_positive, chosen_negative


@_njit()
def _extreme(row, ref_class, c, same_class, self_column, largest, below, above):
    """The positive (``same_class``) or negative reference with the largest (smallest) distance strictly inside
    (above, below); -1 if none. Ties go to the lowest index."""
    best = -1
    for j in range(row.shape[0]):
        if j == self_column or (ref_class[j] == c) != same_class:
            continue
        value = row[j]
        if not (above < value < below):
            continue
        if best < 0 or (value > row[best] if largest else value < row[best]):
            best = j
    return best


@_njit()
def scatter_add_rows(out, index, values):
    for k in range(index.shape[0]):  # serial: two rows of values may share a target
        for f in range(values.shape[1]):
            out[index[k], f] += values[k, f]


@_njit(parallel=True)
def contrastive_pairs(d, ref_class, anchor_class, self_offset, margin, pos_margin, form, out, divide):
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
            candidate = j != self_column
            h = max(dj - pos_margin if similar else margin - dj, 0.0)
            if form == 0:
                term, dterm_dh = 0.5 * h * h, h
            elif form == 1:
                term, dterm_dh = h * h, 2.0 * h
            else:
                term, dterm_dh = h, 1.0
            live = candidate & (term > 0)
            live_term = term if live else 0.0
            sum_similar += live_term if similar else 0.0
            sum_dissimilar += 0.0 if similar else live_term
            active_similar += live & similar
            active_dissimilar += live & (not similar)
            similar_pairs += candidate & similar
            slope = (dterm_dh if similar else -dterm_dh) if live else 0.0
            if divide:
                quotient = slope / (dj if dj > 0 else 1.0)  # no 0/0: both selects vectorise
                slope = quotient if dj > 0 else 0.0
            out[a, j] = slope
        values[a, 0] = sum_similar
        values[a, 1] = sum_dissimilar
        n_active[a, 0] = active_similar
        n_active[a, 1] = active_dissimilar
        n_pairs[a, 0] = similar_pairs
        n_pairs[a, 1] = n_refs - similar_pairs - (1 if 0 <= self_column < n_refs else 0)
    return values, n_active, n_pairs


@_njit(parallel=True)
def scale_same_class(out, ref_class, anchor_class, class_order, class_starts, factor):
    for a in numba.prange(out.shape[0]):
        c = anchor_class[a]
        if c < 0:
            continue
        for m in range(class_starts[c], class_starts[c + 1]):
            out[a, class_order[m]] *= factor
