"""WARP, the Weighted Approximate-Rank Pairwise loss of WSABIE (Weston, Bengio, Usunier 2011): for each query and
each of its positive items, sample negatives until one violates the margin, estimate the positive's rank from
the number of draws that took, and weight the violator's hinge by a function of that rank.

:func:`warp_loss` takes a score matrix (queries × items) and a boolean relevance matrix; :func:`warp_embedding_loss`
is the common dot-product model, scores = Q·Iᵀ, with gradients for both embedding sets; :func:`relevance_matrix`
builds the relevance matrix from per-query index lists. The sampling loop is the kernels' ``warp_violators``; its
scheme (a counter-based Fisher–Yates shuffle, the same in every backend and for any thread count) is documented in
``metricloss._kernels.numpy.warp``. Each query's terms read its own row of scores only, so
:func:`warp_embedding_loss` runs on the row-block engine (``metricloss._batch``), in blocks of query rows against
every item; the pairs' seeds are drawn for all of them at once, so that the draws do not depend on the blocks.
"""

from typing import NamedTuple

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, labelled_batch
from .._kernels import get_kernels
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import (
    check_count,
    check_embeddings,
    check_float_array,
    check_index_lists,
    check_margin,
    check_option,
    check_relevance,
    check_rng,
    check_same_width,
    finite_or_refused,
)

WARP_SAMPLINGS = ("random", "index", "exact")
WARP_WEIGHTINGS = ("harmonic", "log")


def _rank_weights(weighting, n_items):
    """L(k) for k = 0..n_items: the harmonic number H_k = Σ_{j<=k} 1/j (the paper's α_j = 1/j), or LightFM's
    ln max(1, k). L(0) = 0."""
    k = np.arange(n_items + 1, dtype=np.float64)
    if weighting == "harmonic":
        return np.concatenate([[0.0], np.cumsum(1.0 / k[1:])])
    return np.log(np.maximum(k, 1.0))


class _Pairs(NamedTuple):
    """The (query, positive) pairs in row-major order: query q's positive items are positives[offsets[q]:offsets[q +
    1]]; with ``shuffled``, pair k draws in the order that seeds[k] shuffles (else by increasing item index)."""

    positives: np.ndarray
    offsets: np.ndarray
    seeds: np.ndarray
    shuffled: bool

    @classmethod
    def of(cls, relevance, rng):
        """The pairs of a relevance matrix, one vectorised pass over it, each with a seed drawn from ``rng`` (None:
        no seeds, no shuffling). The seeds are drawn at once for every pair, so that a block of queries draws the
        same whatever the blocks."""
        n_queries, n_items = relevance.shape
        queries, positives = np.divmod(np.flatnonzero(relevance), n_items)
        offsets = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(queries, minlength=n_queries), out=offsets[1:])
        n_pairs = positives.size
        seeds = np.zeros(0, dtype=np.int64) if rng is None else rng.integers(0, 2**63, size=n_pairs, dtype=np.int64)
        return cls(positives, offsets, seeds, rng is not None)

    def of_queries(self, rows):
        """The pairs of the queries ``rows`` (a slice), their offsets counted from the first of them."""
        first, stop = self.offsets[rows.start], self.offsets[rows.stop]
        offsets = self.offsets[rows.start : rows.stop + 1] - first
        seeds = self.seeds[first:stop] if self.shuffled else self.seeds
        return _Pairs(self.positives[first:stop], offsets, seeds, self.shuffled)


def _sampled_terms(a, b, dot, relevance, pairs, margin, max_trials, weights, kernels):
    """The sampled loss's terms for the pairs of the queries of ``relevance``'s rows (all, or a block of them), one
    per pair whose draws found a violator, and their cotangent on the score matrix, unweighted, as entries
    (rows[k], cols[k]) ↦ g[k], rows counted from the first of these queries. The scores are the matrix ``a`` or,
    with ``dot``, the products a_q · b_j, computed only for the items drawn."""
    n_queries, n_items = relevance.shape
    n_pairs = pairs.positives.size
    violators, trials, hinges = np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs)
    limit = n_items if max_trials is None else max_trials
    offsets, positives = pairs.offsets, pairs.positives
    kernels.warp_violators(
        a, b, dot, relevance, offsets, positives, pairs.seeds, margin, limit, pairs.shuffled, violators, trials, hinges
    )
    found = violators >= 0  # a pair without a violator in its draws contributes 0
    per_query = np.diff(offsets)
    queries = np.repeat(np.arange(n_queries), per_query)[found]
    rank = (n_items - per_query[queries]) // trials[found]  # ⌊n_q / T⌋ >= 1: the paper's ⌊(Y − 1)/N⌋
    terms = weights[rank] * hinges[found]  # L(rank)·(m − s⁺ + s⁻)
    # ℓ = L(rank)·(m − s⁺ + s⁻) with the rank held constant: ∂ℓ/∂s⁺ = −L(rank), ∂ℓ/∂s⁻ = +L(rank).
    rows, cols = np.concatenate([queries, queries]), np.concatenate([positives[found], violators[found]])
    return terms, rows, cols, np.concatenate([-weights[rank], weights[rank]])


def _exact_terms(scores, relevance, pairs, margin, weights, kernels):
    """The exact loss's terms for the pairs of the queries of ``scores``'s rows (all, or a block of them), one per
    pair, and their dense cotangent on those rows of the score matrix, unweighted (float64)."""
    n_pairs = pairs.positives.size
    ranks, hinge_sums, g = np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs), np.empty(scores.shape)
    # The kernel writes ∂ℓ/∂s: −L(r) at the positive and +L(r)/r at each of the r violators (r held constant).
    kernels.warp_exact(scores, relevance, pairs.offsets, pairs.positives, margin, weights, ranks, hinge_sums, g)
    return np.divide(weights[ranks] * hinge_sums, ranks, out=np.zeros(n_pairs), where=ranks > 0), g


def _checked_options(margin, sampling, max_trials, weighting, reduction, rng):
    margin = check_margin(margin)
    check_option(sampling, "sampling", WARP_SAMPLINGS)
    if max_trials is not None:
        max_trials = check_count(max_trials, "max_trials")
        if sampling == "exact":
            raise ValueError(
                f"max_trials limits the draws of sampling='random' or 'index'; sampling='exact' draws none: leave "
                f"max_trials=None (got {max_trials})"
            )
    check_option(weighting, "weighting", WARP_WEIGHTINGS)
    check_option(reduction, "reduction", REDUCTIONS)
    return margin, max_trials, check_rng(rng)


def _queries_against_items(queries, items, relevance, exact, backend):
    """The checked queries against the items, on the dot product, as the engine's batch (in blocks of query rows),
    and the checked relevance matrix. Classes play no part (the relevance matrix says which items are a query's
    positives): each query is a class of its own, which no item has. Only the exact form reads the scores S."""
    queries = check_embeddings(queries, "queries")
    items = check_same_width(check_embeddings(items, "items"), "items", queries, "queries")
    shape = (queries.shape[0], items.shape[0])
    relevance = check_relevance(relevance, shape, against="(queries rows, items rows)")
    batch = labelled_batch(
        queries,
        np.arange(shape[0]),
        similarity="dot",
        ref_embeddings=items,
        ref_labels=np.full(shape[1], -1),
        backend=backend,
        name="queries",
        ref_name="items",
        in_blocks=True,
        matrix=exact,
    )
    return batch, relevance


@array_route
@finite_or_refused
def warp_loss(
    scores,
    relevance,
    *,
    margin=1.0,
    sampling="random",
    max_trials=None,
    weighting="harmonic",
    reduction="sum",
    backend=None,
    rng=None,
):
    r"""The WARP loss (WSABIE) on a score matrix: each (query, positive) pair draws its query's negatives
    uniformly, without replacement, until one violates the margin, and pays that violator's hinge weighted by a
    function of the positive's estimated rank.

    .. math::

        \ell_{qp} = L\!\left(\left\lfloor \frac{n_q}{T_{qp}} \right\rfloor\right)\,[m - s_{qp} + s_{qv}]_+,
        \qquad L(k) = \sum_{j=1}^{k} \frac{1}{j},
        \qquad \mathcal{L} = \sum_q \sum_{p \in P_q} \ell_{qp} \;\; (\text{reduction } \texttt{"sum"})

    where P_q is query q's set of positive items, n_q = N − ``|P_q|`` its number of negatives, v the first negative
    drawn with s_qv > s_qp − m and T_qp the number of negatives drawn, v included. ⌊n_q/T⌋ estimates the number of
    violating negatives (the paper's ⌊(Y − 1)/N⌋: with one positive per query, n_q = Y − 1). A pair whose draws
    find no violator (none exists, or ``max_trials`` draws pass first) contributes 0. ``"mean"`` divides by the
    number of (query, positive) pairs, ``"mean_nonzero"`` by the number of terms > 0.

    ``sampling`` picks the order of the draws:

    ============  ==========================================================================================
    sampling      the scan of each pair's negatives
    ============  ==========================================================================================
    ``"random"``  a uniformly random order, drawn from ``rng`` (the paper; one seed per pair, then a
                  counter-based Fisher–Yates shuffle: the same result in every backend, for any thread count)
    ``"index"``   increasing item index: deterministic, for tests and teaching
    ``"exact"``   no sampling: the rank is the number r of violators, and the loss is the paper's expectation
                  over a uniformly chosen violator, ℓ_qp = L(r)/r · Σ_{j ∉ P_q} [m − s_qp + s_qj]₊ (0 if r = 0).
                  O(N) per positive of each query: for small problems
    ============  ==========================================================================================

    Gradient, with the rank held constant (it is piecewise constant in the scores; this is the paper's
    (sub)gradient): ∂ℓ/∂s_qp = −w·L(rank) and ∂ℓ/∂s_qv = +w·L(rank), with w the reduction's weight; every other
    entry is 0. In the exact form, ∂ℓ/∂s_qp = −w·L(r) and each violator j gets +w·L(r)/r.

    Parameters
    ----------
    scores : array of shape (Q, N), float32 or float64
        Query q's score of item j; higher ranks higher.
    relevance : bool array of shape (Q, N)
        True where item j is a positive of query q; every other item is a negative of q. From index lists:
        :func:`relevance_matrix`.
    margin : float >= 0, default 1.0
        m. A negative violates iff m − s⁺ + s⁻ > 0.
    sampling : {"random", "index", "exact"}, default "random"
    max_trials : int >= 1, optional
        The most negatives a pair draws (the paper's and LightFM's ``max_sampled``); default: all of the query's
        negatives, so that a violator is always found when one exists. Not with ``sampling="exact"``.
    weighting : {"harmonic", "log"}, default "harmonic"
        L: the paper's harmonic L(k) = Σ_{j<=k} 1/j, or LightFM's L(k) = ln k (which gives rank 1 no weight).
    reduction : {"sum", "mean", "mean_nonzero"}, default "sum"
        The paper sums over the training pairs.
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the sampling and the exact
        ranks on an NVIDIA GPU, with the same draws (``docs/cuda.md``).
    rng : numpy.random.Generator, int or None
        The randomness of ``sampling="random"``: a Generator (advanced by one draw of one seed per pair), an int
        seed (the same draws at every call), or None (fresh entropy). Unused by the other samplings.

    Returns
    -------
    value : float
    grad : array of shape (Q, N), the dtype of ``scores``

    Notes
    -----
    The violator found is uniform among the r violators and T has mean (n + 1)/(r + 1), so ⌊n/T⌋ estimates r and
    the sampled loss estimates the exact form. The cost is one pass over the relevance matrix plus the draws,
    (n + 1)/(r + 1) expected per pair: fast while positives are ranked badly, up to n per pair (cap it with
    ``max_trials``) once they are ranked well. Ties: a negative scoring exactly s⁺ − m does not violate.

    *LightFM* (``LightFM(loss="warp")``, v1.17, read from its ``_lightfm_fast`` source) is this loss with
    ``margin=1, weighting="log"`` on the scores of a factorisation model (:func:`warp_embedding_loss`, with its
    biases as an extra column), trained by Hogwild SGD one (user, item) interaction at a time. With
    ``learning_schedule="adagrad"`` (accumulators starting at 1) its first step on an interaction is exactly
    −learning_rate × this gradient: tests/test_warp.py reproduces it for the user and item embeddings and the item
    biases. It differs in the sampling: it draws items with replacement from all N items, a draw of a positive
    counts as a trial, and its rank estimate is ⌊(N − 1)/T⌋ whatever the number of positives (ours is ⌊n_q/T⌋:
    the same with one positive per query); it clips weight·L at 10 (``MAX_LOSS``: from ⌊(N − 1)/T⌋ > e¹⁰ ≈ 22026),
    its ``max_sampled`` defaults to 10 and its margin is fixed at 1. Tests pin the numerator and the clip (its draws,
    from its own generator, cannot be replayed).
    pytorch-metric-learning and TF-Addons have no WARP loss.

    The score matrix is the caller's, whole: this form runs as one block (:func:`warp_embedding_loss`, which
    computes its scores, runs in blocks of query rows).

    See Also
    --------
    metricloss.textbook.warp_loss : the formula as loops, the gradient term by term.

    References
    ----------
    J. Weston, S. Bengio, N. Usunier. WSABIE: Scaling Up To Large Vocabulary Image Annotation. IJCAI 2011.
    M. Kula. Metadata Embeddings for User and Item Cold-start Recommendations (LightFM). CBRecSys 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import warp_loss
    >>> scores = np.array([[2.0, 0.5, 1.8, -1.0, 1.2]])
    >>> relevance = np.array([[True, False, False, False, False]])
    >>> value, grad = warp_loss(scores, relevance, sampling="index")
    >>> value  # item 1 satisfies the margin, item 2 violates at trial 2: L(⌊4/2⌋) · (1 − 2 + 1.8) = 1.5 · 0.8
    1.2
    >>> grad
    array([[-1.5,  0. ,  1.5,  0. ,  0. ]])
    >>> value, grad = warp_loss(scores, relevance, sampling="exact")
    >>> value  # violators 2 and 4: L(2)/2 · (0.8 + 0.2)
    0.75
    """
    scores = check_float_array(scores, "scores", ndim=2)
    relevance = check_relevance(relevance, scores.shape)
    margin, max_trials, rng = _checked_options(margin, sampling, max_trials, weighting, reduction, rng)
    kernels = get_kernels(backend)
    weights = _rank_weights(weighting, scores.shape[1])
    pairs = _Pairs.of(relevance, rng if sampling == "random" else None)
    n_pairs = pairs.positives.size
    if sampling == "exact":
        terms, g = _exact_terms(scores, relevance, pairs, margin, weights, kernels)
        weight = weight_from_counts(reduction, n_pairs, np.count_nonzero(terms > 0))
        g *= weight
        return weight * float(np.sum(terms)), g.astype(scores.dtype)
    terms, rows, cols, g = _sampled_terms(scores, scores, False, relevance, pairs, margin, max_trials, weights, kernels)
    weight = weight_from_counts(reduction, n_pairs, np.count_nonzero(terms > 0))
    grad = np.zeros(scores.shape, dtype=scores.dtype)
    np.add.at(grad, (rows, cols), (weight * g).astype(scores.dtype))  # one violator may serve several positives
    return weight * float(np.sum(terms)), grad


@array_route
@finite_or_refused
def warp_embedding_loss(
    queries,
    items,
    relevance,
    *,
    margin=1.0,
    sampling="random",
    max_trials=None,
    weighting="harmonic",
    reduction="sum",
    backend=None,
    rng=None,
):
    r""":func:`warp_loss` for the dot-product model of WSABIE and LightFM: the scores are s_qj = x_q · y_j, with
    gradients for both the query and the item embeddings.

    .. math::

        \ell_{qp} = L\!\left(\left\lfloor \frac{n_q}{T_{qp}} \right\rfloor\right)\,
        [m - x_q \cdot y_p + x_q \cdot y_v]_+

    Gradient: the score cotangent of :func:`warp_loss` (−w·L at (q, p), +w·L at (q, v)) pulled back through
    s = X Yᵀ: ∂/∂x_q += w·L·(y_v − y_p), ∂/∂y_p −= w·L·x_q, ∂/∂y_v += w·L·x_q.

    The sampled forms never build the Q×N score matrix, which is what lets WSABIE scale: the kernel computes
    x_q · y_j (in float64) for each positive and each item it draws, and the gradient, two entries per pair, is
    pulled back pair by pair, O(pairs·F). (Where the pairs are more than Q·N/F, through the dense GEMMs instead.)
    The exact form computes every score: one Q×N GEMM, and two for the pullback.

    A query's terms read its own row of scores only, so the loss runs in blocks of query rows, each against every
    item, when its Q×N matrix exceeds the working memory (:func:`metricloss.set_config`): the exact form computes
    one block's scores at a time, and either form pulls each block's cotangent back before the next. Each pair's
    seed is drawn for every pair at once: the draws, and the results, are those of one block.

    Parameters
    ----------
    queries : array of shape (Q, F), float32 or float64
        X, the query embeddings (the paper's image embeddings; LightFM's user representations).
    items : array of shape (N, F), float32 or float64
        Y (the paper's label embeddings; LightFM's item representations).
    relevance : bool array of shape (Q, N)
        True where item j is a positive of query q.
    margin : float >= 0, default 1.0
        m, as in :func:`warp_loss`.
    sampling : {"random", "index", "exact"}, default "random"
        As in :func:`warp_loss`.
    max_trials : int >= 1, optional
        As in :func:`warp_loss`.
    weighting : {"harmonic", "log"}, default "harmonic"
    reduction : {"sum", "mean", "mean_nonzero"}, default "sum"
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the sampling and the exact
        ranks on an NVIDIA GPU, with the same draws (``docs/cuda.md``).
    rng : numpy.random.Generator, int or None
        As in :func:`warp_loss`.

    Returns
    -------
    value : float
    grad : tuple (grad_queries, grad_items), each shaped and typed like its input

    Notes
    -----
    The value equals :func:`warp_loss` on the scores ``queries @ items.T`` (computed there by a
    GEMM, here dot by dot in float64: the same up to rounding). *LightFM*: its biases are an extra column, 1 in
    every query row and the item bias in the item rows; see :func:`warp_loss`'s Notes for the settings that
    reproduce ``LightFM(loss="warp")`` and where it differs.

    See Also
    --------
    metricloss.textbook.warp_embedding_loss : the formula as loops, the gradient term by term.

    References
    ----------
    J. Weston, S. Bengio, N. Usunier. WSABIE: Scaling Up To Large Vocabulary Image Annotation. IJCAI 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import warp_embedding_loss
    >>> queries = np.array([[1.0, 0.0]])
    >>> items = np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    >>> value, (g_queries, g_items) = warp_embedding_loss(queries, items, np.array([[True, False, False]]),
    ...                                                    sampling="index")
    >>> value  # scores (1, 2, −1): item 1 violates at the first draw, rank ⌊2/1⌋ = 2: 1.5 · (1 − 1 + 2)
    3.0
    >>> g_queries, g_items  # 1.5 · (y_1 − y_0) and ∓1.5 · x_0
    (array([[ 1.5, -1.5]]), array([[-1.5,  0. ],
           [ 1.5,  0. ],
           [ 0. ,  0. ]]))
    """
    exact = sampling == "exact"
    batch, relevance = _queries_against_items(queries, items, relevance, exact, backend)
    margin, max_trials, rng = _checked_options(margin, sampling, max_trials, weighting, reduction, rng)
    pairs = _Pairs.of(relevance, rng if sampling == "random" else None)
    weights = _rank_weights(weighting, relevance.shape[1])
    terms, grads = [], GradientSum(batch)
    for block in batch.blocks():  # a query's pairs are its own row's: the same draws, from their seeds, in any blocks
        rows = slice(block.start, block.start + block.x.shape[0])
        block_pairs, kernels = pairs.of_queries(rows), block.kernels
        if exact:  # every score of the block's queries: one GEMM, and the dense pullback (two)
            block_terms, g = _exact_terms(block.s, relevance[rows], block_pairs, margin, weights, kernels)
            grads.pull(block, g.astype(block.s.dtype, copy=False))
        else:  # the kernel computes x_q · y_j for the items it draws only: no score matrix
            block_terms, *entries = _sampled_terms(
                block.x, block.ref, True, relevance[rows], block_pairs, margin, max_trials, weights, kernels
            )
            grads.pull_pairs(block, *entries)  # two entries per pair: pair by pair, or where many, by the GEMMs
        terms.append(block_terms)
    terms = np.concatenate(terms)
    weight = weight_from_counts(reduction, pairs.positives.size, np.count_nonzero(terms > 0))
    return weight * float(np.sum(terms)), grads.result(weight)


@array_route
def relevance_matrix(positives, n_items):
    """The boolean relevance matrix of :func:`warp_loss` from each query's positive item indices.

    Parameters
    ----------
    positives : list of 1-D int arrays, or int array of shape (Q, P) padded with -1
        Query q's positive items (repeats are harmless).
    n_items : int >= 1
        N, the number of items (columns).

    Returns
    -------
    relevance : bool array of shape (Q, N)

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import relevance_matrix
    >>> relevance_matrix([[0, 2], [], [1]], 3)
    array([[ True, False,  True],
           [False, False, False],
           [False,  True, False]])
    >>> relevance_matrix(np.array([[0, 2], [1, -1]]), 3).sum(axis=1)
    array([2, 1])
    """
    n_items = check_count(n_items, "n_items")
    rows = check_index_lists(positives, n_items)
    relevance = np.zeros((len(rows), n_items), dtype=bool)
    queries = np.repeat(np.arange(len(rows)), [row.size for row in rows])
    relevance[queries, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)] = True
    return relevance
