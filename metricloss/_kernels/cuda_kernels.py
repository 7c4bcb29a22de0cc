"""CUDA kernels (numba-cuda) with the names, signatures and contracts of ``numpy_kernels``, for host arrays.

Each public function here takes and fills host NumPy arrays exactly as its ``numpy_kernels`` twin does (read that
module for the contracts): it copies its inputs to the device, launches the kernels, and copies the results back
into the caller's arrays. Kernels that have no CUDA version yet are not silently run on the CPU: asking for one
raises ``NotImplementedError`` naming it (see ``__getattr__`` at the end).

How the kernels are laid out, so that results are deterministic run to run:

* elementwise kernels (the Gram → distance conversion, the pair scale, the symmetrize) give every thread the entries
  it owns (the symmetrize: the pair (i, j), (j, i) with i <= j);
* per-anchor kernels (batch-all, batch-hard selection, FaceNet semi-hard) run one block per anchor; each thread
  writes the columns (or positive pairs) it owns, and per-anchor totals are reduced in shared memory in a fixed
  tree order. Ties between candidates go to the lowest index, as in the reference;
* the scatter-adds are pulls: the pairs are sorted by target once (a stable argsort on the host), and one thread
  per target entry adds its pairs in their original order. No atomics anywhere.

The kernels use only ``cuda.grid``, thread/block indices, ``cuda.shared.array`` and ``cuda.syncthreads`` (no warp
shuffles, no atomics), the subset that numba-cuda's simulator and numba-cuda-mlir both support. The GEMMs are not
here: the caller computes them with NumPy on the host (``metricloss.distances``).

The batch-all kernel counts, for each positive, its active negatives by a loop over the anchor's negatives, and
for each negative its active positives by a loop over the anchor's class (``class_order``): O(B · R · K) for
classes of K references, no sort and no B³ array.
"""

import math

import numpy as np

from ._cuda import cuda_module, simulator_enabled

cuda = cuda_module()

# Threads per block of the per-anchor kernels (a power of two: the shared-memory reductions halve it), and the
# side of the elementwise kernels' square blocks. The simulator runs one Python thread per CUDA thread, so there
# the blocks are small, still smaller than the tested batch sizes 17 and 33, so that the strided loops and the
# reductions run as they do on a GPU.
THREADS, _TILE = (8, 4) if simulator_enabled() else (128, 16)

# Every kernel launch goes through _launch; tests set _launch_log to a list to record (kernel name, argument types)
# and compile each recorded signature with cuda.compile_ptx.
_launch_log = None


def _launch(kernel, grid, block, *args):
    if _launch_log is not None:
        _launch_log.append((kernel_name(kernel), tuple(_type_string(a) for a in args)))
    kernel[grid, block](*args)


def kernel_name(kernel):
    """The Python name of a jitted kernel (on a GPU or in the simulator)."""
    return getattr(kernel, "py_func", getattr(kernel, "fn", None)).__name__


def _type_string(arg):
    """A numba signature string for one launch argument (device arrays are C-contiguous here)."""
    if isinstance(arg, bool | np.bool_):
        return "boolean"
    if isinstance(arg, int | np.integer):
        return "int64"
    if isinstance(arg, float | np.floating):
        return "float64"
    dims = ", ".join([":"] * (arg.ndim - 1) + ["::1"])
    return f"{np.dtype(arg.dtype).name}[{dims}]"


def _grid2(n_rows, n_cols):
    return (max(1, -(-n_rows // _TILE)), max(1, -(-n_cols // _TILE))), (_TILE, _TILE)


def _to_device(a):
    return cuda.to_device(np.ascontiguousarray(a))


# --- device code ---------------------------------------------------------------------------------------------------


@cuda.jit
def _gram_kernel(gram, x, y, sq_x, sq_y, ratio, root):
    i, j = cuda.grid(2)
    if i < gram.shape[0] and j < gram.shape[1]:
        total = float(sq_x[i]) + float(sq_y[j])
        v = total - 2.0 * float(gram[i, j])
        if v <= ratio * total:  # mostly rounding: recompute directly, in float64
            v = 0.0
            for f in range(x.shape[1]):
                u = float(x[i, f]) - float(y[j, f])
                v += u * u
        if root:
            v = math.sqrt(v)
        gram[i, j] = v


@cuda.jit
def _pair_scale_kernel(g, d):
    i, j = cuda.grid(2)
    if i < g.shape[0] and j < g.shape[1]:
        if d[i, j] == 0:
            g[i, j] = 0
        else:
            g[i, j] = g[i, j] / d[i, j]


@cuda.jit
def _symmetrize_kernel(s):
    i, j = cuda.grid(2)
    if i < s.shape[0] and j < s.shape[1] and i <= j:
        total = s[i, j] + s[j, i]
        s[i, j] = total
        s[j, i] = total


@cuda.jit
def _scatter_pull_kernel(out, order, starts, index_values, sign):
    """out[i, f] += sign · values[order[k], f] for k in starts[i]:starts[i + 1], in that order."""
    i, f = cuda.grid(2)
    if i < out.shape[0] and f < out.shape[1]:
        acc = out[i, f]
        for k in range(starts[i], starts[i + 1]):
            acc += sign * index_values[order[k], f]
        out[i, f] = acc


@cuda.jit
def _pair_terms_kernel(x, y, rows, cols, g, squared, terms):
    """terms[k] = g[k] · ∂‖u‖/∂x_i (or ∂‖u‖²/∂x_i), u = x[rows[k]] − y[cols[k]], in float64."""
    k = cuda.grid(1)
    if k < rows.shape[0]:
        r, c = rows[k], cols[k]
        if squared:
            for f in range(x.shape[1]):
                terms[k, f] = 2.0 * g[k] * (float(x[r, f]) - float(y[c, f]))
            return
        largest = 0.0
        for f in range(x.shape[1]):
            largest = max(largest, abs(float(x[r, f]) - float(y[c, f])))
        norm = 0.0
        if largest > 0:
            for f in range(x.shape[1]):
                ratio = (float(x[r, f]) - float(y[c, f])) / largest
                norm += ratio * ratio
            norm = math.sqrt(norm)
        for f in range(x.shape[1]):
            if norm > 0:
                terms[k, f] = g[k] * (((float(x[r, f]) - float(y[c, f])) / largest) / norm)
            else:
                terms[k, f] = 0.0


@cuda.jit
def _batch_all_kernel(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, semihard_only, out, divide, totals
):
    """Block a: row a of out, and totals[a] = (Σ terms, #active, #valid)."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    value_sum = cuda.shared.array(THREADS, np.float64)
    active_sum = cuda.shared.array(THREADS, np.float64)
    n_refs = d.shape[1]
    c = anchor_class[a]
    own = a + self_offset
    start = 0
    stop = 0
    if c >= 0:
        start = class_starts[c]
        stop = class_starts[c + 1]
    value = 0.0
    active = 0.0
    for j in range(t, n_refs, THREADS):
        d_aj = float(d[a, j])
        g = 0.0
        if j != own:
            if ref_class[j] == c:  # a positive: count its active negatives
                threshold = d_aj + margin
                for n in range(n_refs):
                    if n != own and ref_class[n] != c:
                        d_an = float(d[a, n])
                        if d_an < threshold and (not semihard_only or d_an >= d_aj):
                            g += 1.0
                            value += threshold - d_an
                active += g
            else:  # a negative: count the positives with which it is active
                for k in range(start, stop):
                    p = class_order[k]
                    if p != own:
                        d_ap = float(d[a, p])
                        if d_aj < d_ap + margin and (not semihard_only or d_aj >= d_ap):
                            g -= 1.0
        if divide:
            g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g
    value_sum[t] = value
    active_sum[t] = active
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            value_sum[t] += value_sum[t + step]
            active_sum[t] += active_sum[t + step]
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
        totals[a, 1] = active_sum[0]
        totals[a, 2] = n_positive * n_negative


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


# --- WARP (metricloss.losses.warp): device code and host wrappers ---------------------------------------------------
#
# The sampling scheme is numpy_kernels' (read it there): pair k's trials are its query's negatives in the order of a
# Fisher–Yates shuffle drawn step by step from a counter-based hash of (seeds[k], step). One block per query, its
# pairs one after another, each in chunks of THREADS steps: the threads hash the chunk's positions r_s in parallel,
# thread 0 applies the chunk's swaps in order to the query's row of a Q×N scratch list of items (the only serial
# part: a few loads and stores per step), the threads score the chunk's items in parallel, and thread 0 scans them
# in order for the first violator or the trial limit. The list is then put back to 0..N−1 by undoing the swaps,
# chunk by chunk in reverse, for the query's next pair. The hash is written out inside the kernel (no device function,
# see the module docstring; numba's register_jitable compiles one too) in the same int64 arithmetic as the CPU
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
            if shuffle and t < steps:  # r_s = s + ⌊u_s·(N − s)⌋: numpy_kernels._warp_draw, one hash per thread
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


def warp_violators(
    a, b, dot, relevance, offsets, positives, seeds, margin, max_trials, shuffle, violators, trials, hinges
):
    """:func:`numpy_kernels.warp_violators` on the GPU (one block per query, the draws in chunks of THREADS steps;
    with ``shuffle``, a Q×N int64 scratch list of items on the device)."""
    n_queries, n_items = relevance.shape
    n_pairs = positives.size
    if n_pairs == 0:
        return
    d_a = _to_device(a)
    d_b = d_a if b is a else _to_device(b)
    order = cuda.device_array((n_queries, n_items) if shuffle else (1, 1), dtype=np.int64)
    d_seeds = _to_device(np.asarray(seeds if shuffle else np.zeros(1), dtype=np.int64))
    outputs = (
        cuda.device_array(n_pairs, dtype=np.int64),
        cuda.device_array(n_pairs, dtype=np.int64),
        cuda.device_array(n_pairs, dtype=np.float64),
    )
    index = tuple(_to_device(np.asarray(v, dtype=np.int64)) for v in (offsets, positives))
    args = (d_a, d_b, bool(dot), _to_device(relevance), *index, d_seeds, float(margin), int(max_trials), bool(shuffle))
    _launch(_warp_violators_kernel, n_queries, THREADS, *args, order, *outputs)
    for host, device in zip((violators, trials, hinges), outputs, strict=True):
        host[...] = device.copy_to_host()


def warp_exact(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    """:func:`numpy_kernels.warp_exact` on the GPU (one block per query, one shared-memory reduction per pair)."""
    n_pairs = positives.size
    d_out = cuda.device_array(out.shape, dtype=np.float64)
    d_ranks = cuda.device_array(n_pairs, dtype=np.int64)
    d_sums = cuda.device_array(n_pairs, dtype=np.float64)
    if scores.shape[0]:
        index = tuple(_to_device(np.asarray(v, dtype=np.int64)) for v in (offsets, positives))
        args = (_to_device(scores), _to_device(relevance), *index, float(margin), _to_device(weights))
        _launch(_warp_exact_kernel, scores.shape[0], THREADS, *args, d_ranks, d_sums, d_out)
    out[...] = d_out.copy_to_host()
    ranks[...] = d_ranks.copy_to_host()
    hinge_sums[...] = d_sums.copy_to_host()


KERNELS = (
    _gram_kernel,
    _pair_scale_kernel,
    _symmetrize_kernel,
    _scatter_pull_kernel,
    _pair_terms_kernel,
    _batch_all_kernel,
    _select_kernel,
    _semihard_kernel,
    _warp_violators_kernel,
    _warp_exact_kernel,
)


# --- host wrappers: the numpy_kernels contracts ---------------------------------------------------------------------


def _gram_on_device(d_gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    grid, block = _grid2(*d_gram.shape)
    args = (_to_device(x), _to_device(y), _to_device(sq_norm_x), _to_device(sq_norm_y))
    _launch(_gram_kernel, grid, block, d_gram, *args, float(ratio), bool(root))


def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    """:func:`numpy_kernels.gram_to_distances` on the GPU (one thread per entry)."""
    d_gram = _to_device(gram)
    _gram_on_device(d_gram, x, y, sq_norm_x, sq_norm_y, ratio, root)
    gram[...] = d_gram.copy_to_host()


def pair_scale(g, d, squared):
    """:func:`numpy_kernels.pair_scale` on the GPU."""
    if squared:
        return
    d_g = _to_device(g)
    _launch(_pair_scale_kernel, *_grid2(*g.shape), d_g, _to_device(d))
    g[...] = d_g.copy_to_host()


def _symmetrize_on_device(d_s):
    _launch(_symmetrize_kernel, *_grid2(*d_s.shape), d_s)


def symmetrize(s):
    """:func:`numpy_kernels.symmetrize` on the GPU (one thread per pair of entries)."""
    d_s = _to_device(s)
    _symmetrize_on_device(d_s)
    s[...] = d_s.copy_to_host()


def _scatter_pull(d_out, index, d_values, sign):
    """d_out[index[k]] += sign · values[k] (2-D device arrays) as a pull: pairs sorted by target, stably."""
    index = np.asarray(index, dtype=np.int64)
    order = np.argsort(index, kind="stable")
    starts = np.zeros(d_out.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=d_out.shape[0]), out=starts[1:])
    _launch(_scatter_pull_kernel, *_grid2(*d_out.shape), d_out, _to_device(order), _to_device(starts), d_values, sign)


def scatter_add_rows(out, index, values):
    """:func:`numpy_kernels.scatter_add_rows` on the GPU, deterministic (a pull, no atomics)."""
    shape = out.shape
    d_out = _to_device(out.reshape(shape[0], -1))
    _scatter_pull(d_out, index, _to_device(np.asarray(values).reshape(len(index), -1)), 1.0)
    out[...] = d_out.copy_to_host().reshape(shape)


def scatter_add_entries(out, rows, cols, values):
    """:func:`numpy_kernels.scatter_add_entries` on the GPU, deterministic (a pull, no atomics)."""
    flat = np.asarray(rows, dtype=np.int64) * out.shape[1] + np.asarray(cols, dtype=np.int64)
    d_out = _to_device(out.reshape(-1, 1))
    _scatter_pull(d_out, flat, _to_device(np.asarray(values).reshape(-1, 1)), 1.0)
    out[...] = d_out.copy_to_host().reshape(out.shape)


def pull_distance_pairs(x, y, rows, cols, g, squared, grad_x, grad_y):
    """:func:`numpy_kernels.pull_distance_pairs` on the GPU: the pairs' float64 terms (one thread per pair, a K×F
    temporary), then two pulls, into grad_x by ``rows`` and out of grad_y by ``cols``."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    d_terms = cuda.device_array((rows.size, x.shape[1]), dtype=np.float64)
    if rows.size:
        blocks = -(-rows.size // THREADS)
        args = (_to_device(x), _to_device(y), _to_device(rows), _to_device(cols))
        _launch(_pair_terms_kernel, blocks, THREADS, *args, _to_device(g.astype(np.float64)), bool(squared), d_terms)
    d_grad_x = _to_device(grad_x)
    _scatter_pull(d_grad_x, rows, d_terms, 1.0)
    if grad_y is grad_x:
        _scatter_pull(d_grad_x, cols, d_terms, -1.0)
    else:
        d_grad_y = _to_device(grad_y)
        _scatter_pull(d_grad_y, cols, d_terms, -1.0)
        grad_y[...] = d_grad_y.copy_to_host()
    grad_x[...] = d_grad_x.copy_to_host()


def _class_arrays(ref_class, anchor_class, class_order, class_starts):
    return tuple(
        _to_device(np.asarray(a, dtype=np.int64)) for a in (ref_class, anchor_class, class_order, class_starts)
    )


def _batch_all_on_device(d_d, classes, self_offset, margin, semihard_only, d_out, divide):
    totals = cuda.device_array((d_d.shape[0], 3), dtype=np.float64)
    if d_d.shape[0]:
        args = (d_d, *classes, int(self_offset), float(margin), bool(semihard_only), d_out, bool(divide), totals)
        _launch(_batch_all_kernel, d_d.shape[0], THREADS, *args)
    totals = totals.copy_to_host()
    return totals[:, 0].copy(), totals[:, 1].astype(np.int64), totals[:, 2].astype(np.int64)


def batch_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, semihard_only, out, divide
):
    """:func:`numpy_kernels.batch_all_triplets` on the GPU (one block per anchor; out may be d)."""
    d_d = _to_device(d)
    d_out = cuda.device_array(out.shape, dtype=out.dtype)
    classes = _class_arrays(ref_class, anchor_class, class_order, class_starts)
    totals = _batch_all_on_device(d_d, classes, self_offset, margin, semihard_only, d_out, divide)
    out[...] = d_out.copy_to_host()
    return totals


def batch_all_symmetric(
    d, ref_class, anchor_class, class_order, class_starts, margin, semihard_only, out, divide, gram=None
):
    """:func:`numpy_kernels.batch_all_symmetric` on the GPU: the Gram conversion (with ``gram``), the per-anchor
    kernel and the symmetrize, all on the device; d holds the distances afterwards unless out is d."""
    d_d = _to_device(d)
    if gram is not None:
        _gram_on_device(d_d, gram[0], gram[0], gram[1], gram[1], gram[2], gram[3])
    d_out = cuda.device_array(out.shape, dtype=out.dtype)
    classes = _class_arrays(ref_class, anchor_class, class_order, class_starts)
    totals = _batch_all_on_device(d_d, classes, 0, margin, semihard_only, d_out, divide)
    _symmetrize_on_device(d_out)
    if gram is not None and out is not d:
        d[...] = d_d.copy_to_host()
    out[...] = d_out.copy_to_host()
    return totals


def select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode):
    """:func:`numpy_kernels.select_per_anchor` on the GPU (one block per anchor, shared-memory arg-reductions)."""
    chosen = cuda.device_array((d.shape[0], 2), dtype=np.int64)
    if d.shape[0]:
        ref_class, anchor_class = (_to_device(np.asarray(a, dtype=np.int64)) for a in (ref_class, anchor_class))
        args = (_to_device(d), ref_class, anchor_class, int(self_offset), int(positive_mode), int(negative_mode))
        _launch(_select_kernel, d.shape[0], THREADS, *args, chosen)
    chosen = chosen.copy_to_host()
    return chosen[:, 0].copy(), chosen[:, 1].copy()


def semihard_negatives(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, offsets, positives, negatives
):
    """:func:`numpy_kernels.semihard_negatives` on the GPU (one block per anchor, one thread per positive)."""
    chosen = cuda.device_array((positives.size, 2), dtype=np.int64)
    if positives.size:
        classes = _class_arrays(ref_class, anchor_class, class_order, class_starts)
        args = (_to_device(d), *classes, int(self_offset), _to_device(np.asarray(offsets, dtype=np.int64)), chosen)
        _launch(_semihard_kernel, d.shape[0], THREADS, *args)
    chosen = chosen.copy_to_host()
    positives[...] = chosen[:, 0]
    negatives[...] = chosen[:, 1]


IMPLEMENTED = (
    "gram_to_distances",
    "pair_scale",
    "symmetrize",
    "scatter_add_rows",
    "scatter_add_entries",
    "pull_distance_pairs",
    "batch_all_triplets",
    "batch_all_symmetric",
    "select_per_anchor",
    "semihard_negatives",
    "warp_violators",
    "warp_exact",
)


def __getattr__(name):
    """A kernel of ``numpy_kernels`` without a CUDA version: refused by name, never run on the CPU behind the
    caller's back."""
    if not name.startswith("_"):
        from . import numpy_kernels

        if hasattr(numpy_kernels, name):
            raise NotImplementedError(
                f"backend='cuda' has no CUDA version of the kernel {name!r} yet (it has: {', '.join(IMPLEMENTED)}); "
                "use backend='numba' for this loss"
            )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
