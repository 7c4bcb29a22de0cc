"""Retrieval metrics for evaluating embeddings."""

import numpy as np

from ._kernels import get_kernels
from ._validation import check_count, check_embeddings, check_labels, check_option, refuse_renamed
from .distances import DISTANCES, _pairwise_distances_vjp


@refuse_renamed(metric="distance")
def recall_at_k(embeddings, labels, *, k=1, distance="euclidean"):
    """Fraction of queries whose k nearest neighbours (leave-one-out) include a sample of the same class.

    Every sample is a query against all the others; ties in distance go to the lowest index. Queries whose class
    has no other sample count as misses.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import recall_at_k
    >>> recall_at_k(np.array([[0.0], [0.1], [5.0], [5.2]]), np.array([0, 0, 1, 0]))
    0.5
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x.shape[0])
    k = check_count(k, "k")
    check_option(distance, "distance", DISTANCES)
    if k >= x.shape[0]:
        raise ValueError(f"k must be smaller than the number of samples, {x.shape[0]}; got {k}")

    d = _pairwise_distances_vjp(x, None, distance, get_kernels(None))[0]
    np.fill_diagonal(d, np.inf)
    neighbours = np.argsort(d, axis=1, kind="stable")[:, :k]
    hits = (labels[neighbours] == labels[:, None]).any(axis=1)
    return float(hits.mean())
