"""CUDA kernels (numba-cuda) with the names, signatures and contracts of the ``numpy`` package's, in the same
family modules, for host arrays or device arrays.

Each public function here takes and fills host NumPy arrays exactly as its NumPy twin does (read that one for the
contract): it copies its inputs to the device, launches the kernels, and copies the results back into the caller's
arrays; device arrays stay on the device. In each family module the device code sits beside its host wrapper, and
the launches, copies and the stream they go on are ``_device``'s. Kernels that have no CUDA version yet are not
silently run on the CPU: asking for one raises ``NotImplementedError`` naming it (see ``__getattr__`` below).
which have no NumPy twin: on host arrays NumPy does them, in :mod:`metricloss.distances`.

How the kernels are laid out, so that results are deterministic run to run:

* elementwise kernels (the Gram → distance conversion, the pair scale, the symmetrize) give every thread the entries
  it owns (the symmetrize: the pair (i, j), (j, i) with i <= j);
* per-anchor kernels (batch-all, batch-hard selection, FaceNet semi-hard) run one block per anchor; each thread
  writes the columns (or positive pairs) it owns, and per-anchor totals are reduced in shared memory in a fixed
  tree order. Ties between candidates go to the lowest index, as in the reference;
* the scatter-adds are pulls: the pairs are sorted by target once (a stable argsort on the host), and one thread
  per target entry adds its pairs in their original order. No atomics anywhere.

The kernels use only ``cuda.grid``, thread/block indices, ``cuda.shared.array`` and ``cuda.syncthreads`` (no warp
shuffles, no atomics, no device functions), the subset that numba-cuda's simulator and numba-cuda-mlir both
support. The GEMMs are not here: the caller computes them with NumPy on the host (``metricloss.distances``).
"""

from .. import numpy as _reference
from . import distances, lifted, pairs, quadruplet, triplets, warp
from ._device import device_kernels, host_functions, kernel_name, launching_on
from .distances import (
    gather_entries,
    gram_to_distances,
    pair_scale,
    pull_distance_pairs,
    row_sq_norms,
    scale,
    scatter_add_entries,
    scatter_add_rows,
    symmetrize,
    transposed,
)
from .lifted import generalized_lifted_rows, lifted_cotangent, lifted_pairs, negative_softmax
from .pairs import contrastive_pairs, scale_same_class
from .quadruplet import quadruplet_pairs
from .triplets import (
    batch_all_symmetric,
    batch_all_triplets,
    select_per_anchor,
    semihard_negatives,
    soft_all_triplets,
)
from .warp import warp_exact, warp_violators

FAMILIES = (distances, triplets, pairs, lifted, quadruplet, warp)

# Every device kernel (the compile-to-PTX test compiles each with every signature it is launched with).
KERNELS = tuple(kernel for family in FAMILIES for kernel in device_kernels(family))

# The host functions this backend has.
IMPLEMENTED = tuple(name for family in FAMILIES for name in host_functions(family))


__all__ = [
    "FAMILIES",
    "IMPLEMENTED",
    "KERNELS",
    "batch_all_symmetric",
    "batch_all_triplets",
    "contrastive_pairs",
    "gather_entries",
    "generalized_lifted_rows",
    "gram_to_distances",
    "kernel_name",
    "launching_on",
    "lifted_cotangent",
    "lifted_pairs",
    "negative_softmax",
    "pair_scale",
    "pull_distance_pairs",
    "quadruplet_pairs",
    "row_sq_norms",
    "scale",
    "scale_same_class",
    "scatter_add_entries",
    "scatter_add_rows",
    "select_per_anchor",
    "semihard_negatives",
    "soft_all_triplets",
    "symmetrize",
    "transposed",
    "warp_exact",
    "warp_violators",
]


def __getattr__(name):
    """A kernel of the NumPy reference without a CUDA version: refused by name, never run on the CPU behind the
    caller's back."""
    if name in _reference.__all__:
        raise NotImplementedError(
            f"backend='cuda' has no CUDA version of the kernel {name!r} yet (it has: {', '.join(IMPLEMENTED)}); "
            "use backend='numba' for this loss"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
