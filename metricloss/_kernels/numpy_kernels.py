"""Reference kernels in vectorised NumPy: the readable versions of what ``numba_kernels`` does with loops."""

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # rows of differences materialised at once: 4M float64 = 32 MB


def recompute_close_pairs(x, y, d2, sq_norm_x, sq_norm_y, ratio):
    """Overwrite d2[i, j] by the direct Σ_k (x_ik − y_jk)² where d2[i, j] <= ratio · (‖x_i‖² + ‖y_j‖²).

    ``d2`` holds the GEMM form ‖x_i‖² + ‖y_j‖² − 2 x_i·y_j, whose absolute error is a few ulps of
    ‖x_i‖² + ‖y_j‖²: for pairs that are close relative to their norms it is mostly rounding (it can even be
    negative), so they are recomputed from differences, accumulated in float64. Updates ``d2`` in place.
    """
    rows, cols = np.nonzero(d2 <= ratio * (sq_norm_x[:, None] + sq_norm_y[None, :]))
    step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, rows.size, step):
        r, c = rows[start : start + step], cols[start : start + step]
        diff = x[r].astype(np.float64) - y[c]
        d2[r, c] = np.einsum("ij,ij->i", diff, diff)
