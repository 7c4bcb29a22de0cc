"""WARP's kernels compiled by Numba (contracts and the sampling scheme: ``numpy/warp.py``): the sampled violators,
the same draws bit for bit, and the exact ranks.
"""

import numba
import numpy as np

from ._jit import _njit, _rows_kernel

_M32 = 0xFFFFFFFF
_TWO_TO_MINUS_53 = 2.0**-53
_WARP_QUERIES_PER_TASK = 64  # queries that share one Fisher–Yates buffer (restored after every pair)


@_njit()
def _warp_mul32(x, c):
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


@_njit()
def _warp_fmix32(h):
    h = h ^ (h >> 16)
    h = _warp_mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _warp_mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


@_njit()
def _warp_draw(seed, s, n_items):
    step = s + 1
    a = _warp_fmix32(((seed & _M32) + step * 0x9E3779B9) & _M32)
    b = _warp_fmix32(((seed >> 32) + step * 0x85EBCA77) & _M32)
    u = np.float64((a << 21) | (b >> 11)) * _TWO_TO_MINUS_53
    return s + min(np.int64(u * (n_items - s)), n_items - s - 1)


@_njit()
def _warp_score(a, b, dot, q, j):
    if not dot:
        return np.float64(a[q, j])
    total = 0.0
    for f in range(a.shape[1]):
        total += np.float64(a[q, f]) * np.float64(b[j, f])
    return total


@_njit(parallel=True)
def warp_violators(
    a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, violators, trials, hinges
):
    n_queries, n_items = relevance.shape
    n_tasks = (n_queries + _WARP_QUERIES_PER_TASK - 1) // _WARP_QUERIES_PER_TASK
    for task in numba.prange(n_tasks):
        order = np.arange(n_items)  # the Fisher–Yates list of items: back to 0..N−1 after every pair
        swapped = np.empty(n_items, dtype=np.int64)  # r_s of each step, to undo the shuffle
        for q in range(task * _WARP_QUERIES_PER_TASK, min((task + 1) * _WARP_QUERIES_PER_TASK, n_queries)):
            limit = min(max_trials, n_items - (offsets[q + 1] - offsets[q]))
            for k in range(offsets[q], offsets[q + 1]):
                slack = margin - _warp_score(a, b, dot, q, positives[k])
                found = -1
                hinge = 0.0
                t = 0  # trials: negatives drawn
                s = 0  # Fisher–Yates steps: items drawn
                while t < limit:
                    if shuffle:
                        r = _warp_draw(seeds[k], s, n_items)
                        swapped[s] = r
                        order[s], order[r] = order[r], order[s]
                    candidate = order[s]
                    s += 1
                    if relevance[q, candidate]:
                        continue
                    t += 1
                    z = slack + _warp_score(a, b, dot, q, candidate)
                    if z > 0:
                        found = candidate
                        hinge = z
                        break
                violators[k] = found
                trials[k] = t
                hinges[k] = hinge
                if shuffle:
                    for u in range(s - 1, -1, -1):
                        r = swapped[u]
                        order[u], order[r] = order[r], order[u]


@_rows_kernel
def warp_exact(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    n_queries, n_items = scores.shape
    for q in numba.prange(n_queries):
        for j in range(n_items):
            out[q, j] = 0.0
        for k in range(offsets[q], offsets[q + 1]):
            slack = margin - np.float64(scores[q, positives[k]])
            r = 0
            total = 0.0
            for j in range(n_items):
                z = slack + np.float64(scores[q, j])
                if z > 0 and not relevance[q, j]:
                    r += 1
                    total += z
            ranks[k] = r
            hinge_sums[k] = total
            if r == 0:
                continue
            out[q, positives[k]] -= weights[r]
            per_violator = weights[r] / r
            for j in range(n_items):
                if slack + np.float64(scores[q, j]) > 0 and not relevance[q, j]:
                    out[q, j] += per_violator
