"""Interchangeable kernel packages: ``numpy`` (the readable reference), ``numba`` (CPU, njit) and ``cuda`` (GPU,
numba-cuda; extra ``[cuda]``).

All have the same family modules (``distances``, ``triplets``, ``pairs``, ``lifted``, ``quadruplet``, ``warp``) and
define the same functions with the same signatures, on host NumPy arrays (tests/test_kernels_layout.py checks it).
Kernels trust their inputs: the public functions validate them first. :func:`get_kernels` picks a package by the
``backend`` name alone, never by where the arrays live: None means ``"numba"``; ``"cuda"`` copies each kernel's
host arrays to the GPU and the results back, and refuses (``NotImplementedError``) a kernel it has no CUDA version
of rather than run it on the CPU.
"""

import importlib

from .._validation import check_option

BACKENDS = ("numpy", "numba", "cuda")

NO_SELF = -(1 << 62)  # the kernels' self_offset when anchors and references are different sets


def get_kernels(backend):
    """The kernel package for ``backend`` (None: ``"numba"``).

    ``"cuda"`` needs numba-cuda (an ``ImportError`` naming ``pip install metricloss[cuda]`` if it is missing) and a
    usable GPU or ``NUMBA_ENABLE_CUDASIM=1`` (a ``RuntimeError`` if neither).
    """
    name = "numba" if backend is None else check_option(backend, "backend", BACKENDS)
    if name == "cuda":
        from ._cuda import require_cuda

        require_cuda()
    return importlib.import_module(f"{__name__}.{name}")
