"""Reference kernels in vectorised NumPy: the readable versions of what the Numba kernels do with loops, and the
place where each kernel's contract is written down (in its docstring, in the family module that defines it).

The family modules, the same in ``numba`` and ``cuda``: ``distances`` (Gram to distances, the Euclidean VJP's
steps, scatter-adds), ``triplets`` (batch-all, soft batch-all, semi-hard negatives, per-anchor selection), ``pairs``
(contrastive), ``lifted`` (lifted structure and its generalized form), ``quadruplet`` and ``warp``.

Shared conventions. ``d`` is a distance matrix between anchors (rows) and references (columns). ``classes`` is their
:class:`metricloss._kernels.Classes` (each reference's class, each anchor's, each class's references; built by
:func:`metricloss._batch.class_index`), one argument, read by field name. Anchor a is reference a + ``self_offset`` and
is not its own candidate (0 within one batch, the chunk's start when the anchors are a chunk of the references,
``NO_SELF`` when anchors and references are different sets): an argument of its own, not a field of ``classes``, because
it says where the anchors sit among the references, not who shares a class with whom: the blocks of a batch's rows each
have their own (their start), and the kernels that run within one batch only (``batch_all_symmetric``,
``quadruplet_pairs``) or that never exclude the anchor itself (``negative_softmax``, ``scale_same_class``) take none.
Kernels trust their inputs.
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
