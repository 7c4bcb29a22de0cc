"""Temperature-scaled cross-entropies on similarities (the InfoNCE family): each positive pair, or each anchor's
positives, against the anchor's negatives, through a softmax of the similarities divided by a temperature.

* :func:`ntxent_loss` — NT-Xent on a labelled batch as pytorch-metric-learning's ``NTXentLoss`` (one term per
  positive pair, the anchor's other positives left out of the denominator); SimCLR's two-view batch is the case of
  labels ``[0..N-1, 0..N-1]``;
* :func:`supcon_loss` — the supervised contrastive loss of Khosla et al. 2020 (L_out), one term per anchor;
* :func:`multiple_negatives_ranking_loss` — sentence-transformers' in-batch-negatives ranking loss on (anchor,
  positive) pairs, optionally with hard negatives and its symmetric variant.

Each builds the logits z = S/τ (or scale·S) from the B×R similarity matrix and uses the shared row-wise log-sum-exp
(:mod:`._logsumexp`): NT-Xent through :func:`logsumexp_rows` over each anchor's negatives and a softplus per
positive pair, SupCon and the ranking loss through :func:`softmax_cross_entropy_rows` (the N-pair loss's too). Each
anchor's terms read its own row of logits only, so each loss runs in blocks of anchor rows (the row-block engine of
:mod:`metricloss._batch`): a block's cotangent ∂L/∂S is written over its rows of S and pulled back, O(block·R)
memory, the whole batch being the one-block case; the symmetric ranking loss, whose backward direction is a
softmax over columns, exchanges O(N) column statistics in a first pass. No B×B×B anything
(pytorch-metric-learning's ``NTXentLoss`` compares every positive pair with every negative pair: O(B³)).
"""

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, candidate_masks, labelled_batch
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import (
    check_bool,
    check_embeddings,
    check_not_class_ids,
    check_option,
    check_same_shape,
    check_same_width,
    check_scalar,
    finite_or_refused,
    promote,
)
from ..distances import SIMILARITIES
from ._logsumexp import flush_subnormal, logsumexp_rows, masked, softmax_cross_entropy_rows
from .softmax import MAX_SCALE, _check_scale


def _check_temperature(value):
    """τ in [1/MAX_SCALE, MAX_SCALE]: the logits S/τ of cosine similarities then stay below 1e18 (see MAX_SCALE)."""
    return check_scalar(
        value, "temperature", low=1 / MAX_SCALE, high=MAX_SCALE, why=" (the similarities are divided by it)"
    )


def _ntxent_pair_terms(block, temperature):
    """The block's positive pairs' terms ℓ_ap = softplus(x_ap), x_ap = log Σ_n e^{z_an} − z_ap, and its cotangent
    G (unweighted, in units of 1/τ), written over its similarities."""
    rows, cols = block.positive_entries()  # the block's positive pairs (a, p), a counted from the block's start
    z = block.s  # the pullback does not read it: it becomes the logits, then the negatives' weights, then G
    z /= temperature
    positive_logits = z[rows, cols]
    weights = masked(z, candidate_masks(block)[1])  # the negatives' logits, then their softmax weights w
    top, rest = logsumexp_rows(weights)  # per anchor: log Σ_n e^{z_an} = top + log1p(rest) (−inf without any)
    # x_ap = (top_a − z_ap) + log1p(rest_a): top_a − z_ap is a difference of two floats of z's dtype, rounded
    # once; no LSE of size ~1/τ is formed and then cancelled against z_ap.
    x = top.astype(z.dtype)[rows] - positive_logits
    x += np.log1p(rest).astype(z.dtype)[rows]
    terms = np.logaddexp(0, x)  # ℓ_ap = softplus(x_ap) >= 0 (0 where the anchor has no negative: x = −inf)
    flush_subnormal(terms)  # as under flush-to-zero (jax, TensorFlow): a term below the dtype's range is 0
    sigma = np.exp(x - terms)  # σ(x) = e^{x − softplus(x)}: in (0, 1]
    flush_subnormal(sigma)
    # G_an = w_an Σ_p σ(x_ap) on the negatives, G_ap = −σ(x_ap) on the positives (disjoint entries; w is 0 there).
    cotangent = weights
    cotangent *= np.bincount(rows, weights=sigma, minlength=z.shape[0]).astype(cotangent.dtype)[:, None]
    cotangent[rows, cols] = -sigma
    flush_subnormal(cotangent)
    return terms, cotangent


@array_route
@finite_or_refused
def ntxent_loss(
    embeddings,
    labels,
    *,
    temperature=0.07,
    similarity="cosine",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""NT-Xent (normalised temperature-scaled cross-entropy) on a labelled batch: every positive pair (a, p) against
    the anchor's negatives.

    .. math::

        L = \frac{1}{|\mathcal P|} \sum_{(a, p) \in \mathcal P}
            -\log \frac{e^{S_{ap}/\tau}}{e^{S_{ap}/\tau} + \sum_{n \in N_a} e^{S_{an}/\tau}}

    𝒫 the ordered positive pairs (same label; within one batch a ≠ p, so (a, p) and (p, a) are both terms), N_a the
    anchor's negatives (another label), S the cosine similarity by default. The anchor's *other* positives are not
    in the denominator: each pair is its own binary contest between its positive and the negatives. An anchor
    without negatives costs −log 1 = 0 for each of its pairs (which still count in the mean).

    Gradient: with x_ap = log Σ_n e^{z_an} − z_ap (z = S/τ), each term is softplus(x_ap), so ∂ℓ_ap/∂z_ap = −σ(x_ap)
    and ∂ℓ_ap/∂z_an = σ(x_ap) w_an, with w_an = e^{z_an} / Σ_n' e^{z_an'} the softmax over the negatives (the
    shared log-sum-exp's weights). Summing the terms of one anchor, G_ap = −σ(x_ap) and G_an = w_an Σ_p σ(x_ap):
    two B×R matrices on disjoint entries, no (pair × negative) array. ∂L/∂S = (ρ/τ) G (ρ the reduction's weight),
    pulled back once.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    temperature : float, default 0.07
        τ, in [1e-18, 1e18]: pytorch-metric-learning's default (SimCLR's paper tunes τ with the batch size: pass
        its value).
    similarity : {"cosine", "dot"}, default "cosine"
        S; SimCLR and pytorch-metric-learning's default are the cosine similarity.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the positive pairs: ``"mean"`` divides by their number; ``"mean_nonzero"`` by the number whose term
        is > 0 (not those of anchors without negatives, or of terms that underflow).
    ref_embeddings : array of shape (R, F), optional
        A reference set (query-vs-reference batches): the pairs are (query, reference), every reference a
        candidate. Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F), the dtype of ``embeddings``; with references the tuple
        (grad_embeddings, grad_ref_embeddings)

    Notes
    -----
    No positive pair (one sample, every class a singleton) gives ``(0.0, zeros)``, and so does a batch without a
    negative pair (every term −log 1). Each term is computed as softplus(x_ap) = log(1 + e^{x_ap}) with x_ap from
    the negatives' log-sum-exp shifted by their largest logit: no overflow for any τ (at τ = 0.01 in float32 the
    logits reach ±100) and no log of an underflowed ratio. It runs in blocks of anchor rows when its similarity
    matrix exceeds the working memory (:func:`metricloss.set_config`): each anchor's terms read its own row only.

    *pytorch-metric-learning*: ``NTXentLoss(temperature)`` with its default ``CosineSimilarity()`` and
    ``MeanReducer`` (the mean over positive pairs) is this loss; ``DotProductSimilarity(normalize_embeddings=False)``
    is ``similarity="dot"``, ``AvgNonZeroReducer`` ``reduction="mean_nonzero"``, ``SumReducer`` ``"sum"``, and
    ``loss(embeddings, labels, ref_emb=refs, ref_labels=ref_labels)`` the query-vs-reference form. Three
    differences: PML computes log(ratio + tiny) (tiny = float32's 1.2e-38), so where a pair's probability
    underflows its term stops at 87.3 in float32 (708 in float64) with a vanishing gradient, where here it is the
    exact −log of the ratio; PML returns 0 when each of its four index arrays (a₁, p, a₂, n) has at most one
    element (a query with one positive and one negative reference), here a loss like any other; and PML builds a
    (positive pairs × negative pairs) matrix, O(B³) memory (52 GB at B = 1024 on a GPU), here O(B²).

    *SimCLR* (Chen et al. 2020): two augmented views of N images, z the 2N projections, each view's positive the
    other view of its image and every other of the 2N − 2 samples a negative, averaged over the 2N anchors:
    ``ntxent_loss(np.concatenate([view1, view2]), np.tile(np.arange(N), 2), temperature=τ)``. With one positive
    per anchor, leaving the other positives out of the denominator changes nothing, and the mean over the 2N
    positive pairs is SimCLR's mean over anchors. (SupCon's paper writes the same loss as its "self-supervised"
    case.) The default τ here is PML's.

    See Also
    --------
    metricloss.textbook.ntxent_loss : the formula as loops, the gradient term by term.

    References
    ----------
    T. Chen, S. Kornblith, M. Norouzi, G. Hinton. A Simple Framework for Contrastive Learning of Visual
    Representations. ICML 2020.
    K. Sohn. Improved Deep Metric Learning with Multi-class N-pair Loss Objective. NeurIPS 2016.
    A. van den Oord, Y. Li, O. Vinyals. Representation Learning with Contrastive Predictive Coding. 2018 (InfoNCE).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import ntxent_loss
    >>> x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # three equal rows of class 0, one of class 1
    >>> value, grad = ntxent_loss(x, np.array([0, 0, 0, 1]), temperature=1.0)
    >>> round(value, 6)  # each of the 6 pairs: −log(e¹ / (e¹ + e⁰)) = log(1 + e⁻¹); the other positive left out
    0.313262
    >>> grad.shape
    (4, 2)
    """
    temperature = _check_temperature(temperature)
    check_option(reduction, "reduction", REDUCTIONS)
    batch = labelled_batch(
        embeddings,
        labels,
        similarity=similarity,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        in_blocks=True,
        block_matrices=2,
    )
    n_pairs = int(batch.candidate_counts()[0].sum())  # the positive pairs (a, p)
    if n_pairs == 0:
        return 0.0, batch.zeros()
    total, n_nonzero = 0.0, 0
    grads = GradientSum(batch)
    for block in batch.blocks():  # each anchor's terms read its own row of S only
        terms, cotangent = _ntxent_pair_terms(block, temperature)
        total += float(terms.sum(dtype=np.float64))
        n_nonzero += np.count_nonzero(terms)
        grads.pull(block, cotangent)
    if total == 0:  # no anchor with both a positive and a negative (or every term underflows)
        return 0.0, batch.zeros()
    weight = weight_from_counts(reduction, n_pairs, n_nonzero)
    return weight * total, grads.result(weight / temperature)


def _supcon_anchor_terms(batch, block, temperature):
    """The terms ℓ_a of the block's anchors with a positive, the softmax cross-entropy of the row of logits
    z_a = S_a/τ (k ≠ a) against t_ap = 1/``|P(a)|``, and the block's cotangent softmax(z_a) − t_a (unweighted, in units
    of 1/τ; 0 on the rows without positives), written over its similarities."""
    rows, cols = block.positive_entries()  # a counted from the block's start
    counts = np.bincount(rows, minlength=block.x.shape[0])
    anchors = counts > 0
    z = block.s  # the pullback does not read it: it becomes the logits, then the cotangent
    z /= temperature
    if batch.ref is None:  # k ≠ a: the anchor is no candidate of its own softmax
        own = np.arange(z.shape[0])
        z[own, block.start + own] = -np.inf
    losses = softmax_cross_entropy_rows(z, rows, cols, 1.0 / counts[rows])
    cotangent = z  # softmax(z_a) − t_a on every row
    cotangent[~anchors] = 0  # rows without positives are no term
    flush_subnormal(cotangent)
    return losses[anchors], cotangent


@array_route
@finite_or_refused
def supcon_loss(
    embeddings,
    labels,
    *,
    temperature=0.1,
    similarity="cosine",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""Supervised contrastive loss (Khosla et al. 2020, L_out): each anchor's positives, averaged outside the log,
    against every other sample of the batch.

    .. math::

        L = \frac{1}{|A|} \sum_{a \in A} \frac{-1}{|P(a)|} \sum_{p \in P(a)}
            \log \frac{e^{S_{ap}/\tau}}{\sum_{k \ne a} e^{S_{ak}/\tau}}

    P(a) the anchor's positives (same label, not itself), A the anchors with at least one positive (the others are
    left out, of the sum and of the mean's count), S the cosine similarity by default. The denominator runs over
    every other sample, positives included. Each anchor's term is the softmax cross-entropy of its row of logits
    z = S/τ (itself left out) against the target spread evenly over its positives, t_ap = 1/``|P(a)|``.

    Gradient: the cross-entropy's, ∂ℓ_a/∂z_ak = softmax(z_a)_k − t_ak, from the shared
    :func:`softmax_cross_entropy_rows` (which the N-pair loss uses too); ∂L/∂S = (ρ/τ) G with ρ the reduction's
    weight, pulled back once.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    temperature : float, default 0.1
        τ, in [1e-18, 1e18]: the paper's and pytorch-metric-learning's default.
    similarity : {"cosine", "dot"}, default "cosine"
        S; the paper normalises the projections (cosine).
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the anchors with a positive: ``"mean"`` divides by their number ``|A|``; ``"mean_nonzero"`` (PML's
        default) by the number whose term is > 0 (an anchor's term is 0 only when all its candidates are
        positives with equal similarities, e.g. one positive and no negative).
    ref_embeddings : array of shape (R, F), optional
        A reference set: the anchors are the queries, P(a) the references of their label, and the denominator
        runs over every reference. Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F), the dtype of ``embeddings``; with references the tuple
        (grad_embeddings, grad_ref_embeddings)

    Notes
    -----
    No anchor with a positive (one sample, every class a singleton) gives ``(0.0, zeros)``. A batch of one class
    costs > 0 (each anchor's positives compete among themselves): log(B − 1) when all rows are equal. Each term is
    computed as log1p(Σ_{k ≠ top} e^{z_ak − m_a}) + (1/``|P(a)|``) Σ_p (m_a − z_ap) with m_a the row's largest logit,
    two non-negative parts: no overflow at any τ, and a small loss keeps its digits. It runs in blocks of anchor
    rows when its similarity matrix exceeds the working memory (:func:`metricloss.set_config`): each anchor's term
    reads its own row only.

    *pytorch-metric-learning*: ``SupConLoss(temperature)`` with its default ``CosineSimilarity()`` is this loss
    with ``reduction="mean_nonzero"`` (its default ``AvgNonZeroReducer``; ``"mean"`` here differs only where an
    anchor's term is exactly 0), ``MeanReducer`` is ``reduction="mean"`` over *every* anchor (those without
    positives count as 0 terms there: not reproduced), ``ref_emb=`` the query-vs-reference form. Two differences:
    PML returns 0 for a batch without any negative pair (one class), where the formula above (and the paper's
    code) gives each anchor's positive-vs-positive term; and like its other pair losses it returns 0 when each of
    its index arrays has at most one element (a query with one positive and one negative reference).

    *The paper's code* (HobbitLong/SupContrast, ``SupConLoss(temperature=0.07, base_temperature=0.07)``, views
    stacked as ``[B, n_views, F]``) is this loss on the B·n_views samples with each view labelled by its image's
    class, scaled by τ / base_temperature (1 at its defaults): its ``contrast_mode="all"`` averages over every
    anchor (the paper's L_out: each has its other views as positives; with one view a singleton's 0/0 is NaN
    there, left out here); it takes dot products of the features its network has normalised (cosine here)
    and adds 1e-9 inside the log (tests/test_infonce.py transcribes it in torch).

    See Also
    --------
    metricloss.textbook.supcon_loss : the formula as loops, the gradient term by term.

    References
    ----------
    P. Khosla, P. Teterwak, C. Wang, A. Sarna, Y. Tian, P. Isola, A. Maschinot, C. Liu, D. Krishnan. Supervised
    Contrastive Learning. NeurIPS 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import supcon_loss
    >>> x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # three equal rows of class 0, one of class 1
    >>> value, grad = supcon_loss(x, np.array([0, 0, 0, 1]), temperature=1.0)
    >>> round(value, 6)  # anchors 0-2: log(e¹ + e¹ + e⁰) − 1 = log(2 + e⁻¹); anchor 3 has no positive
    0.861995
    >>> grad.shape
    (4, 2)
    """
    temperature = _check_temperature(temperature)
    check_option(reduction, "reduction", REDUCTIONS)
    batch = labelled_batch(
        embeddings,
        labels,
        similarity=similarity,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        in_blocks=True,
        block_matrices=2,
    )
    if not batch.candidate_counts()[0].any():  # no anchor with a positive
        return 0.0, batch.zeros()
    total, n_anchors, n_nonzero = 0.0, 0, 0
    grads = GradientSum(batch)
    for block in batch.blocks():  # each anchor's term reads its own row of S only
        losses, cotangent = _supcon_anchor_terms(batch, block, temperature)
        total += float(np.sum(losses))
        n_anchors += losses.size
        n_nonzero += np.count_nonzero(losses > 0)
        grads.pull(block, cotangent)
    weight = weight_from_counts(reduction, n_anchors, n_nonzero)
    return weight * total, grads.result(weight / temperature)


@array_route
@finite_or_refused
def multiple_negatives_ranking_loss(
    anchors,
    positives,
    negatives=None,
    *,
    scale=20.0,
    similarity="cosine",
    symmetric=False,
    reduction="mean",
    backend=None,
):
    r"""Multiple-negatives ranking loss (in-batch negatives): anchor i's positive is positives[i], every other
    positive (and every row of ``negatives``) a negative; a softmax cross-entropy over each anchor's row of scaled
    similarities.

    .. math::

        L = \frac1N \sum_{i=1}^N -\log \frac{e^{s\,S(a_i, p_i)}}{\sum_{j=1}^{N} e^{s\,S(a_i, p_j)}
            + \sum_{k=1}^{M} e^{s\,S(a_i, n_k)}}

    s = ``scale``, S the cosine similarity by default, n the M rows of ``negatives`` (hard negatives, shared by
    every anchor). With ``symmetric=True`` the loss is the mean of that one and of the positive → anchor one,
    L' = (1/N) Σ_j −log(e^{s S(a_j, p_j)} / Σ_i e^{s S(a_i, p_j)}) (each positive finding its anchor among the N
    anchors; the negatives are not in it): (L + L')/2.

    Gradient: row i's cotangent is softmax(z_i) − e_i (the shared :func:`softmax_cross_entropy_rows`, which the
    N-pair and SupCon losses use too); for the backward direction the same on the columns of the N×N block,
    transposed back; times the reduction's weight (and ½ for the symmetric mean) and s, then one pullback of the
    similarities: ∂L/∂a from the rows, ∂L/∂p and ∂L/∂n from the columns.

    Parameters
    ----------
    anchors : array of shape (N, F), float32 or float64
        The anchors a_i (sentence-transformers' anchor column, the queries of retrieval).
    positives : array of shape (N, F)
        p_i, the positive of a_i (the positive column).
    negatives : array of shape (M, F), optional
        Hard negatives for every anchor: sentence-transformers' (anchor, positive, negative_1, ..., negative_k)
        columns are ``np.concatenate([negative_1, ..., negative_k])`` (M = kN).
    scale : float > 0, default 20.0
        s, the inverse temperature (sentence-transformers' default; 1/τ of InfoNCE), at most 1e18.
    similarity : {"cosine", "dot"}, default "cosine"
    symmetric : bool, default False
        Average with the positive → anchor direction (above).
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the N anchors (and, symmetric, separately over the N positives, then averaged).
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : tuple (grad_anchors, grad_positives), or with ``negatives`` (grad_anchors, grad_positives,
        grad_negatives), each shaped and typed like its argument

    Notes
    -----
    One pair without negatives costs −log 1 = 0: ``(0.0, zeros)``. Stable for every accepted scale (each row's
    log-sum-exp shifted by its largest logit; a tiny loss keeps its digits). It runs in blocks of anchor rows
    when its similarity matrix exceeds the working memory (:func:`metricloss.set_config`); ``symmetric=True`` then
    takes two passes, the first keeping each positive's log-sum-exp over its column (O(N) numbers), the second
    computing each block again with both softmaxes.

    *sentence-transformers*: ``MultipleNegativesRankingLoss(model, scale=20.0, similarity_fct=util.cos_sim)`` on
    (anchor, positive[, negative...]) columns is ``multiple_negatives_ranking_loss(anchors, positives[,
    negatives])``; ``similarity_fct=util.dot_score`` is ``similarity="dot"``.
    ``MultipleNegativesSymmetricRankingLoss`` is ``symmetric=True``: its backward term takes the N×N block of
    the (anchor, positive) scores only, so hard negatives enter the forward direction alone, as here. Both use
    ``nn.CrossEntropyLoss()`` (the mean): ``reduction="mean"``. (Reproduced from its source, ``scores =
    similarity_fct(a, cat(candidates)) * scale``, cross-entropy against ``arange(N)``; sentence-transformers is
    not a dependency of the tests, which check a torch transcription of that code.)

    As InfoNCE with in-batch negatives (CLIP's loss per direction, DPR's "in-batch negatives"): scale = 1/τ. It
    is also the N-pair loss (``npair_pairs_loss(anchors, positives, similarity="cosine")``) on similarities times s.

    See Also
    --------
    metricloss.textbook.multiple_negatives_ranking_loss : the formula as loops, the gradient term by term.

    References
    ----------
    M. Henderson, R. Al-Rfou, B. Strope, Y. Sung, L. Lukács, R. Guo, S. Kumar, B. Miklos, R. Kurzweil. Efficient
    Natural Language Response Suggestion for Smart Reply. 2017 (section 4.4).
    N. Reimers, I. Gurevych. Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks. EMNLP 2019
    (sentence-transformers).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import multiple_negatives_ranking_loss
    >>> a = p = np.array([[1.0, 0.0], [0.0, 1.0]])  # S = I
    >>> value, (g_anchors, g_positives) = multiple_negatives_ranking_loss(a, p, scale=1.0)
    >>> round(value, 6)  # each row: −log(e¹ / (e¹ + e⁰)) = log(1 + e⁻¹)
    0.313262
    >>> value, grads = multiple_negatives_ranking_loss(a, p, np.array([[1.0, 1.0]]), scale=1.0)
    >>> round(value, 6), len(grads)  # each row: log(e¹ + e⁰ + e^(1/√2)) − 1
    (0.748573, 3)
    """
    scale = _check_scale(scale, "scale")
    check_option(similarity, "similarity", SIMILARITIES)
    symmetric = check_bool(symmetric, "symmetric")
    check_option(reduction, "reduction", REDUCTIONS)
    batch, given = _anchors_against_candidates(anchors, positives, negatives, similarity, backend)
    if symmetric and batch.in_blocks:
        grads, value = _symmetric_ranking_in_blocks(batch, scale, reduction)
    else:
        grads, value = _ranking_rows(batch, scale, reduction, symmetric)
    grad_anchors, grad_candidates = grads  # the candidates' rows: the N positives, then the M negatives
    n = batch.x.shape[0]
    grads = (grad_anchors, *np.split(grad_candidates, [n])) if len(given) == 3 else (grad_anchors, grad_candidates)
    return value, tuple(g.astype(a.dtype, copy=False) for g, a in zip(grads, given, strict=True))


_ROWS_NOT_LABELS = (
    "multiple_negatives_ranking_loss takes rows, (anchors, positives[, negatives]), pair i being anchors[i] and "
    "positives[i]; for a labelled batch use ntxent_loss(embeddings, labels) or supcon_loss(embeddings, labels)"
)


def _anchors_against_candidates(anchors, positives, negatives, similarity, backend):
    """The checked anchors against the candidates (the positives, then the negatives) as the engine's batch in
    blocks of anchor rows, and the checked arrays as given (their dtypes are the gradients')."""
    a = check_embeddings(anchors, "anchors")
    p = check_embeddings(check_not_class_ids(positives, "positives", _ROWS_NOT_LABELS), "positives")
    check_same_shape(p, "positives", a, "anchors")
    given = [a, p]
    if negatives is not None:
        n = check_embeddings(check_not_class_ids(negatives, "negatives", _ROWS_NOT_LABELS), "negatives")
        given.append(check_same_width(n, "negatives", a, "anchors"))
    arrays = promote(*given)
    candidates = arrays[1] if len(arrays) == 2 else np.concatenate(arrays[1:])
    candidate_name = "positives"
    if len(arrays) == 3 and np.max(np.abs(arrays[2])) > np.max(np.abs(arrays[1])):
        candidate_name = "negatives"  # the one an overflow of the similarities would be due to
    # Anchor i's positive is candidate i, the negatives no anchor's: the labelled batch of the anchors, labelled
    # 0..N-1, against the candidates labelled 0..N+M-1.
    batch = labelled_batch(
        arrays[0],
        np.arange(a.shape[0]),
        similarity=similarity,
        ref_embeddings=candidates,
        ref_labels=np.arange(candidates.shape[0]),
        backend=backend,
        name="anchors",
        ref_name=candidate_name,
        in_blocks=True,
        block_matrices=2,
    )
    return batch, given


def _anchor_targets(block):
    """The block's anchors' targets for :func:`softmax_cross_entropy_rows`: row a's positive, start + a, at 1."""
    rows = np.arange(block.x.shape[0])
    return rows, block.start + rows, np.ones(rows.size)


def _ranking_rows(batch, scale, reduction, symmetric):
    """The ranking loss block by block, each anchor's term from its own row; ``symmetric`` (a batch of one block
    only) adds the positive → anchor direction from the columns of its N×N block."""
    n = batch.x.shape[0]
    total, n_nonzero = 0.0, 0
    grads = GradientSum(batch)
    for block in batch.blocks():
        z = block.s
        z *= scale  # the pullback does not read it: it becomes the logits, then the cotangent
        targets = _anchor_targets(block)
        backward_logits = z[:, :n].T.copy() if symmetric else None  # positive j's row: its scores against the anchors
        losses = softmax_cross_entropy_rows(z, *targets)
        total += float(np.sum(losses))
        n_nonzero += np.count_nonzero(losses > 0)
        cotangent = z
        if symmetric:  # one block: the columns are whole
            weight = weight_from_counts(reduction, n, n_nonzero)
            cotangent *= weight
            backward = softmax_cross_entropy_rows(backward_logits, *targets)
            backward_weight = weight_from_counts(reduction, n, np.count_nonzero(backward > 0))
            total = 0.5 * (weight * total + backward_weight * float(np.sum(backward)))
            backward_logits *= backward_weight
            cotangent[:, :n] += backward_logits.T
            cotangent *= 0.5
        flush_subnormal(cotangent)
        grads.pull(block, cotangent)
    if symmetric:  # the weights are in the cotangent
        return grads.result(scale), total
    weight = weight_from_counts(reduction, n, n_nonzero)
    return grads.result(weight * scale), weight * total


def _symmetric_ranking_in_blocks(batch, scale, reduction):
    """The symmetric ranking loss on a batch in blocks of anchor rows, in two passes. Positive j's backward term
    needs its whole column of logits, every anchor's: pass 1 reads each block's rows and keeps, per anchor, its
    forward term, and per positive j < N, its column's log-sum-exp as (top_j, rest_j) (:func:`logsumexp_rows`'
    form, merged block by block) and its own logit z_jj: O(N) numbers. Then both weights are known, and pass 2
    computes each block again, its rows' softmax and its columns' softmax from those statistics, and pulls their
    weighted sum back."""
    n = batch.x.shape[0]
    forward = np.zeros(n)
    top, rest, own = np.full(n, -np.inf), np.zeros(n), np.zeros(n)
    for block in batch.blocks():  # pass 1: the forward terms and the columns' statistics
        rows, cols, ones = _anchor_targets(block)
        columns = np.multiply(block.s[:, :n].T, scale, order="C")  # the block's scores of each positive j < N
        own[cols] = columns[cols, rows]
        block_top, block_rest = logsumexp_rows(columns)
        # Merge two partial sums of e^{z − top}: the larger top stays, the other sum (1 + rest) is rescaled into rest.
        with np.errstate(over="ignore"):
            rest = np.where(
                block_top > top,
                block_rest + (1 + rest) * np.exp(top - block_top),
                rest + (1 + block_rest) * np.exp(block_top - top),
            )
        top = np.maximum(top, block_top)
        z = block.s  # a block's matrix is computed again in pass 2
        z *= scale
        forward[cols] = softmax_cross_entropy_rows(z, rows, cols, ones)
    below_max = top - own  # m_j − z_jj >= 0
    backward = np.log1p(rest) + below_max  # positive j's term, as softmax_cross_entropy_rows computes it
    weight = weight_from_counts(reduction, n, np.count_nonzero(forward > 0))
    backward_weight = weight_from_counts(reduction, n, np.count_nonzero(backward > 0))
    value = 0.5 * (weight * float(np.sum(forward)) + backward_weight * float(np.sum(backward)))
    grads = GradientSum(batch)
    for block in batch.blocks():  # pass 2: the block's rows' and columns' softmax, minus their targets
        rows, cols, ones = _anchor_targets(block)
        z = block.s
        z *= scale
        columns = z[:, :n].copy()  # column j's softmax at the block's rows: e^{z_ij − top_j} / (1 + rest_j)
        columns -= top.astype(z.dtype)
        np.exp(columns, out=columns)
        columns *= (1 / (1 + rest)).astype(z.dtype)
        np.copyto(columns, 0, where=columns < np.finfo(z.dtype).tiny)
        columns[rows, cols] = ((np.exp(-below_max[cols]) - 1) - rest[cols]) / (1 + rest[cols])
        softmax_cross_entropy_rows(z, rows, cols, ones)
        cotangent = z
        cotangent *= weight
        columns *= backward_weight
        cotangent[:, :n] += columns
        cotangent *= 0.5
        flush_subnormal(cotangent)
        grads.pull(block, cotangent)
    return grads.result(scale), value
