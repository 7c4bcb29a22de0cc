"""Distance kernels compiled by Numba (contracts: ``numpy/distances.py``): the rows' squared norms and their
rescaling, the Gram matrix turned into distances row by row, the Euclidean VJP's per-pair scale, the tiled symmetrize
and transpose, the gather of entries, the scatter-adds, and the VJP of a list of pairs.
"""

import math

import numba
import numpy as np

from ._jit import _TILE, _njit, _rows_kernel

_SYMMETRIZE_TILE = 16  # symmetrize's (16: fastest measured here, against 8, 32 and 64)


@_njit()
def _direct_squared_distance(x, y, i, j):
    total = 0.0
    for k in range(x.shape[1]):
        diff = np.float64(x[i, k]) - np.float64(y[j, k])
        total += diff * diff
    return total


@_njit(fastmath={"reassoc"})  # the one licence: the float64 sum may be reordered, so that it is vectorised (7×)
def row_sq_norms(x, out):
    for i in range(x.shape[0]):
        total = 0.0
        for f in range(x.shape[1]):
            total += np.float64(x[i, f]) * np.float64(x[i, f])
        out[i] = total


@_rows_kernel
def scale(a, exponent):
    # ldexp in float64 is exact for a float32 entry; storing it in float32 rounds once, as float32's ldexp does
    for i in numba.prange(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = math.ldexp(np.float64(a[i, j]), exponent)


@_njit()
def gather_entries(m, rows, cols):
    out = np.empty(rows.shape[0], dtype=np.float64)
    for k in range(rows.shape[0]):
        out[k] = m[rows[k], cols[k]]
    return out


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
