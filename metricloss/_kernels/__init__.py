"""Interchangeable kernel packages: ``numpy`` (the readable reference), ``numba`` (CPU, njit) and ``cuda`` (GPU,
numba-cuda; extra ``[cuda]``).

All have the same family modules (``distances``, ``triplets``, ``pairs``, ``lifted``, ``quadruplet``, ``warp``) and
define the same functions with the same signatures, on host NumPy arrays (tests/test_kernels_layout.py checks it).
Kernels trust their inputs: the public functions validate them first. :func:`get_kernels` picks a package by the
``backend`` name alone, never by where the arrays live: None means ``"numba"``; ``"cuda"`` copies each kernel's
host arrays to the GPU and the results back, and refuses (``NotImplementedError``) a kernel it has no CUDA version
of rather than run it on the CPU. The kernels read a batch's classes as one :class:`Classes`.
"""

import importlib
from typing import NamedTuple

import numpy as np

from .._validation import check_option

BACKENDS = ("numpy", "numba", "cuda")

NO_SELF = -(1 << 62)  # the kernels' self_offset when anchors and references are different sets

# select_per_anchor's modes, for its positive and its negative: the hardest, the easiest, the semi-hard one
SELECTION_MODES = {"hardest": 0, "easiest": 1, "semihard": 2}


class Classes(NamedTuple):
    """The classes of a batch as the kernels read them, built from the labels by
    :func:`metricloss._batch.class_index`: every reference's class and every anchor's, numbered 0 to C − 1 by the
    references' labels, and each class's references listed together. A block of the batch's anchor rows has the
    batch's classes with its rows of ``anchor_class``: ``classes._replace(anchor_class=classes.anchor_class[rows])``.
    A NamedTuple of arrays, so that Numba kernels take it as one argument and read its fields by name."""

    ref_class: np.ndarray
    """int32, (R,): ``ref_class[j]`` is reference j's class."""
    anchor_class: np.ndarray
    """int32, (B,): ``anchor_class[a]`` is anchor a's class, -1 where no reference is of it."""
    class_order: np.ndarray
    """int64, (R,): the references ordered by class, each class's in increasing order."""
    class_starts: np.ndarray
    """int64, (C + 1,): class c's references are ``class_order[class_starts[c]:class_starts[c + 1]]``."""


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
