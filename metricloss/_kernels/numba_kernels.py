"""CPU kernels compiled by Numba: plain loops, ``prange`` over rows that one iteration owns (one writer per
output element, so results are deterministic whatever the thread count), ``cache=True`` where the cache directory
is writable, and no ``fastmath``. ``error_model="numpy"`` drops Python's division-by-zero checks so that the loops
vectorise; no kernel divides by zero (the divisor is selected away from 0 and the quotient selected to 0). Each
kernel is valid Python: ``NUMBA_DISABLE_JIT=1`` runs it as such (tests/test_triplet.py does).

The contracts (arguments, outputs, conventions) are documented once, in ``numpy_kernels``; the two modules define
the same functions with the same signatures.
"""

import functools
import os
import types

import numba
import numpy as np

# Per anchor, batch-all sweeps the row once per positive (O(P·R), vectorised) while P is at most this, and
# otherwise sorts the negatives once and binary-searches each positive's threshold (O(R log R)).
SWEEP_MAX_POSITIVES = 24
_TILE = 32  # the side of the square tiles that lifted_cotangent transposes (32: fastest measured here)
_SYMMETRIZE_TILE = 16  # symmetrize's (16: fastest measured here, against 8, 32 and 64)


def _njit(**options):
    """``numba.njit(cache=True, error_model="numpy", **options)``; no on-disk cache where none is usable."""

    def decorate(function):
        try:
            return numba.njit(cache=True, error_model="numpy", **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available" on read-only installs
            return numba.njit(error_model="numpy", **options)(function)

    return decorate


# A kernel over the rows of a B×R matrix runs on one thread while the matrix has fewer entries than this. Every such
# kernel follows a BLAS call, and with the default settings (no threading variables in the environment) OpenBLAS's
# threads spin for a while after their GEMM: a parallel region started then waits for a core, about 8 ms per region
# on two cores. Measured here at B = 1024 (float32, D = 128, value + gradient, default settings): the batch-all
# triplet loss 8.0 ms with parallel kernels, 5.5 ms with serial ones (4.8 ms parallel with the spinning turned off);
# the triplet-center loss 8.0 ms and 1.1 ms. Serial and parallel runs give bitwise the same result (one writer per
# row).
SERIAL_BELOW = 1 << 22

# From SERIAL_BELOW entries on, whether a parallel region pays depends on who else holds the cores. With the default
# settings, OpenBLAS's threads spin for about 0.1 s after each GEMM and the OpenMP pool's after each parallel region,
# so the kernel after a GEMM shares each core with a spinning thread, and the GEMM after a kernel too. On many cores
# a parallel region still wins (each thread gets half a core, against one core for the serial kernel); on two, it
# loses: the batch-all triplet loss at B = 4096 (float32, D = 128) took 89 ms with parallel kernels and 80 ms with
# serial ones, against 58 ms parallel with both pools told to sleep (OMP_WAIT_POLICY=passive
# OPENBLAS_THREAD_TIMEOUT=4). So THREADS = "auto" runs the kernels in parallel where Numba has more than two threads
# or where the environment tells both pools not to spin, and serially otherwise; "serial" and "parallel" force one
# (for tests, and to take timings of one). The choice changes no result: serial and parallel give the same bits.
THREADS = "auto"


def _pools_sleep():
    """Whether the environment tells OpenBLAS's threads and the OpenMP pool's to sleep after their work (read by
    those libraries when they load, so read once here; metricloss itself sets nothing)."""
    timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "")
    return os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive" and timeout.isdigit() and int(timeout) <= 10


_POOLS_SLEEP = _pools_sleep()


def _parallel_pays(matrix):
    if matrix.size < SERIAL_BELOW or THREADS == "serial":
        return False
    return THREADS == "parallel" or _POOLS_SLEEP or numba.get_num_threads() > 2


def _rows_kernel(function):
    """A kernel over the rows of its first argument (a B×R matrix), compiled twice: ``prange`` over its rows where
    :func:`_parallel_pays`, a plain loop otherwise."""
    parallel = _njit(parallel=True)(function)
    # A copy under its own name: Numba's on-disk cache tells functions apart by name, not by compile options.
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__ + "_serial")
    copy.__qualname__ = function.__qualname__ + "_serial"
    serial = _njit()(copy)

    @functools.wraps(function)
    def kernel(matrix, *args):
        return (parallel if _parallel_pays(matrix) else serial)(matrix, *args)

    return kernel


@_njit()
def _direct_squared_distance(x, y, i, j):
    total = 0.0
    for k in range(x.shape[1]):
        diff = np.float64(x[i, k]) - np.float64(y[j, k])
        total += diff * diff
    return total


@_rows_kernel
def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    threshold = np.empty(1, dtype=gram.dtype)  # the ratio in the matrix's dtype, so that the loop stays in it
    threshold[0] = ratio
    ratio_ = threshold[0]
    for i in numba.prange(x.shape[0]):
        _gram_row_to_distances(gram[i], i, x, y, sq_norm_x, sq_norm_y, ratio_, root)


@_njit()
def _gram_row_to_distances(row, i, x, y, sq_norm_x, sq_norm_y, ratio_, root):
    """Row i of :func:`gram_to_distances`, in place; ``ratio_`` in the row's dtype."""
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


@_rows_kernel
def pair_scale(g, d, squared):
    if squared:
        return
    for i in numba.prange(g.shape[0]):
        for j in range(g.shape[1]):
            positive = d[i, j] > 0
            quotient = g[i, j] / (d[i, j] if positive else 1.0)  # no 0/0: both selects vectorise
            g[i, j] = quotient if positive else 0.0


@_rows_kernel
def symmetrize(s):
    n = s.shape[0]
    n_tiles = (n + _SYMMETRIZE_TILE - 1) // _SYMMETRIZE_TILE
    # Tile row t owns the tiles (t, u) and (u, t) for u >= t: no element has two writers. Pairing tile rows t and
    # n_tiles − 1 − t gives every iteration the same number of tiles.
    for t in numba.prange((n_tiles + 1) // 2):
        tile = np.empty((_SYMMETRIZE_TILE, _SYMMETRIZE_TILE), dtype=s.dtype)
        mirror = np.empty_like(tile)
        _symmetrize_tile_row(s, t, n_tiles, n, tile, mirror)
        if n_tiles - 1 - t != t:
            _symmetrize_tile_row(s, n_tiles - 1 - t, n_tiles, n, tile, mirror)


@_njit()
def _symmetrize_tile_row(s, t, n_tiles, n, tile, mirror):
    """Tiles (t, u) and (u, t) ← (t, u) + (u, t)ᵀ and its transpose, for u >= t. A full tile is copied out first
    (tile = (t, u), mirror = (u, t)), so that every loop has a constant trip count and compiles to SIMD shuffles
    (12 against 30 ms for transposing in place, measured here at B = 4096 in float32); the last, partial tiles go
    element by element."""
    i0 = t * _SYMMETRIZE_TILE
    for u in range(t, n_tiles):
        j0 = u * _SYMMETRIZE_TILE
        if i0 + _SYMMETRIZE_TILE > n or j0 + _SYMMETRIZE_TILE > n:
            for i in range(i0, min(n, i0 + _SYMMETRIZE_TILE)):
                for j in range(max(j0, i) if u == t else j0, min(n, j0 + _SYMMETRIZE_TILE)):
                    total = s[i, j] + s[j, i]
                    s[i, j] = total
                    s[j, i] = total
            continue
        for i in range(_SYMMETRIZE_TILE):
            for j in range(_SYMMETRIZE_TILE):
                tile[i, j] = s[i0 + i, j0 + j]
                mirror[i, j] = s[j0 + i, i0 + j]
        for i in range(_SYMMETRIZE_TILE):
            for j in range(_SYMMETRIZE_TILE):
                s[i0 + i, j0 + j] = tile[i, j] + mirror[j, i]
        for i in range(_SYMMETRIZE_TILE):
            for j in range(_SYMMETRIZE_TILE):
                s[j0 + i, i0 + j] = tile[j, i] + mirror[i, j]


@_njit()
def _exclusive_bound(row, t):
    """A value u of the row's dtype with row[j] < u  ⇔  float64(row[j]) < t, so that the sweeps compare in the
    row's own dtype (twice the SIMD width for float32) and decide exactly as float64 would."""
    u = np.empty(1, dtype=row.dtype)
    u[0] = t
    if u[0] < t:
        u[0] = np.nextafter(u[0], np.inf)
    return u[0]


@_rows_kernel
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


@_rows_kernel
def soft_all_triplets(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, smallest, out, divide
):
    n_anchors, n_refs = d.shape
    values, n_nonzero = np.zeros(n_anchors), np.zeros(n_anchors, np.int64)
    n_valid = np.zeros(n_anchors, np.int64)
    for a in numba.prange(n_anchors):
        c = anchor_class[a]
        own = a + self_offset
        row = d[a].astype(np.float64)  # read before out[a], which may be d[a], is written
        g = np.zeros(n_refs)
        n_positives = 0
        if c >= 0:
            n_negatives = n_refs - (class_starts[c + 1] - class_starts[c])
            for k in range(class_starts[c], class_starts[c + 1]):
                p = class_order[k]
                if p == own:
                    continue
                n_positives += 1
                threshold = row[p] + margin
                slope_sum = 0.0
                for j in range(n_refs):
                    if ref_class[j] != c:
                        z = threshold - row[j]
                        e = np.exp(-abs(z))  # <= 1: neither form overflows
                        term = max(z, 0.0) + np.log1p(e)  # softplus(z)
                        if term <= smallest:  # it rounds to 0 in the input dtype, and so does its slope
                            continue
                        slope = (1.0 if z >= 0 else e) / (1.0 + e)  # σ(z)
                        values[a] += term
                        n_nonzero[a] += 1
                        slope_sum += slope
                        g[j] -= slope
                g[p] += slope_sum
            n_valid[a] = n_positives * n_negatives
        for j in range(n_refs):
            out[a, j] = _scaled(g[j], row[j], divide)
    return values, n_nonzero, n_valid


def batch_all_symmetric(
    d, ref_class, anchor_class, class_order, class_starts, margin, semihard_only, out, divide, gram=None
):
    """One sweep for classes of up to SWEEP_MAX_POSITIVES + 1 members (its second pass reads a table row per class
    member); larger classes take the per-anchor kernel, which sorts their rows, and the symmetrize. With ``gram``,
    the sweep's first pass turns each row of the Gram matrix into distances as it reads it."""
    if np.max(np.diff(class_starts)) > SWEEP_MAX_POSITIVES + 1:
        if gram is not None:
            gram_to_distances(d, gram[0], gram[0], gram[1], gram[1], gram[2], gram[3])
        totals = batch_all_triplets(
            d, ref_class, anchor_class, class_order, class_starts, 0, margin, semihard_only, out, divide
        )
        symmetrize(out)
        return totals
    convert = gram is not None
    x, sq_norm, ratio, root = gram if convert else (d[:0], d[0, :0], 0.0, False)
    return _batch_all_symmetric_sweep(
        d,
        ref_class,
        anchor_class,
        class_order,
        class_starts,
        margin,
        semihard_only,
        out,
        divide,
        convert,
        x,
        sq_norm,
        ratio,
        root,
    )


@_rows_kernel
def _batch_all_symmetric_sweep(
    d,
    ref_class,
    anchor_class,
    class_order,
    class_starts,
    margin,
    semihard_only,
    out,
    divide,
    convert,
    x,
    sq_norm,
    ratio,
    root,
):
    # Pass 1, per anchor a: each positive p's active negatives (d_an < d_ap + m, and d_an >= d_ap for semi-hard),
    # counted by a sweep of the row, and its bounds kept in tables of one row per slot (p's place in its class):
    # upper[s, a] (d_ap + m as an exclusive bound in the row's dtype) and lower[s, a]. Empty slots (a's own place,
    # places past a smaller class's size) hold upper = −inf, which nothing is below.
    n = d.shape[0]
    n_classes = class_starts.size - 1
    n_slots = 0
    for c in range(n_classes):
        n_slots = max(n_slots, class_starts[c + 1] - class_starts[c])
    slot = np.empty(n, dtype=np.int64)
    for c in range(n_classes):
        for m in range(class_starts[c], class_starts[c + 1]):
            slot[class_order[m]] = m - class_starts[c]
    upper = np.full((n_slots, n), -np.inf, dtype=d.dtype)
    lower = np.full((n_slots, n), -np.inf, dtype=d.dtype)
    positive_counts = np.zeros((n, n_slots), dtype=np.int32)
    values = np.zeros(n)
    n_active = np.zeros(n, dtype=np.int64)
    n_valid = np.zeros(n, dtype=np.int64)
    ratio_in_dtype = np.empty(1, dtype=d.dtype)
    ratio_in_dtype[0] = ratio
    for a in numba.prange(n):
        row = d[a]
        if convert:  # the Gram matrix's row, turned into distances while it is in cache
            _gram_row_to_distances(row, a, x, x, sq_norm, sq_norm, ratio_in_dtype[0], root)
        c = anchor_class[a]
        start, stop = class_starts[c], class_starts[c + 1]
        n_valid[a] = (stop - start - 1) * (n - (stop - start))
        no_lower_bound = _exclusive_bound(row, -np.inf)
        positive_part = 0.0  # Σ over active terms of d_ap + m; pass 2 subtracts their d_an
        active = 0
        for m in range(start, stop):
            p = class_order[m]
            if p == a:
                continue
            threshold = np.float64(row[p]) + margin
            up = _exclusive_bound(row, threshold)  # d_an < d_ap + m
            lo = row[p] if semihard_only else no_lower_bound  # d_an >= d_ap
            count = 0
            for j in range(n):  # vectorised: a few compares per reference
                count += (ref_class[j] != c) & (row[j] < up) & (row[j] >= lo)
            upper[m - start, a] = up
            lower[m - start, a] = lo
            positive_counts[a, m - start] = count
            positive_part += count * threshold
            active += count
        values[a] = positive_part
        n_active[a] = active
    # Pass 2, per row i: entry (i, j) of a negative pair is −(anchor i's positives with d_ij in their band + anchor
    # j's, from the tables, with d_ji = d_ij); of a positive pair, the two anchors' counts for it.
    for i in numba.prange(n):
        row = d[i]
        c = anchor_class[i]
        start, stop = class_starts[c], class_starts[c + 1]
        hits = np.zeros(n, dtype=np.int32)
        for m in range(start, stop):  # anchor i's own positives first: their hits give its terms' Σ d_an
            up = upper[m - start, i]
            lo = lower[m - start, i]
            if semihard_only:
                for j in range(n):
                    hits[j] += (row[j] < up) & (row[j] >= lo)
            else:
                for j in range(n):
                    hits[j] += row[j] < up
        for m in range(start, stop):
            hits[class_order[m]] = 0
        values[i] -= _weighted_sum(hits, row)
        for s in range(n_slots):  # anchor j's positives, one slot at a time: vectorised over j
            up_s = upper[s]
            lo_s = lower[s]
            if semihard_only:
                for j in range(n):
                    hits[j] += (row[j] < up_s[j]) & (row[j] >= lo_s[j])
            else:
                for j in range(n):
                    hits[j] += row[j] < up_s[j]
        for m in range(start, stop):
            j = class_order[m]
            hits[j] = 0 if j == i else -(positive_counts[i, slot[j]] + positive_counts[j, slot[i]])
        _write_cotangent_row(out[i], row, hits, -1, divide)
    return values, n_active, n_valid


@_njit()
def _write_cotangent_row(out_row, row, counts, sign, divide):
    """out_row ← sign · counts (divide: sign · counts / row, 0 where row is 0). Computed into a buffer and then
    copied: out_row may be row itself, and a loop that reads one and writes the other would not vectorise."""
    buffer = np.empty_like(out_row)
    for j in range(row.shape[0]):
        dj = row[j]
        gj = sign * counts[j]
        if divide:
            quotient = gj / (dj if dj > 0 else 1.0)  # no 0/0: both selects vectorise
            buffer[j] = quotient if dj > 0 else 0.0
        else:
            buffer[j] = gj
    out_row[:] = buffer


@_njit()
def _weighted_sum(weights, row):
    """Σ_j weights[j] · row[j] in float64, in eight interleaved partial sums: a fixed order (the same bits on every
    run), and eight independent additions in flight instead of one chain."""
    partial = np.zeros(8)
    n = row.shape[0]
    whole = n - n % 8
    for j in range(0, whole, 8):
        for lane in range(8):
            partial[lane] += weights[j + lane] * np.float64(row[j + lane])
    total = 0.0
    for j in range(whole, n):
        total += weights[j] * np.float64(row[j])
    for lane in range(8):
        total += partial[lane]
    return total


@_njit()
def _argsort_floats(values):
    """The stable argsort of float64 values of any sign (no NaN): a least-significant-digit radix sort of keys
    that order as the values do, the bit pattern with its sign bit set for x >= 0 and all bits flipped for
    x < 0 (both zeros given the key of +0), one byte per pass, the eight bytes' counts taken in one read. A pass
    whose byte every key shares is skipped (the low mantissa bytes of float32 data, the exponent of distances of
    one scale). Several times faster than np.argsort at a few hundred to a few thousand values."""
    n = values.size
    bits = values.view(np.uint64)
    keys = np.empty(n, dtype=np.uint64)
    counts = np.zeros((8, 256), dtype=np.int64)
    sign = np.uint64(1) << np.uint64(63)
    for i in range(n):
        if values[i] > 0:
            key = bits[i] | sign
        elif values[i] < 0:
            key = ~bits[i]
        else:
            key = sign
        keys[i] = key
        for byte in range(8):
            counts[byte, (key >> np.uint64(8 * byte)) & np.uint64(255)] += 1
    order = np.arange(n)
    spare = np.empty(n, dtype=np.int64)
    for byte in range(8):
        if np.max(counts[byte]) == n:
            continue
        start = 0
        for b in range(256):  # counts become each bucket's first position
            count = counts[byte, b]
            counts[byte, b] = start
            start += count
        shift = np.uint64(8 * byte)
        for i in range(n):
            k = order[i]
            b = (keys[k] >> shift) & np.uint64(255)
            spare[counts[byte, b]] = k
            counts[byte, b] += 1
        order, spare = spare, order
    return order


@_njit()
def _batch_all_sorted(row, ref_class, c, class_order, class_starts, self_column, n_pos, margin, semihard_only, counts):
    """Batch-all for one anchor with many positives: positives and negatives each sorted once (a radix sort), then
    two sweeps with two pointers, O(R) after the sorts."""
    members = class_starts[c + 1] - class_starts[c]
    n_neg = row.shape[0] - members
    negatives = np.empty(n_neg, dtype=np.int64)
    neg_d = np.empty(n_neg)
    k = 0
    for j in range(row.shape[0]):
        if ref_class[j] != c:
            negatives[k] = j
            neg_d[k] = row[j]
            k += 1
    positives = np.empty(n_pos, dtype=np.int64)
    pos_d = np.empty(n_pos)
    i = 0
    for m in range(class_starts[c], class_starts[c + 1]):
        if class_order[m] != self_column:
            positives[i] = class_order[m]
            pos_d[i] = row[class_order[m]]
            i += 1
    neg_order = _argsort_floats(neg_d)
    pos_order = _argsort_floats(pos_d)
    neg_sorted = neg_d[neg_order]
    pos_sorted = pos_d[pos_order]
    # Positives in increasing d_ap: the negatives with d_an < d_ap + m (hi of them) and, for semi-hard, those with
    # d_an < d_ap (lo), are prefixes of the sorted negatives that only grow.
    positive_part = 0.0
    active = 0
    hi = 0
    lo = 0
    for i in range(n_pos):
        d_ap = pos_sorted[i]
        threshold = d_ap + margin
        while hi < n_neg and neg_sorted[hi] < threshold:
            hi += 1
        while semihard_only and lo < n_neg and neg_sorted[lo] < d_ap:
            lo += 1
        if hi > lo:
            counts[positives[pos_order[i]]] += hi - lo
            positive_part += (hi - lo) * threshold
            active += hi - lo
    # Negatives in increasing d_an: the positives with d_ap + m <= d_an (first of them, inactive) and, for
    # semi-hard, those with d_ap <= d_an (last), are prefixes of the sorted positives that only grow.
    first = 0
    last = 0 if semihard_only else n_pos
    for k in range(n_neg):
        d_an = neg_sorted[k]
        while first < n_pos and pos_sorted[first] + margin <= d_an:
            first += 1
        while semihard_only and last < n_pos and pos_sorted[last] <= d_an:
            last += 1
        if last > first:
            counts[negatives[neg_order[k]]] -= last - first
    return positive_part, active


@_rows_kernel
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
        pos_d = np.empty(n_pos)
        for i in range(n_pos):
            pos_d[i] = row[pos[i]]
        order = _argsort_floats(pos_d)  # stable: equal distances in index order
        sorted_d = pos_d[order]
        if n_pos <= SWEEP_MAX_POSITIVES:
            bucket_best, farthest = _semihard_buckets_by_sweep(row, ref_class, c, sorted_d)
        else:
            bucket_best, farthest = _semihard_buckets_by_sorting(row, ref_class, c, sorted_d)
        best = -1  # running minimum over buckets k > i, from the last bucket down; ties to the lowest index
        for i in range(n_pos - 1, -1, -1):
            candidate = bucket_best[i + 1]
            if candidate >= 0 and (
                best < 0 or row[candidate] < row[best] or (row[candidate] == row[best] and candidate < best)
            ):
                best = candidate
            positives[offsets[a] + order[i]] = pos[order[i]]
            negatives[offsets[a] + order[i]] = best if best >= 0 else farthest


@_njit()
def _semihard_buckets_by_sweep(row, ref_class, c, sorted_d):
    """For FaceNet semi-hard with a few positives (distances sorted_d, ascending): per bucket k (the negatives with
    k positives strictly closer), its closest negative (ties to the lowest index; -1 if empty), and the farthest
    negative, in one pass over the row that counts each negative's closer positives."""
    n_pos = sorted_d.size
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
        k = 0
        for i in range(n_pos):
            k += sorted_d[i] < value
        if value < bucket_value[k]:
            bucket_value[k] = value
            bucket_best[k] = j
    return bucket_best, farthest


@_njit()
def _semihard_buckets_by_sorting(row, ref_class, c, sorted_d):
    """:func:`_semihard_buckets_by_sweep` for many positives: the negatives sorted once (stable radix sort), then
    swept in increasing distance with a pointer into the positives; the first negative to land in a bucket is its
    closest, and equal distances come in index order."""
    n_pos = sorted_d.size
    negatives = np.flatnonzero(ref_class != c)
    neg_d = np.empty(negatives.size)
    for t in range(negatives.size):
        neg_d[t] = row[negatives[t]]
    neg_order = _argsort_floats(neg_d)
    bucket_best = np.full(n_pos + 1, -1, dtype=np.int64)
    k = 0
    for t in range(negatives.size):
        value = neg_d[neg_order[t]]
        while k < n_pos and sorted_d[k] < value:
            k += 1
        if bucket_best[k] < 0:
            bucket_best[k] = negatives[neg_order[t]]
    farthest = -1  # the first index among the largest distances: the start of the sorted order's last run
    for t in range(negatives.size - 1, -1, -1):
        if farthest >= 0 and neg_d[neg_order[t]] < neg_d[neg_order[negatives.size - 1]]:
            break
        farthest = negatives[neg_order[t]]
    return bucket_best, farthest


def select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode):
    """Batch-hard (both modes 0) in a kernel of its own: inside the general one, with its other branches, the same
    loop ran three times slower (17 ms against 5 ms at B = 4096)."""
    if positive_mode == 0 and negative_mode == 0:
        return _hardest_per_anchor(d, ref_class, anchor_class, self_offset)
    return _select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode)


@_rows_kernel
def _hardest_per_anchor(d, ref_class, anchor_class, self_offset):
    # Per anchor in one pass: the farthest positive and the closest negative (-1 if none; ties to the lowest
    # index), the running extremes kept in registers.
    n_anchors = d.shape[0]
    chosen_positive = np.full(n_anchors, -1, dtype=np.int64)
    chosen_negative = np.full(n_anchors, -1, dtype=np.int64)
    for a in numba.prange(n_anchors):
        row = d[a]
        c = anchor_class[a]
        self_column = a + self_offset
        p = -1
        n = -1
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
        chosen_positive[a] = p
        chosen_negative[a] = n
    return chosen_positive, chosen_negative


@_rows_kernel
def _select_per_anchor(d, ref_class, anchor_class, self_offset, positive_mode, negative_mode):
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
        if positive_mode != 2:
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


@_njit()
def scatter_add_entries(out, rows, cols, values):
    for k in range(rows.shape[0]):  # serial: two values may share an entry
        out[rows[k], cols[k]] += values[k]


@_njit()
def pull_distance_pairs(x, y, rows, cols, g, squared, grad_x, grad_y):
    diff = np.empty(x.shape[1])
    for k in range(rows.shape[0]):  # serial: two pairs may share a row of grad_x or grad_y
        i, j = rows[k], cols[k]
        largest = 0.0
        total = 0.0
        for f in range(x.shape[1]):
            diff[f] = np.float64(x[i, f]) - np.float64(y[j, f])
            largest = max(largest, abs(diff[f]))
            total += diff[f] * diff[f]
        if largest == 0.0:
            continue
        if squared:  # 2 g u
            scale = 2.0 * g[k]
        elif 1e-140 < largest < 1e140:  # g u/‖u‖, the squares summed directly (every float32 row is in here)
            scale = g[k] / np.sqrt(total)
        else:  # g (u/L)/‖u/L‖ with L = max |u_f|: no overflow or underflow in the norm
            total = 0.0
            for f in range(x.shape[1]):
                diff[f] /= largest
                total += diff[f] * diff[f]
            scale = g[k] / np.sqrt(total)
        for f in range(x.shape[1]):
            term = scale * diff[f]
            grad_x[i, f] += term
            grad_y[j, f] -= term


@_rows_kernel
def contrastive_pairs(d, ref_class, anchor_class, self_offset, margin, pos_margin, form, out, divide):
    # Every form as ℓ = (c₂h + c₁)h with ∂ℓ/∂h = 2c₂h + c₁: Hadsell (c₁, c₂) = (0, ½), squared (0, 1), linear
    # (1, 0); so the row loop has no branch on the form, only selects, and vectorises.
    c1 = 1.0 if form == 2 else 0.0
    c2 = 0.5 if form == 0 else (1.0 if form == 1 else 0.0)
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
            h = max(dj - pos_margin if similar else margin - dj, 0.0)
            term = (c2 * h + c1) * h
            live = (j != self_column) & (term > 0)
            sum_similar += term if live & similar else 0.0
            sum_dissimilar += term if live & (not similar) else 0.0
            active_similar += live & similar
            active_dissimilar += live & (not similar)
            similar_pairs += similar
            slope = 2.0 * c2 * h + c1
            slope = (slope if similar else -slope) if live else 0.0
            if divide:
                quotient = slope / (dj if dj > 0 else 1.0)  # no 0/0: both selects vectorise
                slope = quotient if dj > 0 else 0.0
            out[a, j] = slope
        own = 1 if 0 <= self_column < n_refs else 0  # the anchor's own column, of its own class
        values[a, 0] = sum_similar
        values[a, 1] = sum_dissimilar
        n_active[a, 0] = active_similar
        n_active[a, 1] = active_dissimilar
        n_pairs[a, 0] = similar_pairs - own
        n_pairs[a, 1] = n_refs - similar_pairs
    return values, n_active, n_pairs


@_rows_kernel
def scale_same_class(out, ref_class, anchor_class, class_order, class_starts, factor):
    for a in numba.prange(out.shape[0]):
        c = anchor_class[a]
        if c < 0:
            continue
        for m in range(class_starts[c], class_starts[c + 1]):
            out[a, class_order[m]] *= factor


@_njit()
def _logaddexp(x, y):
    """log(e^x + e^y) for x, y in [−inf, inf), −inf when both are."""
    top = max(x, y)
    if top == -np.inf:
        return top
    return top + np.log1p(np.exp(min(x, y) - top))


@_njit()
def _negative_weights_row(row, ref_class, c, margin, out_row, divide):
    """One row's negatives n (ref_class[n] != c), shifted by the closest one: out_row[n] = e^{closest − row[n]}
    (≤ 1; with ``divide`` over row[n], 0 where row[n] = 0; out_row's other entries untouched, and out_row may be
    row: each entry is read before it is written). Returns (λ, total): total = Σ_n e^{closest − row[n]} and
    λ = log Σ_n e^{margin − row[n]} = margin − closest + log total; (−inf, 0) where there is no negative."""
    closest = np.inf
    for j in range(row.shape[0]):  # vectorised: a select and a min
        closest = min(closest, np.float64(row[j]) if ref_class[j] != c else np.inf)
    if closest == np.inf:
        return -np.inf, 0.0
    total = 0.0
    for j in range(row.shape[0]):  # one exp per negative, for the sum and for the cotangent
        if ref_class[j] != c:
            dj = np.float64(row[j])
            weight = np.exp(closest - dj)
            total += weight
            out_row[j] = _scaled(weight, dj, divide)
    return margin - closest + np.log(total), total


@_rows_kernel
def negative_softmax(d, ref_class, anchor_class, margin, out, divide):
    lse = np.empty(d.shape[0])
    for a in numba.prange(d.shape[0]):
        c = anchor_class[a]
        row_lse, total = _negative_weights_row(d[a], ref_class, c, margin, out[a], divide)
        lse[a] = row_lse
        if total > 0:
            normaliser = 1.0 / total
            for j in range(d.shape[1]):
                if ref_class[j] != c:
                    out[a, j] *= normaliser
    return lse


@_njit()
def _lifted_hinge(d_ap, row_lse_a, col_lse_p):
    """([J]₊, σ) for one positive pair (see numpy_kernels.lifted_pairs); σ = 0 where [J]₊ = 0."""
    pair_lse = _logaddexp(row_lse_a, col_lse_p)
    j = pair_lse + d_ap
    if not j > 0:
        return 0.0, 0.0
    return j, np.exp(row_lse_a - pair_lse)


@_rows_kernel
def lifted_pairs(d, ref_class, anchor_class, class_order, class_starts, self_offset, row_lse, col_lse):
    n_anchors = d.shape[0]
    values, coef = np.zeros(n_anchors), np.zeros(n_anchors)
    n_pairs, n_active = np.zeros(n_anchors, dtype=np.int64), np.zeros(n_anchors, dtype=np.int64)
    for a in numba.prange(n_anchors):
        c = anchor_class[a]
        if c < 0:
            continue
        for m in range(class_starts[c], class_starts[c + 1]):
            p = class_order[m]
            if p == a + self_offset:
                continue
            hinge, share = _lifted_hinge(np.float64(d[a, p]), row_lse[a], col_lse[p])
            n_pairs[a] += 1
            n_active[a] += hinge > 0
            values[a] += 0.5 * hinge * hinge
            coef[a] += hinge * share
    return values, n_pairs, n_active, coef


@_njit()
def _scaled(g, dj, divide):
    """g, or with ``divide`` g / dj (0 where dj = 0): the Euclidean VJP's scale."""
    if not divide:
        return g
    return g / dj if dj > 0 else 0.0


@_rows_kernel
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
    n_anchors, n_refs = d.shape
    # Square tiles of rows and columns, so that col_weights[j, a] is read a tile at a time, not down a column.
    for t in numba.prange((n_anchors + _TILE - 1) // _TILE):
        a0, a1 = t * _TILE, min(n_anchors, (t + 1) * _TILE)
        for a in range(a0, a1):
            c = anchor_class[a]
            if c >= 0:  # the anchor's class: its positives (each d_ap read before it is written) and itself
                for m in range(class_starts[c], class_starts[c + 1]):
                    p = class_order[m]
                    d_ap = np.float64(d[a, p])
                    hinge = 0.0 if p == a + self_offset else _lifted_hinge(d_ap, row_lse[a], col_lse[p])[0]
                    out[a, p] = _scaled(hinge, d_ap, divide)
        for j0 in range(0, n_refs, _TILE):  # the negatives: their softmax weights, in out, times the coefficients
            j1 = min(n_refs, j0 + _TILE)
            for a in range(a0, a1):
                c = anchor_class[a]
                coef = row_coef[a]
                for j in range(j0, j1):
                    if ref_class[j] != c:
                        g = -coef * out[a, j]
                        if col_coef[j] != 0:
                            g -= col_coef[j] * col_weights[j, a]
                        out[a, j] = g


@_rows_kernel
def generalized_lifted_rows(
    d, ref_class, anchor_class, class_order, class_starts, self_offset, margin, keep_incomplete, out, divide
):
    n_anchors, n_refs = d.shape
    terms = np.zeros(n_anchors)
    complete = np.zeros(n_anchors, dtype=np.bool_)
    empty = 0.0 if keep_incomplete else -np.inf
    for a in numba.prange(n_anchors):
        row = d[a]
        c = anchor_class[a]
        start, stop = (class_starts[c], class_starts[c + 1]) if c >= 0 else (0, 0)
        farthest = -np.inf  # the positives' log-sum-exp, shifted by the largest d_ap
        for m in range(start, stop):
            if class_order[m] != a + self_offset:
                farthest = max(farthest, np.float64(row[class_order[m]]))
        pos_total = 0.0
        for m in range(start, stop):
            if class_order[m] != a + self_offset:
                pos_total += np.exp(np.float64(row[class_order[m]]) - farthest)
        has_pos = farthest > -np.inf
        pos_lse = farthest + np.log(pos_total) if has_pos else empty
        # The negatives' weights e^{closest − d_an} (over d_an with divide) go straight to the row of out; the
        # positive entries are left alone, so they stay readable when out is d.
        neg_lse, neg_total = _negative_weights_row(row, ref_class, c, margin, out[a], divide)
        has_neg = neg_total > 0
        if not has_neg:
            neg_lse = empty
        total = pos_lse + neg_lse
        complete[a] = has_pos and has_neg
        live = total > 0
        terms[a] = total if live else 0.0
        # The cotangent: −softmax weights over m − d_an on the negatives, softmax weights over d_ap on the
        # positives (0 for the anchor itself), where the term is live.
        neg_scale = -1.0 / neg_total if live and has_neg else 0.0
        for j in range(n_refs):
            if ref_class[j] != c:
                out[a, j] *= neg_scale
        pos_scale = 1.0 / pos_total if live and has_pos else 0.0
        for m in range(start, stop):
            p = class_order[m]
            d_ap = np.float64(row[p])
            g = 0.0 if p == a + self_offset else pos_scale * np.exp(d_ap - farthest)
            out[a, p] = _scaled(g, d_ap, divide)
    return terms, complete


# --- WARP: the sampling scheme is documented in numpy_kernels ----------------------------------------------------

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
def quadruplet_pairs(d, ref_class, class_order, class_starts, margin2, out, divide):
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


@_rows_kernel
def transposed(m):
    n_rows, n_cols = m.shape
    out = np.empty((n_cols, n_rows), dtype=m.dtype)
    for t in numba.prange((n_cols + _TILE - 1) // _TILE):  # a tile row of the output is a tile column of m
        j0, j1 = t * _TILE, min(n_cols, (t + 1) * _TILE)
        for i0 in range(0, n_rows, _TILE):
            for j in range(j0, j1):
                for i in range(i0, min(n_rows, i0 + _TILE)):
                    out[j, i] = m[i, j]
    return out
