"""Nearest-neighbour search that offline mining (:mod:`metricloss.sampling`) and the retrieval metrics
(:mod:`metricloss.metrics`) share: the exact search, chunks of query rows against every reference ranked nearest
first with ties to the lowest index, and faiss's exact flat index (the ``[faiss]`` extra), its distances those of
:mod:`metricloss.distances`. Everything here trusts its inputs."""

import math

import numpy as np

from ._pairwise import unit_rows
from ._validation import refuse_overflow

# faiss computes in float32. Its rows are first scaled by one power of two so that the largest |entry| lies in
# [0.5, 1) (exact: the order of the neighbours does not change, and scaling the distances back is exact too). A row
# whose largest |entry| is then m has squared norms, squared distances to its near neighbours and inner products
# of the order of m²: float32 keeps them to its rounding while m² is a normal number, m >= 2^-63. Rows that span
# more than that below the largest are refused: faiss would tie their distances at 0 or keep none of their digits.
_FAISS_SPAN_EXPONENT = -np.finfo(np.float32).minexp // 2  # 63: m >= 2^-63 keeps m² >= 2^-126, float32's least normal


def row_chunks(total, chunk_size):
    """Slices of at most ``chunk_size`` consecutive rows, covering rows 0..total-1 in order."""
    for start in range(0, total, chunk_size):
        yield slice(start, min(start + chunk_size, total))


def nearest(d, k):
    """The ``k`` nearest columns of each row of ``d``, in the order (distance, column index): shape (rows, k).
    O(columns) per row plus the sort of the k nearest (and of ties at the k-th distance)."""
    rows = d.shape[0]
    threshold = np.partition(d, k - 1, axis=1)[:, k - 1]
    r, c = np.nonzero(d <= threshold[:, None])  # at least k per row; more only where ties straddle the k-th
    order = np.lexsort((c, d[r, c], r))  # by row, then distance, then column
    r, c = r[order], c[order]
    position = np.arange(r.size) - np.searchsorted(r, np.arange(rows))[r]
    keep = position < k
    out = np.empty((rows, k), dtype=np.int64)
    out[r[keep], position[keep]] = c[keep]
    return out


def faiss_search(queries, refs, distance, names=("embeddings", "ref_embeddings")):
    """A function (rows, k) -> (distances, indices): the ``k`` nearest references of the queries ``queries[rows]``
    (a slice or an index array), nearest first, from faiss's exact flat index, the distances in float64. faiss's
    L2 index serves the Euclidean distances, its inner-product index ``"cosine"`` (on the unit rows) and ``"dot"``;
    none serves ``"snr"`` (a ValueError). ``names``: the arguments ``queries`` and ``refs`` are, for the errors.

    The rows are scaled by one power of two before the cast to float32 (module comment), and the distances scaled
    back: faiss gives the exact search's neighbours over the dtype's whole finite range, but between distances
    closer than float32's rounding. Where the rows' magnitudes span more than float32 can hold, a ValueError."""
    if distance == "snr":
        raise ValueError(
            "use_faiss=True cannot search distance='snr': faiss has no index for the SNR distance (it is not a "
            "metric, nor an inner product); pass use_faiss=False for the exact search"
        )
    try:
        import faiss
    except ImportError:
        raise ImportError("use_faiss=True needs faiss: pip install 'metricloss[faiss]' (faiss-cpu)") from None
    if distance == "cosine":  # unit rows, each normalised after its own power-of-two scaling: any magnitude

        def prepared(rows):
            return np.ascontiguousarray(unit_rows(rows.astype(np.float64))[0], dtype=np.float32)

        exponent = 0
    else:
        exponent = _faiss_exponent((queries, refs), names)

        def prepared(rows):
            return np.ascontiguousarray(np.ldexp(rows, -exponent), dtype=np.float32)

    index = (faiss.IndexFlatL2 if distance in ("euclidean", "sqeuclidean") else faiss.IndexFlatIP)(refs.shape[1])
    index.add(prepared(refs))

    def search(rows, k):
        found, indices = index.search(prepared(queries[rows]), k)
        found = found.astype(np.float64)
        if distance == "cosine":
            return 1.0 - found, indices
        if distance == "euclidean":  # faiss's squared distances of the scaled rows, 2^-2e · d²
            d = np.ldexp(np.sqrt(np.maximum(found, 0)), exponent)
        elif distance == "sqeuclidean":
            d = np.ldexp(np.maximum(found, 0), 2 * exponent)
        else:  # "dot": the largest inner products are the nearest under −x·y
            d = -np.ldexp(found, 2 * exponent)
        refuse_overflow(d, math.inf, (queries, refs), names, f"{distance} distances")
        return d, indices

    return search


def _faiss_exponent(arrays, names):
    """e such that the largest |entry| of ``arrays`` times 2^-e lies in [0.5, 1) (0 where all are 0); a ValueError
    naming the array where a non-zero row's largest |entry| is below 2^-63 of that (module comment)."""
    largest_per_row = [np.maximum(a.max(axis=1, initial=0), -a.min(axis=1, initial=0)) for a in arrays]
    largest = max(float(np.max(rows, initial=0)) for rows in largest_per_row)
    if largest == 0:
        return 0
    exponent = int(np.frexp(largest)[1])
    for rows, name in zip(largest_per_row, names, strict=True):
        smallest = float(np.min(rows[rows > 0], initial=largest))
        if np.frexp(smallest)[1] <= exponent - _FAISS_SPAN_EXPONENT:
            raise ValueError(
                f"{name} has rows of largest |entry| {smallest:.3g} beside rows of {largest:.3g}: use_faiss=True "
                f"searches in float32, which holds the distances of rows within about 2^{_FAISS_SPAN_EXPONENT} of the "
                "largest (below, their squares underflow); pass use_faiss=False for the exact search"
            )
    return exponent
