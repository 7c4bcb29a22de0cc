"""Sampling over a dataset: which samples form a batch and which negatives each query trains against, as index
arrays (never losses), in chunks of queries rather than one N×N matrix.

* :func:`pk_batches`: P classes × K samples per batch;
* :func:`random_negatives` and :func:`rank_window_negatives`: negatives for retrieval training, drawn uniformly
  from the other classes or from a window of ranks of each query's retrieval list;
* :func:`mine_dataset`: offline mining, the hardest positive and a hard or semi-hard negative for every sample of
  a dataset, in chunks (memory O(N · chunk)), optionally with faiss.

The online miners, which choose among a batch's own pairs and triplets, are :mod:`metricloss.mining`'s. The exact
search and the faiss search are :mod:`metricloss.metrics`' too: a query's list is ranked nearest first, ties in
distance going to the lowest index.

Randomness comes from a ``numpy.random.Generator``: every function that samples takes ``rng``, a Generator or an
int seed >= 0 (None: fresh entropy, as ``numpy.random.default_rng``); anything else is refused, naming ``rng``.
Labels may have any integer dtype, mixed between queries and references: they are compared as identities,
exactly (``_batch.comparable_labels``).
"""

import numpy as np

from ._arrays import array_route
from ._batch import class_index, comparable_labels
from ._kernels import SELECTION_MODES, get_kernels
from ._pairwise import distance_matrix_vjp, paired_distances_vjp
from ._search import faiss_search, nearest, row_chunks
from ._validation import (
    check_bool,
    check_count,
    check_embeddings,
    check_label_vector,
    check_labels,
    check_option,
    check_rng,
    promote,
)
from .distances import DISTANCES


@array_route
def pk_batches(labels, *, p, k, n_batches=None, rng=None):
    """Yield index batches of ``p`` classes × ``k`` samples each (the "P×K" or "m-per-class" sampler).

    Each batch draws p distinct classes uniformly, then k samples of each: without replacement, or with
    replacement for a class that has fewer than k samples (so small classes still appear, duplicated). Batches
    are grouped by class: k indices of one class, then k of the next. ``n_batches`` defaults to
    ``len(labels) // (p * k)``, about one epoch. The arguments are checked at the call, not at the first batch.

    Parameters
    ----------
    labels : int array of shape (N,)
        The dataset's labels.
    p : int >= 1
        Classes per batch, at most the number of classes.
    k : int >= 1
        Samples per class.
    n_batches : int >= 1, optional
        How many batches; default ``max(1, len(labels) // (p * k))``.
    rng : numpy.random.Generator, int seed >= 0, or None
        The sampler (module docstring).

    Returns
    -------
    batches : generator of int64 arrays of shape (p * k,)
        Indices into ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.sampling import pk_batches
    >>> labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    >>> [np.sort(labels[batch]).tolist() for batch in pk_batches(labels, p=2, k=2, n_batches=2, rng=0)]
    [[1, 1, 2, 2], [0, 0, 2, 2]]
    """
    labels = check_label_vector(labels, "labels")
    p, k = check_count(p, "p"), check_count(k, "k")
    classes, inverse = np.unique(labels, return_inverse=True)  # one array: exact for any integer dtype
    if p > classes.size:
        raise ValueError(f"p must be at most the number of classes, {classes.size}; got {p}")
    if n_batches is None:
        n_batches = max(1, labels.size // (p * k))
    n_batches = check_count(n_batches, "n_batches")
    rng = check_rng(rng, "rng")
    members = [np.flatnonzero(inverse.reshape(-1) == c) for c in range(classes.size)]
    return _pk_batches(members, p, k, n_batches, rng)  # checked now, not at the first next()


def _pk_batches(members, p, k, n_batches, rng):
    for _ in range(n_batches):
        chosen = rng.choice(len(members), size=p, replace=False)
        yield np.concatenate([rng.choice(members[c], size=k, replace=members[c].size < k) for c in chosen])


@array_route
def random_negatives(query_labels, ref_labels, *, n, rng=None):
    """For each query, ``n`` distinct references of another class, drawn uniformly: shape (Q, n).

    Parameters
    ----------
    query_labels : int array of shape (Q,)
    ref_labels : int array of shape (R,)
    n : int >= 1
        Negatives per query, at most the number of references outside each query's class.
    rng : numpy.random.Generator, int seed >= 0, or None
        The sampler (module docstring).

    Returns
    -------
    negatives : int64 array of shape (Q, n)
        Indices into the references.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.sampling import random_negatives
    >>> random_negatives(np.array([0, 1]), np.array([0, 0, 1, 1, 2]), n=3, rng=0).shape
    (2, 3)
    """
    query_labels = check_label_vector(query_labels, "query_labels")
    ref_labels = check_label_vector(ref_labels, "ref_labels")
    n = check_count(n, "n")
    rng = check_rng(rng, "rng")
    query_class, ref_class = comparable_labels(query_labels, ref_labels)  # any integer dtypes, mixed: exactly
    out = np.empty((query_labels.size, n), dtype=np.int64)
    for label in np.unique(query_class):
        candidates = np.flatnonzero(ref_class != label)
        members = np.flatnonzero(query_class == label)
        if candidates.size < n:
            raise ValueError(
                f"n must be at most the number of references outside class {query_labels[members[0]]}, "
                f"{candidates.size}; got {n}"
            )
        for q in members:
            out[q] = rng.choice(candidates, size=n, replace=False)
    return out


@array_route
def rank_window_negatives(
    query_embeddings,
    ref_embeddings,
    *,
    n,
    lo=101,
    hi=500,
    query_labels=None,
    ref_labels=None,
    distance="euclidean",
    chunk_size=1024,
    rng=None,
    backend=None,
):
    """For each query, ``n`` distinct references drawn uniformly from ranks ``lo``..``hi`` (1-based, inclusive)
    of its retrieval list, nearest first: shape (Q, n). With labels, references of the query's own class are
    removed from the list first. Ranks 101–500 are Facebook's embedding-based retrieval (Huang et al. 2020):
    hard enough to teach, far enough down to be rarely a missed positive. Memory O(chunk_size · R).

    Parameters
    ----------
    query_embeddings : array of shape (Q, F), float32 or float64
    ref_embeddings : array of shape (R, F), float32 or float64
    n : int >= 1
        Negatives per query, at most ``hi − lo + 1``.
    lo, hi : int >= 1, default 101 and 500
        The window of ranks, 1-based and inclusive; ``hi`` at most the number of candidate references.
    query_labels : int array of shape (Q,), optional
    ref_labels : int array of shape (R,), optional
        Given together with ``query_labels``: each query's own class is removed from its list.
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    chunk_size : int >= 1, default 1024
        Queries per block of distances.
    rng : numpy.random.Generator, int seed >= 0, or None
        The sampler (module docstring).
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the distances; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an
        NVIDIA GPU, host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    negatives : int64 array of shape (Q, n)
        Indices into the references. Ties in distance are ranked by index.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.sampling import rank_window_negatives
    >>> refs = np.arange(10.0)[:, None]
    >>> np.sort(rank_window_negatives(np.array([[0.0]]), refs, n=3, lo=2, hi=4, rng=0))
    array([[1, 2, 3]])
    """
    queries = check_embeddings(query_embeddings, "query_embeddings")
    refs = check_embeddings(ref_embeddings, "ref_embeddings")
    if refs.shape[1] != queries.shape[1]:
        raise ValueError(f"ref_embeddings must have {queries.shape[1]} features to match query_embeddings")
    n, lo, hi = check_count(n, "n"), check_count(lo, "lo"), check_count(hi, "hi")
    if hi < lo + n - 1:
        raise ValueError(f"the window of ranks lo..hi must hold at least n = {n} references; got {lo}..{hi}")
    if (query_labels is None) != (ref_labels is None):
        raise ValueError("query_labels and ref_labels must be given together")
    if query_labels is not None:
        query_labels = check_labels(query_labels, queries.shape[0], "query_labels", against="query_embeddings")
        ref_labels = check_labels(ref_labels, refs.shape[0], "ref_labels", against="ref_embeddings")
        query_labels, ref_labels = comparable_labels(query_labels, ref_labels)  # any integer dtypes: exactly
    check_option(distance, "distance", DISTANCES)
    chunk_size = check_count(chunk_size, "chunk_size")
    rng, kernels = check_rng(rng, "rng"), get_kernels(backend)
    queries, refs = promote(queries, refs)
    out = np.empty((queries.shape[0], n), dtype=np.int64)
    for rows in row_chunks(queries.shape[0], chunk_size):
        d = distance_matrix_vjp(queries[rows], refs, distance, kernels)[0].astype(np.float64)
        if query_labels is not None:
            d[query_labels[rows][:, None] == ref_labels[None, :]] = np.inf
        available = np.isfinite(d).sum(axis=1).min()
        if available < hi:
            raise ValueError(f"hi must be at most the number of candidate references, {available}; got {hi}")
        ranked = nearest(d, hi)[:, lo - 1 :]  # nearest first, ties by index
        picks = np.argsort(rng.random(ranked.shape), axis=1)[:, :n]  # n distinct ranks per query
        out[rows] = np.take_along_axis(ranked, picks, axis=1)
    return out


@array_route
def mine_dataset(
    embeddings,
    labels,
    *,
    negative="hardest",
    distance="euclidean",
    chunk_size=1024,
    progress=None,
    use_faiss=False,
    n_neighbours=64,
    backend=None,
):
    """Offline mining over a whole dataset: for every sample, its hardest (farthest) positive and its hardest
    (closest) or semi-hard negative (the closest negative farther than that positive; FaceNet's choice).

    "Semi-hard" here is FaceNet's rule without a fallback: a sample whose negatives are all closer than its
    hardest positive gets -1. ``triplet_loss(mining="semihard")`` (TF-Addons' form of the same rule) takes the
    farthest negative instead in that case.

    Distances are computed ``chunk_size`` anchors at a time, so memory is O(N · chunk_size), not O(N²).
    ``progress(done, total)`` is called after each chunk. With ``use_faiss=True`` (the ``[faiss]`` extra) the
    negatives come from faiss's exact flat index, searching ``n_neighbours`` neighbours and falling back to the
    exact scan for anchors whose neighbours hold no suitable negative; the positives are always exact (within
    each class). Both paths give the same indices, up to exact ties and float32 rounding in faiss, at any magnitude
    of the rows: faiss gets them scaled by a power of two, which changes no neighbour.

    Parameters
    ----------
    embeddings : array of shape (N, F), float32 or float64
        The whole dataset.
    labels : int array of shape (N,)
    negative : {"hardest", "semihard"}, default "hardest"
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    chunk_size : int >= 1, default 1024
        Anchors per block of distances.
    progress : callable, optional
        Called as ``progress(done, total)`` after each chunk.
    use_faiss : bool, default False
        Search the negatives with faiss (``pip install 'metricloss[faiss]'``): its L2 index, its inner-product
        index on the unit rows for ``"cosine"`` and on the rows as they are for ``"dot"``; ``"snr"`` has no faiss
        index (a ValueError). faiss searches in float32: rows whose magnitudes span more than about 2^63 (their
        squared distances below float32's range) are refused with a ValueError naming ``embeddings``.
    n_neighbours : int >= 1, default 64
        With faiss: how many neighbours are searched for a negative before the exact scan.
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the exact scan; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an
        NVIDIA GPU, host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    positives, negatives : int64 arrays of shape (N,)
        Indices into the dataset; -1 where a sample has none.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.sampling import mine_dataset
    >>> mine_dataset(np.array([[0.0], [0.5], [0.8], [3.0]]), np.array([0, 0, 1, 1]), negative="semihard")
    (array([1, 0, 3, 2]), array([ 2,  3, -1,  1]))
    """
    x = check_embeddings(embeddings)
    (labels,) = comparable_labels(check_labels(labels, x.shape[0]))  # any integer dtype, exactly, as int64
    check_option(negative, "negative", ("hardest", "semihard"))
    check_option(distance, "distance", DISTANCES)
    chunk_size = check_count(chunk_size, "chunk_size")
    n_neighbours = check_count(n_neighbours, "n_neighbours")
    use_faiss = check_bool(use_faiss, "use_faiss")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total); got {type(progress).__name__}")
    kernels = get_kernels(backend)
    negative_mode = SELECTION_MODES[negative]
    total = x.shape[0]
    positives, negatives = np.full(total, -1, dtype=np.int64), np.full(total, -1, dtype=np.int64)

    classes = class_index(labels, labels)

    def exact(rows):
        """Exact choices for the anchors ``rows`` (a contiguous range), against the whole dataset."""
        d = distance_matrix_vjp(x[rows], x, distance, kernels)[0]
        rows_classes = classes._replace(anchor_class=classes.anchor_class[rows])
        return kernels.select_per_anchor(d, rows_classes, rows.start, SELECTION_MODES["hardest"], negative_mode)

    if not use_faiss:
        for rows in row_chunks(total, chunk_size):
            positives[rows], negatives[rows] = exact(rows)
            if progress is not None:
                progress(rows.stop, total)
        return positives, negatives

    search = faiss_search(x, x, distance, names=("embeddings", "embeddings"))
    for c in np.unique(labels):  # exact hardest positives, class by class
        members = np.flatnonzero(labels == c)
        for start in range(0, members.size, chunk_size):
            rows = members[start : start + chunk_size]
            d = distance_matrix_vjp(x[rows], x[members], distance, kernels)[0]
            d[np.arange(rows.size), np.arange(start, start + rows.size)] = -np.inf  # not its own positive
            best = np.argmax(d, axis=1)
            positives[rows] = np.where(np.isfinite(d[np.arange(rows.size), best]), members[best], -1)
    k = min(n_neighbours + 1, total)
    for rows in row_chunks(total, chunk_size):
        d_near, near = search(rows, k)
        own = np.arange(rows.start, rows.stop)
        d_pos = np.full(near.shape[0], -np.inf)
        has_pos = positives[rows] >= 0
        d_pos[has_pos] = paired_distances_vjp(x[own[has_pos]], x[positives[rows][has_pos]], distance)[0]
        ok = (near >= 0) & (near != own[:, None]) & (labels[np.maximum(near, 0)] != labels[own][:, None])
        if negative == "semihard":
            ok &= (d_near > d_pos[:, None]) & has_pos[:, None]
        found = ok.any(axis=1)
        negatives[own[found]] = near[found, np.argmax(ok[found], axis=1)]
        for a in own[~found]:  # the neighbours held no suitable negative: scan everything for this anchor
            negatives[a] = exact(slice(a, a + 1))[1][0]
        if progress is not None:
            progress(rows.stop, total)
    return positives, negatives
