"""Nearest-neighbour search that the miners and the retrieval metrics share: faiss's exact flat index
(the ``[faiss]`` extra), its distances those of :mod:`metricloss.distances`."""

import numpy as np


def faiss_search(x, distance):
    """A function (queries, k) -> (distances, indices), nearest first, from faiss's exact flat index: L2 for the
    Euclidean distances, inner product for ``"cosine"`` (on the unit rows) and ``"dot"``; none for ``"snr"``."""
    if distance == "snr":
        raise ValueError(
            "use_faiss=True cannot search distance='snr': faiss has no index for the SNR distance (it is not a "
            "metric, nor an inner product); pass use_faiss=False for the exact search"
        )
    try:
        import faiss
    except ImportError:
        raise ImportError("use_faiss=True needs faiss: pip install 'metricloss[faiss]' (faiss-cpu)") from None
    data = np.ascontiguousarray(x, dtype=np.float32)
    if distance == "cosine":
        norms = np.linalg.norm(data, axis=1, keepdims=True)
        data = np.divide(data, norms, out=np.zeros_like(data), where=norms > 0)
        index = faiss.IndexFlatIP(data.shape[1])
    elif distance == "dot":  # the largest inner products are the nearest under −x·y
        index = faiss.IndexFlatIP(data.shape[1])
    else:
        index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)

    def search(queries, k):
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if distance == "cosine":
            norms = np.linalg.norm(queries, axis=1, keepdims=True)
            queries = np.divide(queries, norms, out=np.zeros_like(queries), where=norms > 0)
            similarity, indices = index.search(queries, k)
            return 1.0 - similarity.astype(np.float64), indices
        if distance == "dot":
            similarity, indices = index.search(queries, k)
            return -similarity.astype(np.float64), indices
        squared, indices = index.search(queries, k)
        squared = np.maximum(squared.astype(np.float64), 0)
        return (squared if distance == "sqeuclidean" else np.sqrt(squared)), indices

    return search
