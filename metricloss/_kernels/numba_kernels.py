"""CPU kernels compiled by Numba: plain loops, ``prange`` over rows that one iteration owns (one writer per
output element, so results are deterministic), ``cache=True`` where the cache directory is writable, and no
``fastmath``. Each kernel is valid Python: ``NUMBA_DISABLE_JIT=1`` runs it as such."""

import numba
import numpy as np


def _njit(**options):
    """``numba.njit(cache=True, **options)``, without the on-disk cache where no cache directory is usable."""

    def decorate(function):
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available" on read-only installs
            return numba.njit(**options)(function)

    return decorate


@_njit(parallel=True)
def recompute_close_pairs(x, y, d2, sq_norm_x, sq_norm_y, ratio):
    """Same contract as :func:`metricloss._kernels.numpy_kernels.recompute_close_pairs`."""
    for i in numba.prange(x.shape[0]):
        for j in range(y.shape[0]):
            if d2[i, j] <= ratio * (sq_norm_x[i] + sq_norm_y[j]):
                total = 0.0
                for k in range(x.shape[1]):
                    diff = np.float64(x[i, k]) - np.float64(y[j, k])
                    total += diff * diff
                d2[i, j] = total
