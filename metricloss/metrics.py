r"""Retrieval metrics for evaluating embeddings, with pytorch-metric-learning's ``AccuracyCalculator`` definitions.

Every query is ranked against a set of references by distance, nearest first, ties in distance going to the
lowest reference index (faiss's exact flat index, which pytorch-metric-learning uses, orders ties the same way).
A query's **relevant** references are those of its class; their number is :math:`R`. Three settings:

* **leave-one-out** (no ``ref_embeddings``): every sample is a query against all the others; its own row is
  never a neighbour and :math:`R` is the size of its class minus one;
* **query vs reference** (``ref_embeddings``, ``ref_labels``): queries and references are separate sets, and
  :math:`R` counts the references of the query's class;
* **query vs a reference that contains the queries** (``ref_includes_query=True``): the first ``len(embeddings)``
  rows of ``ref_embeddings`` are the queries themselves (checked); query ``i`` skips reference ``i`` and
  :math:`R` is one less. This is pytorch-metric-learning's ``ref_includes_query``.

With :math:`\mathrm{rel}_i(j) = 1` when the ``j``-th nearest reference of query ``i`` is relevant, and
:math:`\mathrm{first}_i` the rank of its nearest relevant reference (over the whole ranking):

===============================  ===================================================================================
``precision_at_1``               :math:`\mathrm{rel}_i(1)`
``recall_at_{k}``                :math:`[\mathrm{first}_i \le k]`: a relevant reference among the ``k`` nearest
``r_precision``                  :math:`\frac{1}{R_i} \sum_{j \le R_i} \mathrm{rel}_i(j)`
``mean_average_precision_at_r``  :math:`\frac{1}{R_i} \sum_{j \le R_i} \mathrm{rel}_i(j) \, P_i(j)`, with
                                 :math:`P_i(j) = \frac{1}{j} \sum_{l \le j} \mathrm{rel}_i(l)`
``mean_reciprocal_rank``         :math:`1 / \mathrm{first}_i`
===============================  ===================================================================================

each averaged over the queries (``average="queries"``) or over the queries' classes of the per-class means
(``average="classes"``, PML's ``avg_of_avgs=True``). A query with no relevant reference (:math:`R_i = 0`: its class
has no other sample, or no reference) is left out of every average, as in PML; if no query has one, the metrics
are undefined and a ValueError says so (PML returns NaN).

The neighbours are computed exactly, ``chunk_size`` queries at a time, so memory is O(chunk_size · R) and never
O(Q · R): 10⁵ queries against 10⁵ references fit in a few hundred MiB. With ``use_faiss=True`` (the ``[faiss]``
extra) the nearest neighbours come from faiss's exact flat index instead, in float32, on the rows scaled by a power
of two (which changes no neighbour): the same neighbours at any magnitude of the rows, but between distances closer
than float32's rounding.
"""

import numpy as np

from ._arrays import array_route
from ._batch import class_index
from ._kernels import get_kernels
from ._pairwise import distance_matrix_vjp
from ._search import faiss_search, nearest, row_chunks
from ._validation import (
    check_bool,
    check_count,
    check_embeddings,
    check_labels,
    check_option,
    check_references,
    promote,
)
from .distances import DISTANCES

AVERAGES = ("queries", "classes")

# The default chunk holds about 2**21 query-reference distances (16 MiB in float64), whatever the sizes.
_CHUNK_ENTRIES = 1 << 21


def _check_k_values(k, n_candidates):
    """``k`` as a tuple of distinct ints in [1, n_candidates], from an int or a sequence of ints."""
    values = (k,) if np.ndim(k) == 0 else tuple(k)
    if not values:
        raise ValueError("k must be a positive integer or a non-empty sequence of them; got an empty sequence")
    values = tuple(dict.fromkeys(check_count(v, "k") for v in values))
    too_large = [v for v in values if v > n_candidates]
    if too_large:
        raise ValueError(
            f"k must be at most the number of references each query is ranked against, {n_candidates}; "
            f"got {too_large[0]}"
        )
    return values


def _check_inputs(embeddings, labels, ref_embeddings, ref_labels, ref_includes_query, distance, average, chunk_size):
    """The checked arrays (x, labels, ref, ref_labels, self_excluded) and options, shared by every public metric."""
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x.shape[0])
    ref_includes_query = check_bool(ref_includes_query, "ref_includes_query")
    check_option(distance, "distance", DISTANCES)
    check_option(average, "average", AVERAGES)
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size")
    ref, ref_labels = check_references(x, ref_embeddings, ref_labels)
    if ref is None:  # leave-one-out: the embeddings are their own references, each query skipping itself
        return x, labels, x, labels, True, chunk_size
    x, ref = promote(x, ref)
    if ref_includes_query:
        n = x.shape[0]
        if ref.shape[0] < n or not np.array_equal(ref[:n], x) or not np.array_equal(ref_labels[:n], labels):
            raise ValueError(
                f"ref_embeddings and ref_labels must start with the {n} queries and their labels when "
                "ref_includes_query=True (query i is reference i, which it skips); got references that do not: "
                "pass ref_includes_query=False for separate sets"
            )
    return x, labels, ref, ref_labels, ref_includes_query, chunk_size


def _first_relevant_rank(d, relevant):
    """Per row, the rank (1-based) of the nearest relevant column in the order (distance, column index); 0 where a
    row has no relevant column. Excluded columns must hold d = inf and relevant = False."""
    d_first = np.where(relevant, d, np.inf).min(axis=1)
    at_first = relevant & (d == d_first[:, None])
    j_first = np.argmax(at_first, axis=1)  # the lowest index among relevant columns at that distance
    before = np.count_nonzero(d < d_first[:, None], axis=1)
    tied_before = np.count_nonzero((d == d_first[:, None]) & (np.arange(d.shape[1]) < j_first[:, None]), axis=1)
    return np.where(relevant.any(axis=1), before + tied_before + 1, 0)


def _precision_at_r(hits, r):
    """R-precision and average precision at R of each row, from its relevance flags ``hits`` (rows × K, nearest
    first, K >= max r) and its number of relevant references ``r`` (>= 1)."""
    within = np.arange(hits.shape[1]) < r[:, None]
    hits = hits & within
    found = np.cumsum(hits, axis=1)
    precision_at_j = found / np.arange(1, hits.shape[1] + 1)
    r_precision = found[:, -1] / r
    average_precision = np.where(hits, precision_at_j, 0.0).sum(axis=1) / r
    return r_precision, average_precision


def _relevant_counts(labels, ref_labels, self_excluded):
    """(ref_class, query_class, r): the classes numbered by :func:`class_index` (query_class -1 where no reference
    has the query's class) and each query's number R of relevant references (0 for a lone query)."""
    ref_class, query_class = class_index(labels, ref_labels)[:2]
    counts = np.bincount(ref_class)
    r = np.where(query_class >= 0, counts[np.maximum(query_class, 0)] - int(self_excluded), 0)
    return ref_class, query_class, r


def _per_query_scores(x, labels, ref, ref_labels, self_excluded, distance, chunk_size, use_faiss):
    """The shared neighbour computation: per query, R (relevant references), the rank of the first relevant
    reference, R-precision and average precision at R. Queries with R = 0 get zeros (the callers leave them out).
    Trusts its inputs; ``self_excluded``: query i is reference i and skips it."""
    n_queries, n_refs = x.shape[0], ref.shape[0]
    ref_class, query_class, r = _relevant_counts(labels, ref_labels, self_excluded)
    first = np.zeros(n_queries, dtype=np.int64)
    r_precision, average_precision = np.zeros(n_queries), np.zeros(n_queries)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ENTRIES // n_refs)
    kernels = get_kernels(None)
    names = ("embeddings", "embeddings" if ref is x else "ref_embeddings")
    search = faiss_search(x, ref, distance, names) if use_faiss else None
    if ref is x:  # a separate buffer: numpy sends x @ x.T to SYRK, several times slower here than GEMM
        ref = x.copy()

    def exact(rows):
        """Distances and relevance of the queries ``rows`` (a slice or index array) to every reference."""
        d = distance_matrix_vjp(x[rows], ref, distance, kernels)[0]
        relevant = ref_class[None, :] == query_class[rows][:, None]
        if self_excluded:
            own = np.arange(n_refs)[rows]
            d[np.arange(own.size), own] = np.inf
            relevant[np.arange(own.size), own] = False
        return d, relevant

    for rows in row_chunks(n_queries, chunk_size):
        start = rows.start
        r_rows = r[rows]
        k = int(r_rows.max())
        if k == 0:
            continue
        if search is None:
            d, relevant = exact(rows)
            ranked = nearest(d, k)
            first[rows] = _first_relevant_rank(d, relevant)
        else:
            ranked = _faiss_nearest(search, rows, np.arange(start, rows.stop) if self_excluded else None, k)
        hits = ref_class[ranked] == query_class[rows][:, None]
        has = r_rows > 0
        rp, ap = _precision_at_r(hits[has], r_rows[has])
        r_precision[start : rows.stop][has], average_precision[start : rows.stop][has] = rp, ap
        if search is not None:  # the first relevant rank from faiss's list, or exactly where the list holds none
            found = hits.any(axis=1)
            first[start : rows.stop][found] = np.argmax(hits[found], axis=1) + 1
            missing = np.flatnonzero(has & ~found) + start
            if missing.size:
                first[missing] = _first_relevant_rank(*exact(missing))
    return r, first, r_precision, average_precision


def _faiss_nearest(search, rows, own, k):
    """The ``k`` nearest references of the queries ``rows`` from faiss; ``own`` (or None): each query's own reference
    index, skipped as pytorch-metric-learning does (search k + 1, drop the own index, or the last where it is
    absent)."""
    if own is None:
        return search(rows, k)[1].astype(np.int64)
    ranked = search(rows, k + 1)[1].astype(np.int64)
    is_own = ranked == own[:, None]
    is_own[~is_own.any(axis=1), -1] = True
    return ranked[~is_own].reshape(ranked.shape[0], k)


def _average(values, r, query_class, average):
    """The mean of ``values`` over the queries with R >= 1, or over their classes of the per-class means."""
    valid = r > 0
    if average == "queries":
        return float(np.mean(values[valid], dtype=np.float64))
    members = np.unique(query_class[valid], return_inverse=True)[1]
    per_class = np.bincount(members, weights=values[valid]) / np.bincount(members)
    return float(np.mean(per_class))


@array_route
def retrieval_metrics(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    ref_includes_query=False,
    k=1,
    distance="euclidean",
    average="queries",
    chunk_size=None,
    use_faiss=False,
):
    r"""Precision@1, Recall@K, R-precision, MAP@R and the mean reciprocal rank, from one neighbour search.

    The definitions are pytorch-metric-learning's ``AccuracyCalculator``'s (see :mod:`metricloss.metrics`), and
    so are the values: ``AccuracyCalculator(k=None).get_accuracy(query, query_labels, reference,
    reference_labels, ref_includes_query)`` gives the same numbers for ``precision_at_1``, ``r_precision``,
    ``mean_average_precision_at_r`` and ``mean_reciprocal_rank``, ties in distance included.

    Parameters
    ----------
    embeddings : array of shape (n_queries, n_features), float32 or float64
        The queries (and, without ``ref_embeddings``, also the references: leave-one-out).
    labels : array of shape (n_queries,), int
        The queries' classes.
    ref_embeddings : array of shape (n_references, n_features), optional
        The references each query is ranked against; default: ``embeddings`` themselves, each query skipping its
        own row. Given with ``ref_labels``.
    ref_labels : array of shape (n_references,), int, optional
        The references' classes; given with ``ref_embeddings``.
    ref_includes_query : bool, default False
        With ``ref_embeddings``: whether its first ``n_queries`` rows (and ``ref_labels``' first entries) are the
        queries themselves, which are then skipped (query ``i`` skips reference ``i``) and not counted in R;
        checked, a ValueError where they differ. Ignored without ``ref_embeddings`` (leave-one-out always skips).
    k : int or sequence of int, default 1
        The K of each Recall@K to report, each in [1, the number of references a query is ranked against].
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
        The distance ranking the references (``"euclidean"`` and ``"sqeuclidean"`` rank alike, but for rounding;
        ``"dot"`` ranks by the largest inner product; ``"snr"`` by Var(reference − query) / Var(query)).
        Evaluate embeddings with the distance they were trained on: for a loss on cosine similarities (SupCon,
        NT-Xent, circle, multi-similarity) that is ``distance="cosine"``. On unit-norm rows, Euclidean and cosine
        rank alike (‖x − y‖² = 2 − 2 cos(x, y)), so the default matters only for rows of different norms.
    average : {"queries", "classes"}, default "queries"
        ``"queries"``: the mean over the queries; ``"classes"``: the mean over the queries' classes of each
        class's mean (PML's ``avg_of_avgs=True``). Queries with no relevant reference are left out of both.
    chunk_size : int, optional
        Queries per chunk: memory is O(chunk_size · n_references). Default: about 2²¹ distances per chunk.
        Results do not depend on it.
    use_faiss : bool, default False
        Find the nearest neighbours with faiss's exact flat index (the ``[faiss]`` extra; an ImportError names it
        where faiss is missing) instead of NumPy. faiss ranks in float32; its L2 index (the Euclidean distances)
        breaks ties by the lowest index too, so the results are the same except between distances closer than
        float32's rounding. For ``"cosine"`` faiss's inner-product index is used, which may order exact ties
        differently (tests/test_metrics.py checks cosine on data without ties); so is it for ``"dot"``, on the
        rows as they are. ``"snr"`` has no faiss index: a ValueError. faiss gets the rows scaled by a power of two,
        so this holds at any magnitude of the rows; rows whose magnitudes span more than about 2^63 (their squared
        distances below float32's range) are refused, a ValueError naming the argument.

    Returns
    -------
    metrics : dict of str to float
        ``"precision_at_1"``, ``"recall_at_{k}"`` for each ``k`` in the order given, ``"r_precision"``,
        ``"mean_average_precision_at_r"`` and ``"mean_reciprocal_rank"``, each in [0, 1].

    Raises
    ------
    ValueError
        Where no query has a relevant reference (the metrics are undefined), and for invalid arguments.

    Notes
    -----
    Recall@K is the retrieval literature's (Jégou et al. 2011; Song et al. 2016): the fraction of queries with a
    relevant reference among their K nearest, so Recall@1 = precision@1. It is not PML's ``precision_at_k``
    (the fraction of the K nearest that are relevant), which PML's ``AccuracyCalculator`` does not report for
    K > 1. The mean reciprocal rank runs over the whole ranking (PML's with ``k=None``, its default; with a
    smaller ``k``, PML counts queries with no relevant reference among their k nearest as 0). PML's
    ``k="max_bin_count"`` gives the same R-precision and MAP@R.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import retrieval_metrics
    >>> x = np.array([[0.0], [0.4], [0.1], [1.0], [1.2]])
    >>> metrics = retrieval_metrics(x, np.array([0, 0, 1, 1, 1]), k=(1, 2))
    >>> {name: round(value, 4) for name, value in metrics.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'precision_at_1': 0.4, 'recall_at_1': 0.4, 'recall_at_2': 0.8, 'r_precision': 0.2,
     'mean_average_precision_at_r': 0.2, 'mean_reciprocal_rank': 0.6667}
    """
    x, labels, ref, ref_labels, self_excluded, chunk_size = _check_inputs(
        embeddings, labels, ref_embeddings, ref_labels, ref_includes_query, distance, average, chunk_size
    )
    use_faiss = check_bool(use_faiss, "use_faiss")
    k = _check_k_values(k, ref.shape[0] - int(self_excluded))
    _, query_class, r = _relevant_counts(labels, ref_labels, self_excluded)
    if not (r > 0).any():
        which = "another sample of its class" if ref_embeddings is None else "a reference of its class, in ref_labels"
        raise ValueError(
            f"labels must give some query a relevant reference ({which}); got none, so every retrieval metric is "
            "undefined"
        )
    r, first, r_precision, average_precision = _per_query_scores(
        x, labels, ref, ref_labels, self_excluded, distance, chunk_size, use_faiss
    )

    def mean(values):
        return _average(values.astype(np.float64), r, query_class, average)

    reciprocal = np.divide(1.0, first, out=np.zeros(first.size), where=first > 0)
    metrics = {"precision_at_1": mean(first == 1)}
    metrics.update({f"recall_at_{v}": mean((first >= 1) & (first <= v)) for v in k})
    metrics["r_precision"] = mean(r_precision)
    metrics["mean_average_precision_at_r"] = mean(average_precision)
    metrics["mean_reciprocal_rank"] = mean(reciprocal)
    return metrics


def _one_metric(name, embeddings, labels, **options):
    """The metric ``name`` of :func:`retrieval_metrics` with these options."""
    return retrieval_metrics(embeddings, labels, **options)[name]


@array_route
def recall_at_k(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    ref_includes_query=False,
    k=1,
    distance="euclidean",
    average="queries",
    chunk_size=None,
    use_faiss=False,
):
    """Recall@K: the fraction of queries with a relevant reference (one of their class) among their k nearest.

    Leave-one-out by default: every sample is a query against all the others. Ties in distance go to the lowest
    index. Queries whose class has no other sample are left out (as in PML); see :func:`retrieval_metrics`.

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, ref_includes_query : arrays and bool
        The queries and references, as for :func:`retrieval_metrics`.
    k : int, default 1
        How many nearest references count, in [1, the number of references a query is ranked against]. One k:
        ``retrieval_metrics(..., k=(1, 5))`` gives Recall@K for several from one search.
    distance, average, chunk_size, use_faiss : options
        As for :func:`retrieval_metrics`. The default distance is Euclidean; for embeddings trained with a loss on
        cosine similarities (SupCon, NT-Xent, circle, multi-similarity) ``distance="cosine"`` is the matching one
        (on unit-norm rows both rank alike).

    Returns
    -------
    recall : float
        In [0, 1]; Recall@1 equals :func:`precision_at_1`.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import recall_at_k
    >>> recall_at_k(np.array([[0.0], [0.1], [5.0], [5.2]]), np.array([0, 0, 1, 0]))
    0.6666666666666666
    """
    if np.ndim(k) > 0:
        raise TypeError(
            f"k must be an integer: recall_at_k gives one Recall@K; got {type(k).__name__} {k!r}: "
            f"retrieval_metrics(embeddings, labels, k={k!r}) gives each of several at once"
        )
    k = check_count(k, "k")
    return _one_metric(
        f"recall_at_{k}",
        embeddings,
        labels,
        k=k,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        ref_includes_query=ref_includes_query,
        distance=distance,
        average=average,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
    )


@array_route
def precision_at_1(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    ref_includes_query=False,
    distance="euclidean",
    average="queries",
    chunk_size=None,
    use_faiss=False,
):
    r"""Precision@1: the fraction of queries whose nearest reference is relevant (of their class).

    pytorch-metric-learning's ``AccuracyCalculator`` ``"precision_at_1"``, ties in distance included; queries with no
    relevant reference are left out (see :func:`retrieval_metrics`).

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, ref_includes_query : arrays and bool
        The queries and references, as for :func:`retrieval_metrics`.
    distance, average, chunk_size, use_faiss : options
        As for :func:`retrieval_metrics`. The default distance is Euclidean; for embeddings trained with a loss on
        cosine similarities (SupCon, NT-Xent, circle, multi-similarity) ``distance="cosine"`` is the matching one
        (on unit-norm rows both rank alike).

    Returns
    -------
    precision_at_1 : float
        In [0, 1].

    Notes
    -----
    Equals :func:`recall_at_k` with ``k=1``.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.metrics import precision_at_1
    >>> x, labels = np.array([[0.0], [0.4], [0.1], [1.0], [1.2]]), np.array([0, 0, 1, 1, 1])
    >>> round(precision_at_1(x, labels), 4)
    0.4
    """
    return _one_metric(
        "precision_at_1",
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        ref_includes_query=ref_includes_query,
        distance=distance,
        average=average,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
    )


@array_route
def r_precision(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    ref_includes_query=False,
    distance="euclidean",
    average="queries",
    chunk_size=None,
    use_faiss=False,
):
    r"""R-precision: per query, the fraction of its R nearest references that are relevant (R: how many are).

    pytorch-metric-learning's ``AccuracyCalculator`` ``"r_precision"``, ties in distance included; queries with no
    relevant reference are left out (see :func:`retrieval_metrics`).

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, ref_includes_query : arrays and bool
        The queries and references, as for :func:`retrieval_metrics`.
    distance, average, chunk_size, use_faiss : options
        As for :func:`retrieval_metrics`. The default distance is Euclidean; for embeddings trained with a loss on
        cosine similarities (SupCon, NT-Xent, circle, multi-similarity) ``distance="cosine"`` is the matching one
        (on unit-norm rows both rank alike).

    Returns
    -------
    r_precision : float
        In [0, 1].

    Notes
    -----
    Musgrave et al. (2020), *A metric learning reality check*, section 3.2.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.metrics import r_precision
    >>> x, labels = np.array([[0.0], [0.4], [0.1], [1.0], [1.2]]), np.array([0, 0, 1, 1, 1])
    >>> round(r_precision(x, labels), 4)
    0.2
    """
    return _one_metric(
        "r_precision",
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        ref_includes_query=ref_includes_query,
        distance=distance,
        average=average,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
    )


@array_route
def mean_average_precision_at_r(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    ref_includes_query=False,
    distance="euclidean",
    average="queries",
    chunk_size=None,
    use_faiss=False,
):
    r"""MAP@R: per query, the average precision over its R nearest references (R: how many are relevant).

    pytorch-metric-learning's ``AccuracyCalculator`` ``"mean_average_precision_at_r"``, ties in distance included;
    queries with no relevant reference are left out (see :func:`retrieval_metrics`).

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, ref_includes_query : arrays and bool
        The queries and references, as for :func:`retrieval_metrics`.
    distance, average, chunk_size, use_faiss : options
        As for :func:`retrieval_metrics`. The default distance is Euclidean; for embeddings trained with a loss on
        cosine similarities (SupCon, NT-Xent, circle, multi-similarity) ``distance="cosine"`` is the matching one
        (on unit-norm rows both rank alike).

    Returns
    -------
    mean_average_precision_at_r : float
        In [0, 1].

    Notes
    -----
    Per query, :math:`\frac{1}{R} \sum_{j \le R} \mathrm{rel}(j) P(j)`, :math:`P(j)` the precision among the j
    nearest: a relevant reference missing from the R nearest counts 0 (Musgrave et al. 2020).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.metrics import mean_average_precision_at_r
    >>> x, labels = np.array([[0.0], [0.4], [0.1], [1.0], [1.2]]), np.array([0, 0, 1, 1, 1])
    >>> round(mean_average_precision_at_r(x, labels), 4)
    0.2
    """
    return _one_metric(
        "mean_average_precision_at_r",
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        ref_includes_query=ref_includes_query,
        distance=distance,
        average=average,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
    )


@array_route
def mean_reciprocal_rank(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    ref_includes_query=False,
    distance="euclidean",
    average="queries",
    chunk_size=None,
    use_faiss=False,
):
    r"""The mean reciprocal rank: per query, 1 / the rank of its nearest relevant reference, over the whole ranking.

    pytorch-metric-learning's ``AccuracyCalculator`` ``"mean_reciprocal_rank"``, ties in distance included;
    queries with no relevant reference are left out (see :func:`retrieval_metrics`).

    Parameters
    ----------
    embeddings, labels, ref_embeddings, ref_labels, ref_includes_query : arrays and bool
        The queries and references, as for :func:`retrieval_metrics`.
    distance, average, chunk_size, use_faiss : options
        As for :func:`retrieval_metrics`. The default distance is Euclidean; for embeddings trained with a loss on
        cosine similarities (SupCon, NT-Xent, circle, multi-similarity) ``distance="cosine"`` is the matching one
        (on unit-norm rows both rank alike).

    Returns
    -------
    mean_reciprocal_rank : float
        In [0, 1].

    Notes
    -----
    PML's with ``k=None`` (its default); with a smaller ``k`` PML scores 0 where no relevant reference is among
    the k nearest.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss.metrics import mean_reciprocal_rank
    >>> x, labels = np.array([[0.0], [0.4], [0.1], [1.0], [1.2]]), np.array([0, 0, 1, 1, 1])
    >>> round(mean_reciprocal_rank(x, labels), 4)
    0.6667
    """
    return _one_metric(
        "mean_reciprocal_rank",
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        ref_includes_query=ref_includes_query,
        distance=distance,
        average=average,
        chunk_size=chunk_size,
        use_faiss=use_faiss,
    )
