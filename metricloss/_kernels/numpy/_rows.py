"""The blocks of anchor rows that the NumPy pair and lifted kernels work in, so that their temporaries are a few
blocks, not B×R arrays.
"""

import numpy as np

_PAIR_CHUNK_ELEMENTS = 1 << 16  # entries of d per block of rows in the pair kernels: temporaries stay ≪ B²


def _row_blocks(n_anchors, n_refs):
    """The pair kernels' blocks of anchor rows (index arrays) of about _PAIR_CHUNK_ELEMENTS entries each."""
    step = max(1, _PAIR_CHUNK_ELEMENTS // n_refs)
    for start in range(0, n_anchors, step):
        yield np.arange(start, min(start + step, n_anchors))


def _own_entries(rows, self_offset, n_refs):
    """(block row, column) of each anchor's own column, rows + self_offset, where it lies inside the matrix."""
    own = rows + self_offset
    inside = (own >= 0) & (own < n_refs)
    return np.flatnonzero(inside), own[inside]
