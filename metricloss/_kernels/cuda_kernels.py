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

import contextlib
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


# The stream kernels are launched on and copies made on: 0, numba's default stream, or within ``launching_on`` the
# current stream of the library a GPU input came from (``_gpu.GpuArrays.stream``).
_stream = 0


def _launch(kernel, grid, block, *args):
    if _launch_log is not None:
        _launch_log.append((kernel_name(kernel), tuple(_type_string(a) for a in args)))
    kernel[grid, block, _stream](*args)


# What allocates the wrappers' device arrays: numba, or within ``launching_on`` the library a GPU input came from
# (torch's caching allocator, CuPy's pool), so that its memory accounting sees them.
_allocate = None


def _device_array(shape, dtype):
    return cuda.device_array(shape, dtype=dtype) if _allocate is None else _allocate(shape, dtype)


@contextlib.contextmanager
def launching_on(stream, allocate=None):
    """Launch the kernels (and make the copies) of the block on ``stream``; allocate with ``allocate(shape, dtype)``
    (returning a numba device array), if given."""
    global _stream, _allocate
    previous = _stream, _allocate
    _stream, _allocate = stream, allocate
    try:
        yield
    finally:
        _stream, _allocate = previous


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
    """A launch over the entries of an n_rows × n_cols array, the x index (consecutive threads) along the columns,
    so that the threads of a warp read and write consecutive entries of a row: ``j, i = cuda.grid(2)``."""
    return (max(1, -(-n_cols // _TILE)), max(1, -(-n_rows // _TILE))), (_TILE, _TILE)


def _is_host(a):
    return isinstance(a, np.ndarray)


def _to_device(a):
    """A host array copied to the device; a device array as it is (no copy)."""
    return cuda.to_device(np.ascontiguousarray(a), stream=_stream) if _is_host(a) else a


def _to_host(d_a):
    """A (small) device result copied to a new host array."""
    host = d_a.copy_to_host(stream=_stream)
    if _stream:  # an asynchronous copy (on stream 0 it is synchronous)
        _stream.synchronize()
    return host


def _host_indices(a):
    """Index arrays (class lists, pairs: O(B) or O(pairs), built on the host) as C-contiguous int64."""
    return np.ascontiguousarray(a, dtype=np.int64)


def _indices_to_device(*arrays):
    """Host index arrays (class lists, pairs) on the device as int64, in a tuple."""
    return tuple(_to_device(_host_indices(a)) for a in arrays)


def _floats_to_device(*arrays):
    """Host per-row or per-pair numbers (log-sum-exps, coefficients, slopes) on the device as float64, in a tuple."""
    return tuple(_to_device(np.ascontiguousarray(a, dtype=np.float64)) for a in arrays)


def _store(target, d_result):
    """The device result into the caller's array: copied back to a host array; into a device array on the device
    (nothing to do where the kernels wrote it in place)."""
    if _is_host(target):
        target[...] = _to_host(d_result)
    elif d_result is not target:
        target.copy_to_device(d_result, stream=_stream)


# --- device code ---------------------------------------------------------------------------------------------------


@cuda.jit
def _gram_kernel(gram, x, y, sq_x, sq_y, ratio, root):
    j, i = cuda.grid(2)
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
    j, i = cuda.grid(2)
    if i < g.shape[0] and j < g.shape[1]:
        if d[i, j] == 0:
            g[i, j] = 0
        else:
            g[i, j] = g[i, j] / d[i, j]


@cuda.jit
def _symmetrize_kernel(s):
    j, i = cuda.grid(2)
    if i < s.shape[0] and j < s.shape[1] and i <= j:
        total = s[i, j] + s[j, i]
        s[i, j] = total
        s[j, i] = total


@cuda.jit
def _scatter_pull_kernel(out, order, starts, index_values, sign):
    """out[i, f] += sign · values[order[k], f] for k in starts[i]:starts[i + 1], in that order."""
    f, i = cuda.grid(2)
    if i < out.shape[0] and f < out.shape[1]:
        acc = out[i, f]
        for k in range(starts[i], starts[i + 1]):
            acc += sign * index_values[order[k], f]
        out[i, f] = acc


@cuda.jit
def _add_entries_kernel(out, rows, cols, sums):
    """out[rows[k], cols[k]] += sums[k], one thread per entry (the entries are distinct)."""
    k = cuda.grid(1)
    if k < rows.shape[0]:
        out[rows[k], cols[k]] = out[rows[k], cols[k]] + sums[k]


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


@cuda.jit
def _row_sq_norms_kernel(x, out):
    """out[i] = ‖x_i‖², accumulated in float64 (one thread per row)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        total = 0.0
        for f in range(x.shape[1]):
            total += float(x[i, f]) * float(x[i, f])
        out[i] = total


@cuda.jit
def _scale_kernel(a, factor):
    """a *= factor, elementwise (an exact power of two where the GPU path rescales)."""
    j, i = cuda.grid(2)
    if i < a.shape[0] and j < a.shape[1]:
        a[i, j] = a[i, j] * factor


@cuda.jit
def _gather_kernel(m, rows, cols, out):
    """out[k] = m[rows[k], cols[k]] in float64 (one thread per entry)."""
    k = cuda.grid(1)
    if k < rows.shape[0]:
        out[k] = float(m[rows[k], cols[k]])


@cuda.jit
def _scaled_pull_kernel(grad, s, a, s_b, factor):
    """Block i: grad[i] = factor · ((Σ_j s[i, j]) a[i] − (S B)[i]), the row sum by a shared-memory tree
    reduction in float64 (the GEMM S B is cuBLAS's, given as s_b)."""
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    row_sum = cuda.shared.array(THREADS, dtype=np.float64)
    total = 0.0
    for j in range(t, s.shape[1], THREADS):
        total += float(s[i, j])
    row_sum[t] = total
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            row_sum[t] += row_sum[t + step]
        cuda.syncthreads()
        step //= 2
    for f in range(t, a.shape[1], THREADS):
        grad[i, f] = factor * (row_sum[0] * float(a[i, f]) - float(s_b[i, f]))


# --- device code: contrastive pairs, soft-margin batch-all, quadruplet pairs ---------------------------------------


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


@cuda.jit
def _scale_same_class_kernel(out, anchor_class, class_order, class_starts, factor):
    """Block a, a thread per member j of a's class: out[a, j] *= factor."""
    a = cuda.blockIdx.x
    c = anchor_class[a]
    if c >= 0:
        for k in range(class_starts[c] + cuda.threadIdx.x, class_starts[c + 1], THREADS):
            j = class_order[k]
            out[a, j] = out[a, j] * factor


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


# --- host wrappers: the numpy_kernels contracts ---------------------------------------------------------------------


def _gram_on_device(d_gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    grid, block = _grid2(*d_gram.shape)
    args = (_to_device(x), _to_device(y), _to_device(sq_norm_x), _to_device(sq_norm_y))
    _launch(_gram_kernel, grid, block, d_gram, *args, float(ratio), bool(root))


def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    """:func:`numpy_kernels.gram_to_distances` on the GPU (one thread per entry)."""
    d_gram = _to_device(gram)
    _gram_on_device(d_gram, x, y, sq_norm_x, sq_norm_y, ratio, root)
    _store(gram, d_gram)


def pair_scale(g, d, squared):
    """:func:`numpy_kernels.pair_scale` on the GPU."""
    if squared:
        return
    d_g = _to_device(g)
    _launch(_pair_scale_kernel, *_grid2(*g.shape), d_g, _to_device(d))
    _store(g, d_g)


def _symmetrize_on_device(d_s):
    _launch(_symmetrize_kernel, *_grid2(*d_s.shape), d_s)


def symmetrize(s):
    """:func:`numpy_kernels.symmetrize` on the GPU (one thread per pair of entries)."""
    d_s = _to_device(s)
    _symmetrize_on_device(d_s)
    _store(s, d_s)


def _scatter_pull(d_out, index, d_values, sign):
    """d_out[index[k]] += sign · values[k] (2-D device arrays) as a pull: pairs sorted by target, stably."""
    index = _host_indices(index)
    order = np.argsort(index, kind="stable")
    starts = np.zeros(d_out.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=d_out.shape[0]), out=starts[1:])
    _launch(_scatter_pull_kernel, *_grid2(*d_out.shape), d_out, _to_device(order), _to_device(starts), d_values, sign)


def scatter_add_rows(out, index, values):
    """:func:`numpy_kernels.scatter_add_rows` on the GPU, deterministic (a pull, no atomics)."""
    d_out = _to_device(out)
    _scatter_pull(d_out.reshape(out.shape[0], -1), index, _to_device(values).reshape(len(index), -1), 1.0)
    _store(out, d_out)


def scatter_add_entries(out, rows, cols, values):
    """:func:`numpy_kernels.scatter_add_entries` on the GPU, deterministic and without atomics: repeated entries
    are summed on the host first (in float64, in order; ``values`` are host values, O(pairs)), then one thread
    per distinct entry adds its sum. Only the pairs cross to the device, never the B×R matrix."""
    flat = _host_indices(rows) * out.shape[1] + _host_indices(cols)
    entries, which = np.unique(flat, return_inverse=True)
    sums = np.bincount(which.reshape(-1), weights=np.asarray(values, dtype=np.float64), minlength=entries.size)
    d_out = _to_device(out)
    if entries.size:
        args = (_to_device(entries // out.shape[1]), _to_device(entries % out.shape[1]), _to_device(sums))
        _launch(_add_entries_kernel, -(-entries.size // THREADS), THREADS, d_out, *args)
    _store(out, d_out)


def pull_distance_pairs(x, y, rows, cols, g, squared, grad_x, grad_y):
    """:func:`numpy_kernels.pull_distance_pairs` on the GPU: the pairs' float64 terms (one thread per pair, a K×F
    temporary), then two pulls, into grad_x by ``rows`` and out of grad_y by ``cols``."""
    rows, cols = _host_indices(rows), _host_indices(cols)
    d_terms = _device_array((rows.size, x.shape[1]), np.float64)
    if rows.size:
        blocks = -(-rows.size // THREADS)
        args = (_to_device(x), _to_device(y), _to_device(rows), _to_device(cols))
        _launch(_pair_terms_kernel, blocks, THREADS, *args, *_floats_to_device(g), bool(squared), d_terms)
    d_grad_x = _to_device(grad_x)
    _scatter_pull(d_grad_x, rows, d_terms, 1.0)
    if grad_y is grad_x:
        _scatter_pull(d_grad_x, cols, d_terms, -1.0)
    else:
        d_grad_y = _to_device(grad_y)
        _scatter_pull(d_grad_y, cols, d_terms, -1.0)
        _store(grad_y, d_grad_y)
    _store(grad_x, d_grad_x)


def _output_buffer(out, d):
    """Where a per-anchor kernel writes its B×R output: ``out`` itself if it is a device array other than d (which
    the kernel reads while it writes), else a new device array."""
    if _is_host(out) or out is d:
        return _device_array(out.shape, out.dtype)
    return out


def _batch_all_on_device(d_d, classes, self_offset, margin, semihard_only, d_out, divide, soft=False, smallest=0.0):
    totals = _device_array((d_d.shape[0], 3), np.float64)
    if d_d.shape[0]:
        flags = (bool(semihard_only), bool(soft), float(smallest))
        args = (d_d, *classes, int(self_offset), float(margin), *flags, d_out, bool(divide), totals)
        _launch(_batch_all_kernel, d_d.shape[0], THREADS, *args)
    totals = _to_host(totals)
    return totals[:, 0].copy(), totals[:, 1].astype(np.int64), totals[:, 2].astype(np.int64)


def batch_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, semihard_only, out, divide
):
    """:func:`numpy_kernels.batch_all_triplets` on the GPU (one block per anchor; out may be d)."""
    d_d = _to_device(d)
    d_out = _output_buffer(out, d)
    classes = _indices_to_device(ref_class, anchor_class, class_order, class_starts)
    totals = _batch_all_on_device(d_d, classes, self_offset, margin, semihard_only, d_out, divide)
    _store(out, d_out)
    return totals


def batch_all_symmetric(
    d, ref_class, anchor_class, class_order, class_starts, margin, semihard_only, out, divide, gram=None
):
    """:func:`numpy_kernels.batch_all_symmetric` on the GPU: the Gram conversion (with ``gram``), the per-anchor
    kernel and the symmetrize, all on the device; d holds the distances afterwards unless out is d."""
    d_d = _to_device(d)
    if gram is not None:
        _gram_on_device(d_d, gram[0], gram[0], gram[1], gram[1], gram[2], gram[3])
    d_out = _output_buffer(out, d)
    classes = _indices_to_device(ref_class, anchor_class, class_order, class_starts)
    totals = _batch_all_on_device(d_d, classes, 0, margin, semihard_only, d_out, divide)
    _symmetrize_on_device(d_out)
    if gram is not None and out is not d:
        _store(d, d_d)
    _store(out, d_out)
    return totals


def select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode):
    """:func:`numpy_kernels.select_per_anchor` on the GPU (one block per anchor, shared-memory arg-reductions)."""
    chosen = _device_array((d.shape[0], 2), np.int64)
    if d.shape[0]:
        ref_class, anchor_class = _indices_to_device(ref_class, anchor_class)
        args = (_to_device(d), ref_class, anchor_class, int(self_offset), int(positive_mode), int(negative_mode))
        _launch(_select_kernel, d.shape[0], THREADS, *args, chosen)
    chosen = _to_host(chosen)
    return chosen[:, 0].copy(), chosen[:, 1].copy()


def semihard_negatives(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, offsets, positives, negatives
):
    """:func:`numpy_kernels.semihard_negatives` on the GPU (one block per anchor, one thread per positive)."""
    chosen = _device_array((positives.size, 2), np.int64)
    if positives.size:
        classes = _indices_to_device(ref_class, anchor_class, class_order, class_starts)
        args = (_to_device(d), *classes, int(self_offset), *_indices_to_device(offsets), chosen)
        _launch(_semihard_kernel, d.shape[0], THREADS, *args)
    chosen = _to_host(chosen)
    positives[...] = chosen[:, 0]
    negatives[...] = chosen[:, 1]


# --- host wrappers: contrastive pairs, soft-margin batch-all, quadruplet pairs -------------------------------------

# Blocks of the bitonic sort's launches, each a grid-stride loop over its pairs of slots: on a GPU enough to give
# every pair a thread; in the simulator two, so that the stride is exercised and a launch stays cheap.
_MAX_SORT_BLOCKS = 2 if simulator_enabled() else 1 << 30


def contrastive_pairs(d, ref_class, anchor_class, self_offset, margin, pos_margin, form, out, divide):
    """:func:`numpy_kernels.contrastive_pairs` on the GPU: one block per anchor, a thread per column (strided),
    the six per-anchor totals by shared-memory tree reductions. O(B·R) time; out may be d."""
    c1 = 1.0 if form == 2 else 0.0  # ℓ = (c₂h + c₁)h, as in the reference
    c2 = 0.5 if form == 0 else (1.0 if form == 1 else 0.0)
    totals = np.zeros((d.shape[0], 6))
    if d.shape[0]:
        d_totals = _device_array(totals.shape, np.float64)
        d_out = _device_array(out.shape, out.dtype)
        ref_class, anchor_class = _indices_to_device(ref_class, anchor_class)
        args = (_to_device(d), ref_class, anchor_class, int(self_offset), float(margin), float(pos_margin), c1, c2)
        _launch(_contrastive_kernel, d.shape[0], THREADS, *args, d_out, bool(divide), d_totals)
        _store(out, d_out)
        totals = _to_host(d_totals)
    return totals[:, 0:2].copy(), totals[:, 2:4].astype(np.int64), totals[:, 4:6].astype(np.int64)


def scale_same_class(out, ref_class, anchor_class, class_order, class_starts, factor):
    """:func:`numpy_kernels.scale_same_class` on the GPU: one block per anchor, a thread per member of its class
    (strided). O(B·K)."""
    if out.shape[0]:
        d_out = _to_device(out)
        classes = _indices_to_device(anchor_class, class_order, class_starts)
        _launch(_scale_same_class_kernel, out.shape[0], THREADS, d_out, *classes, float(factor))
        _store(out, d_out)


def soft_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, smallest, out, divide
):
    """:func:`numpy_kernels.soft_all_triplets` on the GPU: the batch-all kernel with softplus terms and σ slopes
    (each term's softplus computed twice, by its positive and by its negative); out may be d."""
    d_d = _to_device(d)
    d_out = _output_buffer(out, d)
    classes = _indices_to_device(ref_class, anchor_class, class_order, class_starts)
    totals = _batch_all_on_device(d_d, classes, self_offset, margin, False, d_out, divide, True, smallest)
    _store(out, d_out)
    return totals


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


def quadruplet_pairs(d, ref_class, class_order, class_starts, margin2, out, divide):
    """:func:`numpy_kernels.quadruplet_pairs` on the GPU, by the same counts (never the quadruplets).

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
    ref_class, class_order, class_starts = (_host_indices(a) for a in (ref_class, class_order, class_starts))
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


def warp_exact(scores, relevance, offsets, positives, margin, weights, ranks, hinge_sums, out):
    """:func:`numpy_kernels.warp_exact` on the GPU (one block per query, one shared-memory reduction per pair)."""
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


# --- the GPU path's own steps (no numpy_kernels twin: on host arrays NumPy does them, in metricloss.distances) ---


def row_sq_norms(x, out):
    """out[i] = ‖x_i‖² for device arrays (float64 sums, stored in out's dtype)."""
    if x.shape[0]:
        _launch(_row_sq_norms_kernel, -(-x.shape[0] // THREADS), THREADS, x, out)


def scale(a, factor):
    """a *= factor in place, for a 2-D device array."""
    _launch(_scale_kernel, *_grid2(*a.shape), a, float(factor))


def gather_entries(m, rows, cols):
    """m[rows[k], cols[k]] for a device matrix m and host index arrays: a host float64 array of len(rows)."""
    rows, cols = _host_indices(rows), _host_indices(cols)
    out = _device_array(rows.size, np.float64)
    if rows.size:
        _launch(_gather_kernel, -(-rows.size // THREADS), THREADS, m, _to_device(rows), _to_device(cols), out)
    return _to_host(out)


def scaled_pull(grad, s, a, s_b, factor):
    """grad = factor · (diag(S·1) A − S B) for device arrays, S B given (the GEMM, done by the input's library):
    one block per row."""
    if grad.shape[0]:
        _launch(_scaled_pull_kernel, grad.shape[0], THREADS, grad, s, a, s_b, float(factor))


# --- lifted structure losses (metricloss.losses.lifted): device code and host wrappers -----------------------------
#
# negative_softmax and generalized_lifted_rows run one block per anchor: a strided scan of the row for the shift
# (the closest negative, the farthest positive), a shared-memory min/max reduction, a strided sum of the shifted
# exponentials and a tree sum, then each thread writes the columns it scanned (so out may be d: a thread reads each
# of its entries before writing it, and no other thread touches them). lifted_pairs is one block per anchor over
# the anchor's class, four tree sums. lifted_cotangent and transposed are one thread per entry, the x index on
# the output's columns (coalesced writes).


@cuda.jit
def _negative_softmax_kernel(d, ref_class, anchor_class, margin, out, divide, lse):
    """Block a: lse[a] = log Σ_n e^{m − d_an} over a's negatives, shifted by the closest one (−inf if none), and
    out[a, n] = e^{closest − d_an} / Σ (over d_an with ``divide``, 0 where d_an = 0) on each negative."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    low = cuda.shared.array(THREADS, np.float64)
    total = cuda.shared.array(THREADS, np.float64)
    c = anchor_class[a]
    n_refs = d.shape[1]
    closest = math.inf
    for j in range(t, n_refs, THREADS):
        if ref_class[j] != c:
            closest = min(closest, float(d[a, j]))
    low[t] = closest
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            low[t] = min(low[t], low[t + step])
        cuda.syncthreads()
        step //= 2
    closest = low[0]
    found = closest < math.inf
    acc = 0.0
    if found:
        for j in range(t, n_refs, THREADS):
            if ref_class[j] != c:
                acc += math.exp(closest - float(d[a, j]))
    total[t] = acc
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            total[t] += total[t + step]
        cuda.syncthreads()
        step //= 2
    norm = total[0]  # >= 1 when found: the closest negative contributes e^0
    if found:
        for j in range(t, n_refs, THREADS):
            if ref_class[j] != c:
                d_aj = float(d[a, j])
                weight = math.exp(closest - d_aj) / norm
                if divide:
                    weight = weight / d_aj if d_aj > 0 else 0.0
                out[a, j] = weight
    if t == 0:
        lse[a] = margin - closest + math.log(norm) if found else -math.inf


@cuda.jit
def _lifted_pairs_kernel(d, anchor_class, class_order, class_starts, self_offset, row_lse, col_lse, totals):
    """Block a, threads strided over a's class: totals[a] = (Σ_p ½[J_ap]₊², #pairs, #{J > 0}, Σ_p [J_ap]₊ σ_ap),
    J_ap = logaddexp(row_lse[a], col_lse[p]) + d_ap and σ_ap = e^{row_lse[a] − logaddexp(...)}."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    value_sum = cuda.shared.array(THREADS, np.float64)
    pair_sum = cuda.shared.array(THREADS, np.float64)
    active_sum = cuda.shared.array(THREADS, np.float64)
    coef_sum = cuda.shared.array(THREADS, np.float64)
    c = anchor_class[a]
    own = a + self_offset
    value = 0.0
    pairs = 0.0
    active = 0.0
    coef = 0.0
    if c >= 0:
        row = row_lse[a]
        for k in range(class_starts[c] + t, class_starts[c + 1], THREADS):
            p = class_order[k]
            if p != own:
                pairs += 1.0
                column = col_lse[p]
                top = max(row, column)  # logaddexp(row, column), −inf when both are
                pair_lse = top
                if top > -math.inf:
                    pair_lse = top + math.log1p(math.exp(min(row, column) - top))
                hinge = pair_lse + float(d[a, p])
                if hinge > 0:
                    active += 1.0
                    value += 0.5 * hinge * hinge
                    coef += hinge * math.exp(row - pair_lse)
    value_sum[t] = value
    pair_sum[t] = pairs
    active_sum[t] = active
    coef_sum[t] = coef
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            value_sum[t] += value_sum[t + step]
            pair_sum[t] += pair_sum[t + step]
            active_sum[t] += active_sum[t + step]
            coef_sum[t] += coef_sum[t + step]
        cuda.syncthreads()
        step //= 2
    if t == 0:
        totals[a, 0] = value_sum[0]
        totals[a, 1] = pair_sum[0]
        totals[a, 2] = active_sum[0]
        totals[a, 3] = coef_sum[0]


@cuda.jit
def _lifted_cotangent_kernel(
    d, ref_class, anchor_class, self_offset, row_lse, col_lse, row_coef, col_coef, col_weights, out, divide
):
    """Entry (a, j), j the x index: a negative −row_coef[a]·out[a, j] − col_coef[j]·col_weights[j, a] (the latter
    read only where col_coef[j] != 0), a positive [J_aj]₊ (over d_aj with ``divide``), the anchor itself 0."""
    j, a = cuda.grid(2)
    if a < out.shape[0] and j < out.shape[1]:
        d_aj = float(d[a, j])
        if ref_class[j] != anchor_class[a]:
            g = -row_coef[a] * float(out[a, j])
            if col_coef[j] != 0:
                g -= col_coef[j] * float(col_weights[j, a])
        elif j == a + self_offset:
            g = 0.0
        else:
            row = row_lse[a]
            column = col_lse[j]
            top = max(row, column)  # logaddexp(row, column), −inf when both are
            pair_lse = top
            if top > -math.inf:
                pair_lse = top + math.log1p(math.exp(min(row, column) - top))
            g = max(pair_lse + d_aj, 0.0)
            if divide:
                g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g


@cuda.jit
def _generalized_lifted_kernel(d, ref_class, anchor_class, self_offset, margin, keep_incomplete, out, divide, totals):
    """Block a: totals[a] = (t_a, whether a has a positive and a negative) and row a of out, the softmax weights
    e^{d_ap − farthest}/Σ on the positives and −e^{closest − d_an}/Σ on the negatives where t_a > 0, else 0."""
    a = cuda.blockIdx.x
    t = cuda.threadIdx.x
    high = cuda.shared.array(THREADS, np.float64)
    low = cuda.shared.array(THREADS, np.float64)
    pos_sum = cuda.shared.array(THREADS, np.float64)
    neg_sum = cuda.shared.array(THREADS, np.float64)
    c = anchor_class[a]
    own = a + self_offset
    n_refs = d.shape[1]
    farthest = -math.inf
    closest = math.inf
    for j in range(t, n_refs, THREADS):
        d_aj = float(d[a, j])
        if ref_class[j] != c:
            closest = min(closest, d_aj)
        elif j != own:
            farthest = max(farthest, d_aj)
    high[t] = farthest
    low[t] = closest
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            high[t] = max(high[t], high[t + step])
            low[t] = min(low[t], low[t + step])
        cuda.syncthreads()
        step //= 2
    farthest = high[0]
    closest = low[0]
    pos = 0.0
    neg = 0.0
    for j in range(t, n_refs, THREADS):  # a positive exists where farthest > −inf, a negative where closest < inf
        d_aj = float(d[a, j])
        if ref_class[j] != c:
            neg += math.exp(closest - d_aj)
        elif j != own:
            pos += math.exp(d_aj - farthest)
    pos_sum[t] = pos
    neg_sum[t] = neg
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            pos_sum[t] += pos_sum[t + step]
            neg_sum[t] += neg_sum[t + step]
        cuda.syncthreads()
        step //= 2
    pos_total = pos_sum[0]
    neg_total = neg_sum[0]
    has_pos = farthest > -math.inf
    has_neg = closest < math.inf
    empty = 0.0 if keep_incomplete else -math.inf
    pos_lse = farthest + math.log(pos_total) if has_pos else empty
    neg_lse = margin - closest + math.log(neg_total) if has_neg else empty
    total = pos_lse + neg_lse
    live = total > 0
    pos_scale = 1.0 / pos_total if live and has_pos else 0.0
    neg_scale = -1.0 / neg_total if live and has_neg else 0.0
    for j in range(t, n_refs, THREADS):
        d_aj = float(d[a, j])
        g = 0.0
        if ref_class[j] != c:
            g = neg_scale * math.exp(closest - d_aj)
        elif j != own:
            g = pos_scale * math.exp(d_aj - farthest)
        if divide:
            g = g / d_aj if d_aj > 0 else 0.0
        out[a, j] = g
    if t == 0:
        totals[a, 0] = total if live else 0.0
        totals[a, 1] = 1.0 if has_pos and has_neg else 0.0


@cuda.jit
def _transpose_kernel(m, out):
    """out[j, i] = m[i, j], one thread per entry of out, i the x index."""
    i, j = cuda.grid(2)
    if j < out.shape[0] and i < out.shape[1]:
        out[j, i] = m[i, j]


def negative_softmax(d, ref_class, anchor_class, margin, out, divide):
    """:func:`numpy_kernels.negative_softmax` on the GPU (one block per anchor; out may be d)."""
    if d.shape[0] == 0:
        return np.empty(0)
    d_d = _to_device(d)
    d_out = d_d if out is d else _to_device(out)  # copied in: its entries other than the negatives are kept
    lse = _device_array(d.shape[0], np.float64)
    args = (d_d, *_indices_to_device(ref_class, anchor_class), float(margin), d_out, bool(divide), lse)
    _launch(_negative_softmax_kernel, d.shape[0], THREADS, *args)
    _store(out, d_out)
    return _to_host(lse)


def lifted_pairs(d, ref_class, anchor_class, class_order, class_starts, self_offset, row_lse, col_lse):
    """:func:`numpy_kernels.lifted_pairs` on the GPU (one block per anchor, threads strided over its class)."""
    totals = np.zeros((d.shape[0], 4))
    if d.shape[0]:
        d_totals = _device_array(totals.shape, np.float64)
        lse = _floats_to_device(row_lse, col_lse)
        classes = _indices_to_device(anchor_class, class_order, class_starts)
        _launch(_lifted_pairs_kernel, d.shape[0], THREADS, _to_device(d), *classes, int(self_offset), *lse, d_totals)
        totals = _to_host(d_totals)
    return totals[:, 0].copy(), totals[:, 1].astype(np.int64), totals[:, 2].astype(np.int64), totals[:, 3].copy()


def lifted_cotangent(
    d,
    ref_class,
    anchor_class,
    class_order,
    class_starts,
    self_offset,
    row_lse,
    col_lse,
    row_coef,
    col_coef,
    col_weights,
    out,
    divide,
):
    """:func:`numpy_kernels.lifted_cotangent` on the GPU (one thread per entry; out may be d). col_weights is
    copied only where some col_coef is not 0 (within one batch it is out itself, and never read)."""
    if out.size == 0:
        return
    d_d = _to_device(d)
    d_out = d_d if out is d else _to_device(out)  # copied in: it holds the negatives' softmax weights
    col_coef = np.asarray(col_coef, dtype=np.float64)
    d_col_weights = _to_device(col_weights) if np.any(col_coef) else d_out
    floats = _floats_to_device(row_lse, col_lse, row_coef, col_coef)
    args = (d_d, *_indices_to_device(ref_class, anchor_class), int(self_offset), *floats, d_col_weights, d_out)
    _launch(_lifted_cotangent_kernel, *_grid2(*d.shape), *args, bool(divide))
    _store(out, d_out)


def generalized_lifted_rows(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, keep_incomplete, out, divide
):
    """:func:`numpy_kernels.generalized_lifted_rows` on the GPU (one block per anchor; out may be d)."""
    totals = np.zeros((d.shape[0], 2))
    if d.shape[0]:
        d_d = _to_device(d)
        d_out = d_d if out is d else _device_array(out.shape, out.dtype)  # every element is written
        d_totals = _device_array(totals.shape, np.float64)
        classes = _indices_to_device(ref_class, anchor_class)
        args = (d_d, *classes, int(self_offset), float(margin), bool(keep_incomplete), d_out, bool(divide), d_totals)
        _launch(_generalized_lifted_kernel, d.shape[0], THREADS, *args)
        _store(out, d_out)
        totals = _to_host(d_totals)
    return totals[:, 0].copy(), totals[:, 1] > 0


def transposed(m):
    """:func:`numpy_kernels.transposed` on the GPU (one thread per entry): mᵀ as a new C-contiguous array, on the
    host for a host m, on the device for a device m."""
    d_out = _device_array((m.shape[1], m.shape[0]), m.dtype)
    if m.size:
        _launch(_transpose_kernel, *_grid2(*d_out.shape), _to_device(m), d_out)
    return _to_host(d_out) if _is_host(m) else d_out


# Every kernel (the compile-to-PTX test compiles each with every signature it is launched with).
KERNELS = (
    _gram_kernel,
    _pair_scale_kernel,
    _symmetrize_kernel,
    _scatter_pull_kernel,
    _add_entries_kernel,
    _pair_terms_kernel,
    _batch_all_kernel,
    _select_kernel,
    _semihard_kernel,
    _row_sq_norms_kernel,
    _scale_kernel,
    _gather_kernel,
    _scaled_pull_kernel,
    _contrastive_kernel,
    _scale_same_class_kernel,
    _quadruplet_fill_kernel,
    _bitonic_kernel,
    _quadruplet_rows_kernel,
    _warp_violators_kernel,
    _warp_exact_kernel,
    _negative_softmax_kernel,
    _lifted_pairs_kernel,
    _lifted_cotangent_kernel,
    _generalized_lifted_kernel,
    _transpose_kernel,
)


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
    "negative_softmax",
    "lifted_pairs",
    "lifted_cotangent",
    "generalized_lifted_rows",
    "transposed",
    "contrastive_pairs",
    "scale_same_class",
    "soft_all_triplets",
    "quadruplet_pairs",
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
