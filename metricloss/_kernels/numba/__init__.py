"""CPU kernels compiled by Numba: plain loops, ``prange`` over rows that one iteration owns (one writer per
output element, so results are deterministic whatever the thread count), ``cache=True`` where the cache directory
is writable, and no ``fastmath``. ``error_model="numpy"`` drops Python's division-by-zero checks so that the loops
vectorise; no kernel divides by zero (the divisor is selected away from 0 and the quotient selected to 0). Each
kernel is valid Python: ``NUMBA_DISABLE_JIT=1`` runs it as such (tests/test_triplet.py does).

The contracts (arguments, outputs, conventions) are documented once, in the ``numpy`` package; this one has the
same family modules, defining the same functions with the same signatures. The decorator, the thread policy
(``_jit.THREADS``, ``_jit.SERIAL_BELOW``) and the helpers that several families share are in ``_jit``.
"""

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

__all__ = [
    "batch_all_symmetric",
    "batch_all_triplets",
    "contrastive_pairs",
    "gather_entries",
    "generalized_lifted_rows",
    "gram_to_distances",
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
