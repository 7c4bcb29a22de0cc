"""WARP's kernels in NumPy (:mod:`metricloss.losses.warp`): the sampled violators of every (query, positive) pair,
and the exact ranks on a score matrix. The sampling scheme, which the Numba and CUDA twins follow bit for bit, is
written down below.
"""

import numpy as np

# Queries × items. The score of item j for query q is a[q, j] (a score matrix), or with ``dot`` the dot product
# Σ_f a[q, f]·b[j, f] of two embedding matrices, accumulated in float64 and computed only where it is needed.
# ``relevance`` is the boolean queries × items matrix. The pairs are the (query, positive) pairs in row-major
# order: query q's positive items, in increasing order, are positives[offsets[q]:offsets[q + 1]]. A negative j
# violates pair (q, p) iff its hinge z = (m − s_qp) + s_qj is > 0, in float64.
#
# The sampling scheme, identical in both backends and independent of the thread count. Pair k draws the N items
# in the order of a Fisher–Yates shuffle that it makes as it goes, skipping its query's positives: step s
# (s = 0, 1, ...) swaps positions s and r_s = s + ⌊u_s·(N − s)⌋ of the list of items (initially 0, 1, ..., N − 1),
# then takes the item at position s; a positive is passed over, a negative is a trial and is tested. So the trials
# are the query's negatives in a uniformly random order, without replacement, up to the first violator. u_s ∈ [0, 1)
# is a 53-bit counter-based hash of the pair's seed (seeds[k], from the caller's numpy Generator) and s:
#     a = fmix32((seed mod 2³² + (s + 1)·0x9E3779B9) mod 2³²),  b = fmix32((⌊seed / 2³²⌋ + (s + 1)·0x85EBCA77) mod 2³²),
#     u_s = (a·2²¹ + ⌊b / 2¹¹⌋) · 2⁻⁵³,
# fmix32 being MurmurHash3's 32-bit finaliser; u_s is exact in float64 and u_s·(N − s) is one correctly rounded
# product (below N − s, so the min(·, N − s − 1) kept for safety never acts), the same in NumPy, Numba and Python;
# the order is uniform up to a bias of (N − s)/2⁵³ per step. Without shuffling (``shuffle`` False) the items are
# taken in increasing index. The integer arithmetic stays below 2⁶³: nothing overflows, compiled or in plain Python.

_M32 = 0xFFFFFFFF
_TWO_TO_MINUS_53 = 2.0**-53


def _warp_mul32(x, c):
    """x·c mod 2³² for 0 <= x, c < 2³², without an intermediate >= 2⁶³ (c split into 16-bit halves)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _warp_fmix32(h):
    """MurmurHash3's 32-bit finaliser (elementwise on int64 arrays, or on a Python int)."""
    h = h ^ (h >> 16)
    h = _warp_mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _warp_mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _warp_draw(seed, s, n_items):
    """Step s's Fisher–Yates position r_s = s + ⌊u_s·(N − s)⌋ (see above), elementwise over seeds."""
    step = s + 1
    a = _warp_fmix32(((seed & _M32) + step * 0x9E3779B9) & _M32)
    b = _warp_fmix32(((seed >> 32) + step * 0x85EBCA77) & _M32)
    u = ((a << 21) | (b >> 11)) * _TWO_TO_MINUS_53  # 53 random bits: exact in float64, u < 1
    return s + np.minimum(np.floor(u * (n_items - s)), n_items - s - 1).astype(np.int64)


def _warp_score_row(a, b, dot, q):
    """Query q's scores of every item, in float64."""
    if dot:
        return b.astype(np.float64) @ a[q].astype(np.float64)
    return a[q].astype(np.float64)


def warp_violators(
    a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, violators, trials, hinges
):
    """For each (query, positive) pair, draw the query's negatives until one violates or ``max_trials`` have been
    drawn, in the shuffled order of the scheme above (``seeds``: one per pair) or in increasing item index.

    Writes, per pair k: violators[k] (the first violator's item index, -1 if none was found), trials[k] (the number
    of negatives drawn, the violator included) and hinges[k] (its z; 0 if none). The positives of one query draw in
    lockstep here: row i of ``order`` is positive i's list of items, shuffled as it goes.
    """
    n_queries, n_items = relevance.shape
    for q in range(n_queries):
        row = _warp_score_row(a, b, dot, q)
        pairs = np.arange(offsets[q], offsets[q + 1])
        limit = min(max_trials, n_items - pairs.size)
        slack = margin - row[positives[pairs]]  # z = slack + s⁻
        order = np.tile(np.arange(n_items), (pairs.size, 1))
        found, drawn, z = np.full(pairs.size, -1), np.zeros(pairs.size, dtype=np.int64), np.zeros(pairs.size)
        searching = np.arange(pairs.size) if limit > 0 else np.zeros(0, dtype=np.int64)
        for s in range(n_items):
            if searching.size == 0:
                break
            if shuffle:
                r = _warp_draw(seeds[pairs[searching]], s, n_items)
                at_s, at_r = order[searching, s].copy(), order[searching, r].copy()
                order[searching, s], order[searching, r] = at_r, at_s
            candidates = order[searching, s]
            negative = ~relevance[q, candidates]
            drawn[searching] += negative
            hinge = slack[searching] + row[candidates]
            hit = negative & (hinge > 0)
            found[searching[hit]], z[searching[hit]] = candidates[hit], hinge[hit]
            searching = searching[~hit & (drawn[searching] < limit)]
        violators[pairs], trials[pairs], hinges[pairs] = found, drawn, z


def warp_exact(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    """The exact (unsampled) ranks on a score matrix: per pair k, ranks[k] = the number r of violating negatives
    and hinge_sums[k] = Σ z over them (float64).

    Writes every element of ``out`` (float64, the shape of scores) with the unweighted cotangent of
    Σ_k L(r_k)/r_k · Σ_violators z: −L(r_k) at the pair's positive and +L(r_k)/r_k at each of its violators, summed
    over the query's pairs (0 where r = 0); ``weights[r]`` is L(r), for r = 0..n_items.
    """
    for q in range(scores.shape[0]):
        row = scores[q].astype(np.float64)
        pairs = slice(offsets[q], offsets[q + 1])
        z = (margin - row[positives[pairs]])[:, None] + row[None, :]
        violating = (z > 0) & ~relevance[q][None, :]
        r = np.count_nonzero(violating, axis=1)
        ranks[pairs], hinge_sums[pairs] = r, np.where(violating, z, 0.0).sum(axis=1)
        per_violator = np.divide(weights[r], r, out=np.zeros(r.size), where=r > 0)
        out[q] = per_violator @ violating
        out[q, positives[pairs]] -= weights[r]
