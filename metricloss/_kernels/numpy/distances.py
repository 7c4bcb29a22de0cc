"""Distance kernels in NumPy: the rows' squared norms and their rescaling by a power of two, the Gram matrix turned
into (squared) Euclidean distances, the Euclidean VJP's per-pair scale, the symmetrize and transpose of a cotangent,
the gather of entries, the scatter-adds, and the VJP of a list of pairs.
"""

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # rows of differences materialised at once: 4M float64 = 32 MB


def _recompute_close_pairs(x, y, d2, sq_norm_x, sq_norm_y, ratio):
    """Overwrite d2[i, j] by the direct Σ_k (x_ik − y_jk)², accumulated in float64, where
    d2[i, j] <= ratio · (‖x_i‖² + ‖y_j‖²): there the GEMM form is mostly rounding (it can even be negative)."""
    rows, cols = np.nonzero(d2 <= ratio * (sq_norm_x[:, None] + sq_norm_y[None, :]))
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, rows.size, step):
        r, c = rows[start : start + step], cols[start : start + step]
        diff = x[r].astype(np.float64) - y[c]
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)


def row_sq_norms(x, out):
    """out[i] = ‖x_i‖², accumulated in float64 and stored in out's dtype."""
    out[:] = np.einsum("ij,ij->i", x, x, dtype=np.float64)


def scale(a, exponent):
    """a ← a · 2^exponent in place (ldexp: each entry's exponent moved, exact wherever it stays normal, rounded once
    where it turns subnormal; an int ``exponent``, any size: 2^1063 is no float64, 1e-320 · 2^1063 is)."""
    np.ldexp(a, exponent, out=a)


def gather_entries(m, rows, cols):
    """m[rows[k], cols[k]] for every k, as a new float64 array."""
    return m[rows, cols].astype(np.float64)


def gram_to_distances(gram, x, y, sq_norm_x, sq_norm_y, ratio, root):
    """Turn the Gram matrix x @ y.T into squared distances (``root``: distances), in place.

    d²_ij = ‖x_i‖² + ‖y_j‖² − 2 gram_ij, whose absolute error is a few ulps of ‖x_i‖² + ‖y_j‖²; pairs with
    d²_ij <= ratio · (‖x_i‖² + ‖y_j‖²) are recomputed by direct differences, then √ if ``root``.
    """
    gram *= -2
    gram += sq_norm_x[:, None]
    gram += sq_norm_y[None, :]
    _recompute_close_pairs(x, y, gram, sq_norm_x, sq_norm_y, ratio)
    if root:
        np.sqrt(gram, out=gram)


def pair_scale(g, d, squared):
    """The per-pair scale of the Euclidean distance VJP, in place: g ← g / d, 0 where d = 0 (a branch, no
    epsilon). ``squared`` distances need none (their scale, 2g, is applied with the weight)."""
    if squared:
        return
    zero = d == 0
    np.divide(g, d, out=g, where=~zero)
    g[zero] = 0


def symmetrize(s):
    """s ← s + sᵀ, in place (for the VJP of distances within one set: both ends of a pair move)."""
    s += s.T.copy()


def transposed(m):
    """mᵀ as a new C-contiguous array (the Numba kernel copies it tile by tile)."""
    return np.ascontiguousarray(m.T)


def scatter_add_rows(out, index, values):
    """out[index[k]] += values[k] for every k, repeated indices accumulating (in order)."""
    np.add.at(out, index, values)


def scatter_add_entries(out, rows, cols, values):
    """out[rows[k], cols[k]] += values[k] for every k, repeated entries accumulating (in order)."""
    np.add.at(out, (rows, cols), values)


def pull_distance_pairs(x, y, rows, cols, g, squared, grad_x, grad_y):
    """The VJP of a cotangent g[k] on the distance between x[rows[k]] and y[cols[k]], pair by pair: with
    u = x_i − y_j, ∂‖u‖/∂x_i = u/‖u‖ (0 where u = 0) and ∂‖u‖²/∂x_i = 2u; adds g[k] times that to grad_x[rows[k]]
    and subtracts it from grad_y[cols[k]] (which may be grad_x). O(K·F) time; the Numba twin keeps no K×F
    temporary. The norm is computed on u scaled by its largest |entry|, so that it neither over- nor underflows."""
    u = x[rows].astype(np.float64) - y[cols].astype(np.float64)
    if squared:
        terms = 2 * g[:, None] * u
    else:
        largest = np.max(np.abs(u), axis=1, keepdims=True)
        ratio = np.divide(u, largest, out=np.zeros_like(u), where=largest > 0)
        norm = np.sqrt(np.einsum("ij,ij->i", ratio, ratio))[:, None]
        terms = g[:, None] * np.divide(ratio, norm, out=np.zeros_like(u), where=norm > 0)
    np.add.at(grad_x, rows, terms)
    np.add.at(grad_y, cols, -terms)
