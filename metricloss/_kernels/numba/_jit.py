"""What the Numba family modules share: the jit decorator (:func:`_njit`: ``cache=True`` where usable, no
``fastmath`` but where a kernel says why), the thread policy (``SERIAL_BELOW``, ``THREADS``) and
:func:`_rows_kernel`, which compiles a row kernel both serial and parallel and picks one per call, and the few
jitted helpers and constants more than one family uses.
"""

import functools
import os
import types

import numba
import numpy as np


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


_TILE = 32  # the side of the square tiles of the transposes in lifted_cotangent and transposed (32: fastest here)


@_njit()
def _exclusive_bound(row, t):
    """A value u of the row's dtype with row[j] < u  ⇔  float64(row[j]) < t, so that the sweeps compare in the
    row's own dtype (twice the SIMD width for float32) and decide exactly as float64 would."""
    u = np.empty(1, dtype=row.dtype)
    u[0] = t
    if u[0] < t:
        u[0] = np.nextafter(u[0], np.inf)
    return u[0]


@_njit()
def _scaled(g, dj, divide):
    """g, or with ``divide`` g / dj (0 where dj = 0): the Euclidean VJP's scale."""
    if not divide:
        return g
    return g / dj if dj > 0 else 0.0
