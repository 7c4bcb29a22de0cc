"""Distance kernels on the GPU (contracts: ``numpy/distances.py``), each device kernel beside its host wrapper: the Gram
matrix turned into distances, the Euclidean VJP's per-pair scale, the symmetrize and transpose, the scatter-adds (as
pulls: no atomics) and the VJP of a list of pairs; then the GPU path's own steps, which have no NumPy twin.
"""

import math

import numpy as np

from ._device import (
    THREADS,
    _device_array,
    _floats_to_device,
    _grid2,
    _host_indices,
    _indices_to_device,
    _is_host,
    _launch,
    _store,
    _to_device,
    _to_host,
    cuda,
)


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


def _gram_on_device(d_gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    grid, block = _grid2(*d_gram.shape)
    args = (_to_device(x), _to_device(y), _to_device(sq_norm_x), _to_device(sq_norm_y))
    _launch(_gram_kernel, grid, block, d_gram, *args, float(ratio), bool(root))


def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    """:func:`numpy.distances.gram_to_distances` on the GPU (one thread per entry)."""
    d_gram = _to_device(gram)
    _gram_on_device(d_gram, x, y, sq_norm_x, sq_norm_y, ratio, root)
    _store(gram, d_gram)


@cuda.jit
def _pair_scale_kernel(g, d):
    j, i = cuda.grid(2)
    if i < g.shape[0] and j < g.shape[1]:
        if d[i, j] == 0:
            g[i, j] = 0
        else:
            g[i, j] = g[i, j] / d[i, j]


def pair_scale(g, d, squared):
    """:func:`numpy.distances.pair_scale` on the GPU."""
    if squared:
        return
    d_g = _to_device(g)
    _launch(_pair_scale_kernel, *_grid2(*g.shape), d_g, _to_device(d))
    _store(g, d_g)


@cuda.jit
def _symmetrize_kernel(s):
    j, i = cuda.grid(2)
    if i < s.shape[0] and j < s.shape[1] and i <= j:
        total = s[i, j] + s[j, i]
        s[i, j] = total
        s[j, i] = total


def _symmetrize_on_device(d_s):
    _launch(_symmetrize_kernel, *_grid2(*d_s.shape), d_s)


def symmetrize(s):
    """:func:`numpy.distances.symmetrize` on the GPU (one thread per pair of entries)."""
    d_s = _to_device(s)
    _symmetrize_on_device(d_s)
    _store(s, d_s)


@cuda.jit
def _transpose_kernel(m, out):
    """out[j, i] = m[i, j], one thread per entry of out, i the x index."""
    i, j = cuda.grid(2)
    if j < out.shape[0] and i < out.shape[1]:
        out[j, i] = m[i, j]


def transposed(m):
    """:func:`numpy.distances.transposed` on the GPU (one thread per entry): mᵀ as a new C-contiguous array, on the
    host for a host m, on the device for a device m."""
    d_out = _device_array((m.shape[1], m.shape[0]), m.dtype)
    if m.size:
        _launch(_transpose_kernel, *_grid2(*d_out.shape), _to_device(m), d_out)
    return _to_host(d_out) if _is_host(m) else d_out


@cuda.jit
def _scatter_pull_kernel(out, order, starts, index_values, sign):
    """out[i, f] += sign · values[order[k], f] for k in starts[i]:starts[i + 1], in that order."""
    f, i = cuda.grid(2)
    if i < out.shape[0] and f < out.shape[1]:
        acc = out[i, f]
        for k in range(starts[i], starts[i + 1]):
            acc += sign * index_values[order[k], f]
        out[i, f] = acc


def _scatter_pull(d_out, index, d_values, sign):
    """d_out[index[k]] += sign · values[k] (2-D device arrays) as a pull: pairs sorted by target, stably."""
    index = _host_indices(index)
    order = np.argsort(index, kind="stable")
    starts = np.zeros(d_out.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=d_out.shape[0]), out=starts[1:])
    _launch(_scatter_pull_kernel, *_grid2(*d_out.shape), d_out, _to_device(order), _to_device(starts), d_values, sign)


def scatter_add_rows(out, index, values):
    """:func:`numpy.distances.scatter_add_rows` on the GPU, deterministic (a pull, no atomics)."""
    d_out = _to_device(out)
    _scatter_pull(d_out.reshape(out.shape[0], -1), index, _to_device(values).reshape(len(index), -1), 1.0)
    _store(out, d_out)


@cuda.jit
def _add_entries_kernel(out, rows, cols, sums):
    """out[rows[k], cols[k]] += sums[k], one thread per entry (the entries are distinct)."""
    k = cuda.grid(1)
    if k < rows.shape[0]:
        out[rows[k], cols[k]] = out[rows[k], cols[k]] + sums[k]


def scatter_add_entries(out, rows, cols, values):
    """:func:`numpy.distances.scatter_add_entries` on the GPU, deterministic and without atomics: repeated entries
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


def pull_distance_pairs(x, y, rows, cols, g, squared, grad_x, grad_y):
    """:func:`numpy.distances.pull_distance_pairs` on the GPU: the pairs' float64 terms (one thread per pair, a K×F
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


# The GPU path's own steps (no NumPy twin: on host arrays NumPy does them, in metricloss.distances).


@cuda.jit
def _row_sq_norms_kernel(x, out):
    """out[i] = ‖x_i‖², accumulated in float64 (one thread per row)."""
    i = cuda.grid(1)
    if i < x.shape[0]:
        total = 0.0
        for f in range(x.shape[1]):
            total += float(x[i, f]) * float(x[i, f])
        out[i] = total


def row_sq_norms(x, out):
    """:func:`numpy.distances.row_sq_norms` on the GPU (one thread per row, float64 sums)."""
    d_out = _to_device(out)
    if x.shape[0]:
        _launch(_row_sq_norms_kernel, -(-x.shape[0] // THREADS), THREADS, _to_device(x), d_out)
    _store(out, d_out)


@cuda.jit
def _scale_kernel(a, exponent):
    """a ← a · 2^exponent, elementwise (ldexp in float64, stored in a's dtype)."""
    j, i = cuda.grid(2)
    if i < a.shape[0] and j < a.shape[1]:
        a[i, j] = math.ldexp(float(a[i, j]), exponent)


def scale(a, exponent):
    """:func:`numpy.distances.scale` on the GPU (one thread per entry of a 2-D array)."""
    d_a = _to_device(a)
    if a.size:
        _launch(_scale_kernel, *_grid2(*a.shape), d_a, int(exponent))
    _store(a, d_a)


@cuda.jit
def _gather_kernel(m, rows, cols, out):
    """out[k] = m[rows[k], cols[k]] in float64 (one thread per entry)."""
    k = cuda.grid(1)
    if k < rows.shape[0]:
        out[k] = float(m[rows[k], cols[k]])


def gather_entries(m, rows, cols):
    """:func:`numpy.distances.gather_entries` on the GPU (one thread per entry), host index arrays in, a host
    float64 array out (only the entries cross)."""
    rows, cols = _host_indices(rows), _host_indices(cols)
    out = _device_array(rows.size, np.float64)
    if rows.size:
        _launch(_gather_kernel, -(-rows.size // THREADS), THREADS, _to_device(m), *_indices_to_device(rows, cols), out)
    return _to_host(out)


