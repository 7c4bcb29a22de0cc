"""Interchangeable kernel modules: ``numpy_kernels`` (the readable reference) and ``numba_kernels`` (CPU, njit).

Both define the same functions with the same signatures. Kernels trust their inputs: the public functions
validate them first. :func:`get_kernels` picks a module by name; host arrays default to ``"numba"``.
"""

import importlib

from .._validation import check_option

BACKENDS = ("numpy", "numba")

NO_SELF = -(1 << 62)  # the kernels' self_offset when anchors and references are different sets


def get_kernels(backend):
    """The kernel module for ``backend`` (None: the default for host arrays, ``"numba"``)."""
    name = "numba" if backend is None else check_option(backend, "backend", BACKENDS)
    return importlib.import_module(f"{__name__}.{name}_kernels")
