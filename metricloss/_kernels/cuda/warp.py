"""WARP's kernels on the GPU (contracts and the sampling scheme: ``numpy/warp.py``), each device kernel beside its host
wrapper: the sampled violators, the same draws bit for bit, and the exact ranks.
"""

import numpy as np

from ._device import THREADS, _device_array, _indices_to_device, _launch, _store, _to_device, cuda

# The sampling scheme is numpy/warp.py's (read it there): pair k's trials are its query's negatives in the order of a
# Fisher–Yates shuffle drawn step by step from a counter-based hash of (seeds[k], step). One block per query, its
# pairs one after another, each in chunks of THREADS steps: the threads hash the chunk's positions r_s in parallel,
# thread 0 applies the chunk's swaps in order to the query's row of a Q×N scratch list of items (the only serial
# part: a few loads and stores per step), the threads score the chunk's items in parallel, and thread 0 scans them
# in order for the first violator or the trial limit. The list is then put back to 0..N−1 by undoing the swaps,
# chunk by chunk in reverse, for the query's next pair. The hash is written out inside the kernel (no device function,
# see the package docstring; numba's register_jitable compiles one too) in the same int64 arithmetic as the CPU
# kernels, below 2⁶³: the same draws bit for bit.

_M32 = 0xFFFFFFFF
_TWO_TO_MINUS_53 = 2.0**-53


@cuda.jit
def _warp_violators_kernel(
    a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, order, violators, trials, hinges
):
    """Block q: violators, trials and hinges of query q's pairs (order: the Q×N scratch list, used if shuffle)."""
    q = cuda.blockIdx.x
    t = cuda.threadIdx.x
    draws = cuda.shared.array(THREADS, np.int64)  # the chunk's Fisher–Yates positions r_s
    drawn = cuda.shared.array(THREADS, np.int64)  # the item taken at each of the chunk's steps
    hinge = cuda.shared.array(THREADS, np.float64)  # its z (negatives only)
    done = cuda.shared.array(1, np.int64)
    n_items = relevance.shape[1]
    if shuffle:
        for j in range(t, n_items, THREADS):
            order[q, j] = j
    limit = min(max_trials, n_items - (offsets[q + 1] - offsets[q]))
    for k in range(offsets[q], offsets[q + 1]):
        p = positives[k]
        score = 0.0
        if dot:
            for f in range(a.shape[1]):
                score += float(a[q, f]) * float(b[p, f])
        else:
            score = float(a[q, p])
        slack = margin - score  # z = slack + s⁻
        n_trials = 0  # thread 0's tally: negatives drawn, the violator and its z
        found = -1
        found_z = 0.0
        cuda.syncthreads()  # every thread is done with the previous pair's shared state
        if t == 0:
            done[0] = 1 if limit <= 0 else 0
        cuda.syncthreads()
        if done[0] != 0:
            if t == 0:
                violators[k] = -1
                trials[k] = 0
                hinges[k] = 0.0
            continue
        s0 = 0  # the chunk's first step
        undoing = False
        while s0 >= 0:
            steps = min(THREADS, n_items - s0)
            s = s0 + t
            if shuffle and t < steps:  # r_s = s + ⌊u_s·(N − s)⌋: numpy/warp.py's _warp_draw, one hash per thread
                step = s + 1
                high = 0  # fmix32 of the seed's low half: u's high 32 bits
                low = 0  # fmix32 of its high half: u's low 21 bits
                for half in range(2):
                    if half == 0:
                        h = ((seeds[k] & _M32) + step * 0x9E3779B9) & _M32
                    else:
                        h = ((seeds[k] >> 32) + step * 0x85EBCA77) & _M32
                    h = h ^ (h >> 16)  # MurmurHash3's fmix32, each product mod 2³² by 16-bit halves
                    h = (h * (0x85EBCA6B & 0xFFFF) + (((h * (0x85EBCA6B >> 16)) & 0xFFFF) << 16)) & _M32
                    h = h ^ (h >> 13)
                    h = (h * (0xC2B2AE35 & 0xFFFF) + (((h * (0xC2B2AE35 >> 16)) & 0xFFFF) << 16)) & _M32
                    h = h ^ (h >> 16)
                    if half == 0:
                        high = h
                    else:
                        low = h
                u = float((high << 21) | (low >> 11)) * _TWO_TO_MINUS_53  # 53 bits: exact, u < 1
                draws[t] = s + min(int(u * (n_items - s)), n_items - s - 1)
            cuda.syncthreads()
            if undoing:  # put the list back: the chunk's swaps in reverse
                if t == 0:
                    for i in range(steps - 1, -1, -1):
                        r = draws[i]
                        held = order[q, r]
                        order[q, r] = order[q, s0 + i]
                        order[q, s0 + i] = held
                cuda.syncthreads()
                s0 -= THREADS
                continue
            if t == 0:  # the chunk's swaps, in order: step s takes the item at position s after its swap
                for i in range(steps):
                    if shuffle:
                        r = draws[i]
                        held = order[q, r]
                        order[q, r] = order[q, s0 + i]
                        order[q, s0 + i] = held
                        drawn[i] = held
                    else:
                        drawn[i] = s0 + i
            cuda.syncthreads()
            if t < steps:
                c = drawn[t]
                if not relevance[q, c]:
                    score = 0.0
                    if dot:
                        for f in range(a.shape[1]):
                            score += float(a[q, f]) * float(b[c, f])
                    else:
                        score = float(a[q, c])
                    hinge[t] = slack + score
            cuda.syncthreads()
            if t == 0:  # the chunk's trials in order, up to the first violator or the limit
                for i in range(steps):
                    c = drawn[i]
                    if relevance[q, c]:
                        continue
                    n_trials += 1
                    if hinge[i] > 0:
                        found = c
                        found_z = hinge[i]
                        break
                    if n_trials >= limit:
                        break
                done[0] = 1 if found >= 0 or n_trials >= limit or s0 + steps >= n_items else 0
            cuda.syncthreads()
            if done[0] != 0:
                if not shuffle:
                    break
                undoing = True  # the same chunk again, undone
            else:
                s0 += THREADS
        if t == 0:
            violators[k] = found
            trials[k] = n_trials
            hinges[k] = found_z


def warp_violators(
    a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, violators, trials, hinges
):
    """:func:`numpy.warp.warp_violators` on the GPU (one block per query, the draws in chunks of THREADS steps;
    with ``shuffle``, a Q×N int64 scratch list of items on the device)."""
    n_queries, n_items = relevance.shape
    n_pairs = positives.size
    if n_pairs == 0:
        return
    d_a = _to_device(a)
    d_b = d_a if b is a else _to_device(b)
    order = _device_array((n_queries, n_items) if shuffle else (1, 1), np.int64)
    d_seeds = _to_device(np.asarray(seeds if shuffle else np.zeros(1), dtype=np.int64))
    outputs = (
        _device_array(n_pairs, np.int64),
        _device_array(n_pairs, np.int64),
        _device_array(n_pairs, np.float64),
    )
    index = _indices_to_device(offsets, positives)
    args = (d_a, d_b, bool(dot), _to_device(relevance), *index, d_seeds, float(margin), int(max_trials), bool(shuffle))
    _launch(_warp_violators_kernel, n_queries, THREADS, *args, order, *outputs)
    for host, device in zip((violators, trials, hinges), outputs, strict=True):
        _store(host, device)


@cuda.jit
def _warp_exact_kernel(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    """Block q: row q of out, and ranks and hinge_sums of query q's pairs, each pair's count and sum reduced in
    shared memory in a fixed tree order; each thread owns the columns j ≡ t (mod THREADS) of out."""
    q = cuda.blockIdx.x
    t = cuda.threadIdx.x
    count = cuda.shared.array(THREADS, np.int64)
    total = cuda.shared.array(THREADS, np.float64)
    n_items = scores.shape[1]
    for j in range(t, n_items, THREADS):
        out[q, j] = 0.0
    for k in range(offsets[q], offsets[q + 1]):
        p = positives[k]
        slack = margin - float(scores[q, p])
        r = 0
        z_sum = 0.0
        for j in range(t, n_items, THREADS):
            z = slack + float(scores[q, j])
            if z > 0 and not relevance[q, j]:
                r += 1
                z_sum += z
        count[t] = r
        total[t] = z_sum
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if t < step:
                count[t] += count[t + step]
                total[t] += total[t + step]
            cuda.syncthreads()
            step //= 2
        r = count[0]
        if t == 0:
            ranks[k] = r
            hinge_sums[k] = total[0]
        if r > 0:  # −L(r) at the positive, +L(r)/r at each violator (a positive is never a violator)
            weight = weights[r]
            per_violator = weight / r
            for j in range(t, n_items, THREADS):
                if j == p:
                    out[q, j] -= weight
                elif slack + float(scores[q, j]) > 0 and not relevance[q, j]:
                    out[q, j] += per_violator
        cuda.syncthreads()  # everyone has read count[0] before the next pair overwrites it


def warp_exact(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    """:func:`numpy.warp.warp_exact` on the GPU (one block per query, one shared-memory reduction per pair)."""
    n_pairs = positives.size
    d_out = _device_array(out.shape, np.float64)
    d_ranks = _device_array(n_pairs, np.int64)
    d_sums = _device_array(n_pairs, np.float64)
    if scores.shape[0]:
        index = _indices_to_device(offsets, positives)
        args = (_to_device(scores), _to_device(relevance), *index, float(margin), _to_device(weights))
        _launch(_warp_exact_kernel, scores.shape[0], THREADS, *args, d_ranks, d_sums, d_out)
    _store(out, d_out)
    _store(ranks, d_ranks)
    _store(hinge_sums, d_sums)
