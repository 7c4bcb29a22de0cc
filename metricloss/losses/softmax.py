"""Losses that weigh every pair of a labelled batch by a softmax: log-sum-exps over the rows of the similarity matrix.

Each loss here builds its logits from the B×R similarity matrix S (within one batch R = B), takes the shared
row-wise log-sum-exp of them over each anchor's positives and over its negatives
(:func:`._logsumexp.logsumexp_rows`, which writes the softmax weights over the logits), combines the rows' values,
and turns the weights into the cotangent ∂L/∂S; the batch's pullback turns that into ∂L/∂X. No Python loop over
rows, O(B·R) memory: the similarities, two matrices of logits (and weights), and boolean masks — or, where that
exceeds the working memory, the same per block of anchor rows (the row-block engine, :mod:`metricloss._batch`),
O(block·R): a term that reads every row (circle loss over all pairs) takes two passes over the blocks.

* :func:`multi_similarity_loss` — Wang et al. 2019, with or without the paper's ε pair mining;
* :func:`circle_loss` — Sun et al. 2020, per anchor (pytorch-metric-learning) or over all pairs of the batch (the
  reference code).
"""

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, candidate_masks, labelled_batch
from .._kernels import NO_SELF
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import MAX_MARGIN, check_bool, check_option, check_scalar, finite_or_refused
from ._logsumexp import flush_subnormal, logsumexp_rows, masked

MULTI_SIMILARITY_MININGS = ("all", "epsilon")
CIRCLE_FORMS = ("per_anchor", "all_pairs")
CIRCLE_SIMILARITIES = ("cosine",)

# The largest scale (α, β, γ) accepted, as MAX_MARGIN is the largest margin: scales multiply similarities (the
# circle loss's logits a product of two; with |S| <= 1 for cosine similarities, |logit| <= γ (2 + m)(2 − m) < 4γ),
# so up to 1e18 every logit stays far below float32's 3.4e38 and the shifted log-sum-exps stay finite. A larger
# scale is refused by name rather than left to overflow the logits (which would be reported as the embeddings').
MAX_SCALE = 1e18


def _check_scale(value, name):
    return check_scalar(
        value, name, low=0.0, low_inclusive=False, high=MAX_SCALE, why=" (a scale of the similarities' exponents)"
    )


def _lse(top, rest):
    """log Σ e^z from the shared log-sum-exp's parts (float64; −inf for an empty sum)."""
    return top + np.log1p(rest)


@array_route
@finite_or_refused
def multi_similarity_loss(
    embeddings,
    labels,
    *,
    mining="all",
    positive_scale=2.0,
    negative_scale=50.0,
    threshold=0.5,
    epsilon=0.1,
    similarity="cosine",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""Multi-similarity loss (Wang et al. 2019): each anchor's positive pairs and negative pairs, each set weighted
    by a softmax of its similarities around a shared threshold λ.

    .. math::

        L = \frac1B \sum_{a=1}^{B} \Big[\frac1\alpha \log\Big(1 + \sum_{p \in P_a} e^{-\alpha (S_{ap} - \lambda)}\Big)
            + \frac1\beta \log\Big(1 + \sum_{n \in N_a} e^{\beta (S_{an} - \lambda)}\Big)\Big]

    S the similarity matrix (cosine by default), P_a the anchor's positives (same label, not itself), N_a its
    negatives (another label); the paper's α is ``positive_scale``, β ``negative_scale`` and λ ``threshold``.
    ``mining`` chooses the pairs: ``"all"`` (the default) every pair of the batch; ``"epsilon"`` the paper's pair
    mining, which keeps only the informative pairs of each anchor, by its hardest pair of the other kind:

        n ∈ N_a is kept iff S_an + ε > min_{p ∈ P_a} S_ap,    p ∈ P_a is kept iff S_ap − ε < max_{n ∈ N_a} S_an,

    both against the unmined sets (so an anchor without negatives keeps no positive, and one without positives
    no negative). Every anchor is a term of the reduction, its empty sums contributing log 1 = 0: ``"mean"`` is
    the 1/B above (the paper's 1/m over a batch of m), ``"sum"`` the sum, ``"mean_nonzero"`` divides by the number
    of anchors whose term is > 0.

    Gradient: with the weights of each sum (its softmax, the extra logit 0 included)

        w⁺_ap = e^{−α(S_ap − λ)} / (1 + Σ_p' e^{−α(S_ap' − λ)}),  w⁻_an = e^{β(S_an − λ)} / (1 + Σ_n' e^{β(S_an' − λ)}),

    ∂ℓ_a/∂S_ap = −w⁺_ap and ∂ℓ_a/∂S_an = w⁻_an (the 1/α and 1/β cancel the exponents' scales). The mining masks are
    piecewise constant in S: no gradient flows through them. The cotangent G = ρ (W⁻ − W⁺) (ρ the reduction's
    weight) is written over the similarity matrix and pulled back once.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    mining : {"all", "epsilon"}, default "all"
        The pairs that enter: every pair, or those the paper's ε pair mining keeps (above).
    positive_scale : float > 0, default 2.0
        α, the scale of the positive pairs' similarities.
    negative_scale : float > 0, default 50.0
        β, the scale of the negative pairs' similarities.
    threshold : float, default 0.5
        λ, the similarity around which both sets of pairs are weighted.
    epsilon : float >= 0, default 0.1
        ε of ``mining="epsilon"``; unused with ``"all"``.
    similarity : {"cosine", "dot"}, default "cosine"
        S; the paper's is the cosine similarity (embeddings L2-normalised).
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the B anchors (every anchor counts, with or without pairs).
    ref_embeddings : array of shape (R, F), optional
        A reference set (query-vs-reference batches): anchors are the rows of ``embeddings``, their positives and
        negatives the references (every reference, none excluded as "itself"). Give ``ref_labels`` with it.
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
    The two sums of an anchor are independent: an anchor without negatives still pays its positives' term, and
    one without positives its negatives' term (so a batch of one class costs > 0 without mining). Nothing in the
    batch (one sample, no pair; with ε mining, no anchor with both a positive and a negative) gives ``(0.0, zeros)``.
    Each log(1 + Σ e^v) is computed from its largest exponent (the 0 counted), with log1p for the rest: no
    overflow for any α, β and similarity, and a small term keeps its digits. Mining compares S − ε and S + ε in
    the embeddings' dtype, strictly (a pair exactly at the boundary is not kept), as pytorch-metric-learning does.
    Each anchor's terms and mining read its own row of S only, so the loss runs in blocks of anchor rows when its
    matrix exceeds the working memory (:func:`metricloss.set_config`).

    *pytorch-metric-learning*: ``MultiSimilarityLoss(alpha, beta, base)`` is ``positive_scale=alpha,
    negative_scale=beta, threshold=base`` (its default ``CosineSimilarity()``: ``similarity="cosine"``;
    ``DotProductSimilarity(normalize_embeddings=False)``: ``"dot"``) with ``mining="all"``: the same terms, every
    anchor counted by its ``MeanReducer``. With ``miner=MultiSimilarityMiner(epsilon)`` passing its pairs to that
    loss it is ``mining="epsilon"``. Its
    ``SumReducer`` and ``AvgNonZeroReducer`` are ``reduction="sum"`` and ``"mean_nonzero"``. One difference: PML
    returns 0 (and no gradient) whenever each of its four index arrays (a₁, p, a₂, n) has at most one element —
    meant for "no pairs", it also zeroes a query with one positive and one negative reference, or a mined batch
    left with one positive and one negative pair; here those pairs are a loss like any other.

    *The paper's code* (MalongTech/research-ms-loss, ``MultiSimilarityLoss``, on L2-normalised embeddings) mines by
    the same ε rule (its ``margin``, 0.1), with the same strict inequalities, and divides the sum over anchors by
    the batch size: ``mining="epsilon"`` (its ``scale_pos``, ``scale_neg`` and ``thresh`` are α, β and λ), except
    that it takes an anchor's positives as its same-label similarities below 1 − 1e-5 (leaving out itself and any
    duplicate of it) and fails on an anchor without positives (the minimum of an empty set).

    Defaults: pytorch-metric-learning's α = 2, β = 50, λ = 0.5, and the paper's code's ε = 0.1.

    See Also
    --------
    metricloss.textbook.multi_similarity_loss : the formula as loops, the gradient term by term.

    References
    ----------
    X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott. Multi-Similarity Loss with General Pair Weighting for Deep
    Metric Learning. CVPR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import multi_similarity_loss
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # cosines: S01 = 0.6, S02 = 0, S12 = 0.8
    >>> value, grad = multi_similarity_loss(x, np.array([0, 0, 1]))
    >>> round(value, 6)  # (½ log(1 + e^(−2·0.1)) twice, (1/50) log(1 + e^(50·0.3)) ≈ 0.3 twice, + e^−25 terms) / 3
    0.39938
    >>> grad.shape
    (3, 2)
    """
    check_option(mining, "mining", MULTI_SIMILARITY_MININGS)
    alpha = _check_scale(positive_scale, "positive_scale")
    beta = _check_scale(negative_scale, "negative_scale")
    lam = check_scalar(threshold, "threshold", low=-MAX_MARGIN, high=MAX_MARGIN)
    epsilon = check_scalar(epsilon, "epsilon", low=0.0, high=MAX_MARGIN, why=" (the mining's margin)")
    check_option(reduction, "reduction", REDUCTIONS)
    batch = labelled_batch(
        embeddings,
        labels,
        similarity=similarity,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        in_blocks=True,
        block_matrices=3,
    )
    totals = np.zeros(2)  # Σ terms, the terms > 0
    grads = GradientSum(batch)
    for block in batch.blocks():  # each anchor's two sums (and its mining) read its own row only
        terms, cotangent = _multi_similarity_rows(block, alpha, beta, lam, mining == "epsilon", epsilon)
        totals += np.sum(terms), np.count_nonzero(terms > 0)
        grads.pull(block, cotangent)
    if not totals[1]:  # no pair left (or every exponential underflows): nothing to pull back
        return 0.0, batch.zeros()
    weight = weight_from_counts(reduction, batch.x.shape[0], totals[1])
    return weight * float(totals[0]), grads.result(weight)


def _multi_similarity_rows(block, alpha, beta, lam, epsilon_mining, epsilon):
    """A block's anchor terms ℓ_a and its cotangent G = W⁻ − W⁺ (unweighted), written over its similarities (α, β,
    λ the paper's symbols: the positive and negative scales and the threshold)."""
    s = block.s  # the pullback does not read it: it becomes the negatives' logits, then the cotangent
    positive, negative = candidate_masks(block)
    pos_logits = np.empty_like(s)
    if epsilon_mining:  # both rules against the unmined sets; an empty set's extreme (±inf) keeps nothing of the other
        hardest_positive = np.where(positive, s, np.inf).min(axis=1)  # (pos_logits is the scratch of the other)
        np.copyto(pos_logits, s)
        hardest_negative = masked(pos_logits, negative).max(axis=1)
        positive &= s - epsilon < hardest_negative[:, None]
        negative &= s + epsilon > hardest_positive[:, None]
    # Logits z⁺ = α(λ − S) and z⁻ = β(S − λ); each row's log(1 + Σ e^z) over its pairs, weights written over z.
    np.subtract(lam, s, out=pos_logits)
    pos_logits *= alpha
    neg_logits = s
    neg_logits -= lam
    neg_logits *= beta
    pos_parts = logsumexp_rows(masked(pos_logits, positive), add_one=True)
    neg_parts = logsumexp_rows(masked(neg_logits, negative), add_one=True)
    terms = _lse(*pos_parts) / alpha + _lse(*neg_parts) / beta
    # ∂ℓ_a/∂S_ap = (1/α) w⁺_ap ∂z⁺_ap/∂S_ap = −w⁺_ap;  ∂ℓ_a/∂S_an = (1/β) w⁻_an β = w⁻_an:  G = W⁻ − W⁺.
    cotangent = neg_logits
    cotangent -= pos_logits  # weights on disjoint entries, each 0 or normal (flushed): nothing subnormal here
    return terms, cotangent


def _circle_logits(s, m, gamma):
    """The circle loss's logits on every entry (the masks pick): z⁺ = γ α⁺ (Δ⁺ − S) with α⁺ = [O⁺ − S]₊, and
    z⁻ = γ α⁻ (S − Δ⁻) with α⁻ = [S − O⁻]₊."""
    pos_logits = np.subtract(1 + m, s)  # O⁺ − S
    np.maximum(pos_logits, 0, out=pos_logits)
    pos_logits *= np.subtract(1 - m, s)
    pos_logits *= gamma
    neg_logits = np.subtract(s, -m)  # S − O⁻
    np.maximum(neg_logits, 0, out=neg_logits)
    neg_logits *= np.subtract(s, m)
    neg_logits *= gamma
    return pos_logits, neg_logits


def _circle_slopes(s, m, positive, detach_weights):
    """|dz/dS| / γ for the positives' logits (``positive``) or the negatives': α with the weights held constant,
    else the full derivative, d/dS [−α⁺ (S − Δ⁺)] = −(α⁺ − (S − Δ⁺)[O⁺ − S > 0]) = −2(1 − S) and
    d/dS [α⁻ (S − Δ⁻)] = α⁻ + (S − Δ⁻)[S − O⁻ > 0] = 2S where the weight is active, 0 where it is not ([u]₊'s
    derivative taken as [u > 0]; at the kink α = 0 and S − Δ = ∓2m, so the one-sided derivatives differ there:
    a kink of the value, which the contract's inputs keep away from)."""
    slope = np.subtract(1 + m, s) if positive else np.subtract(s, -m)  # O⁺ − S, or S − O⁻
    inactive = slope <= 0
    if not detach_weights:
        if positive:
            np.subtract(1, s, out=slope)
        else:
            np.copyto(slope, s)
        slope *= 2
    np.copyto(slope, 0, where=inactive)  # [·]₊ for α
    return slope


def _lse_parts(row_lse):
    """The rows' log-sum-exps of a block summed as (top, Σ_i e^{LSE_i − top}) (float64): the O(1) statistics a
    block passes on for the batch's log-sum-exp; (−inf, 0) where no row has a pair (−inf rows: empty sets)."""
    top = np.max(row_lse)
    if top == -np.inf:
        return -np.inf, 0.0
    return top, np.sum(np.exp(row_lse - top))


def _combined_lse(parts):
    """log Σ_i e^{LSE_i} over every row of the batch, from each block's :func:`_lse_parts` (−inf for no pair)."""
    top = max(block_top for block_top, _ in parts)
    if top == -np.inf:
        return -np.inf
    return top + np.log(sum(rest * np.exp(block_top - top) for block_top, rest in parts))


def _shares(row_lse, total):
    """Each row's share e^{LSE_i − LSE} of the batch's sum (0 for every row where the batch has no pair)."""
    if total == -np.inf:
        return np.zeros_like(row_lse)
    return np.exp(row_lse - total)


def _circle_rows(block, m, gamma, all_pairs):
    """A block's logits with the softmax weights of each row's two sums written over them (positives', negatives')
    and each row's log-sum-exps over its positive pairs and over its negative pairs (−inf for an empty set)."""
    positive, negative = candidate_masks(block)
    if all_pairs and block.self_offset != NO_SELF:  # within one batch each unordered pair once: the upper triangle
        diagonal = block.self_offset + 1  # column j > row i of the batch (the block's row r is row start + r)
        positive, negative = np.triu(positive, diagonal), np.triu(negative, diagonal)
    pos_logits, neg_logits = _circle_logits(block.s, m, gamma)
    pos_lse = _lse(*logsumexp_rows(masked(pos_logits, positive)))  # −inf for a row without positives
    neg_lse = _lse(*logsumexp_rows(masked(neg_logits, negative)))
    return pos_logits, neg_logits, pos_lse, neg_lse


def _circle_cotangent(block, m, detach_weights, pos_weights, neg_weights, pos_scale, neg_scale):
    """The block's cotangent (unweighted), written over its similarities (read no more): ∂ℓ/∂s_p = −σ γ slope⁺ w⁺
    and ∂ℓ/∂s_n = σ γ slope⁻ w⁻ (slope = α with the weights constant), each row's σ γ (times its share, for
    ``"all_pairs"``) in the scales."""
    neg_weights *= _circle_slopes(block.s, m, False, detach_weights)
    neg_weights *= neg_scale
    pos_weights *= _circle_slopes(block.s, m, True, detach_weights)
    pos_weights *= pos_scale
    cotangent = np.subtract(neg_weights, pos_weights, out=block.s)
    flush_subnormal(cotangent)  # products of small weights and shares: 0 as under flush-to-zero, in either mode
    return cotangent


def _circle_anchor_terms(block, m, gamma, detach_weights):
    """The block's anchor terms ℓ_a = softplus(LSE⁺_a + LSE⁻_a) and its cotangent (unweighted), written over its
    similarities."""
    pos_weights, neg_weights, pos_lse, neg_lse = _circle_rows(block, m, gamma, False)
    x = pos_lse + neg_lse  # −inf where either set is empty: softplus 0, σ 0
    terms = np.logaddexp(0.0, x)  # softplus, float64
    sigma_gamma = (gamma * np.exp(x - terms)).astype(pos_weights.dtype)[:, None]  # γ σ(x)
    return terms, _circle_cotangent(block, m, detach_weights, pos_weights, neg_weights, sigma_gamma, sigma_gamma)


def _checked_circle_options(margin, scale, form, detach_weights, similarity, reduction):
    """:func:`circle_loss`'s options checked together: (m, γ, detach_weights), the paper's symbols."""
    m = check_scalar(
        margin,
        "margin",
        low=0.0,
        high=0.5,
        high_inclusive=False,
        why=" (the boundary's radius √2·m must keep it within s_p > s_n)",
    )
    gamma = _check_scale(scale, "scale")
    check_option(form, "form", CIRCLE_FORMS)
    detach_weights = check_bool(detach_weights, "detach_weights")
    check_option(similarity, "similarity", CIRCLE_SIMILARITIES)
    check_option(reduction, "reduction", REDUCTIONS)
    return m, gamma, detach_weights


def _circle_all_pairs(batch, m, gamma, detach_weights):
    """The all-pairs form's one term ℓ = softplus(LSE⁺ + LSE⁻) over every pair of the batch and its gradients
    (unweighted), as (totals, grads): totals (ℓ, 1), or (0, 0) with nothing pulled back where ℓ = 0 (no positive
    or no negative pair, or an underflow). LSE⁺ and LSE⁻ add up every row's sums, and each row's weights are scaled
    by its share e^{LSE_i − LSE} of the batch's sum. Two passes: the first keeps each block's (largest row LSE,
    Σ e^{LSE_i − largest}), O(1) per block; the second recomputes each block's rows for its cotangent. A batch that
    is one block is read once (its rows kept from the first pass)."""
    rows_of_blocks = ((block, _circle_rows(block, m, gamma, True)) for block in batch.blocks())
    first_pass = rows_of_blocks if batch.in_blocks else list(rows_of_blocks)
    parts = [(_lse_parts(pos_lse), _lse_parts(neg_lse)) for _, (_, _, pos_lse, neg_lse) in first_pass]
    pos_total = _combined_lse([pos for pos, _ in parts])
    neg_total = _combined_lse([neg for _, neg in parts])
    x = pos_total + neg_total
    term = np.logaddexp(0.0, x)  # softplus, float64
    grads = GradientSum(batch)
    if not term:  # no positive pair, or no negative pair (or the term underflows): nothing to pull back
        return np.zeros(2), grads
    sigma_gamma = (gamma * np.exp(x - term)).astype(batch.x.dtype)  # γ σ(x)
    if batch.in_blocks:
        second_pass = ((block, _circle_rows(block, m, gamma, True)) for block in batch.blocks())
    else:
        second_pass = first_pass
    for block, (pos_weights, neg_weights, pos_lse, neg_lse) in second_pass:
        pos_scale = (_shares(pos_lse, pos_total) * sigma_gamma)[:, None]  # each row's γ σ(x) times its shares
        neg_scale = (_shares(neg_lse, neg_total) * sigma_gamma)[:, None]
        cotangent = _circle_cotangent(block, m, detach_weights, pos_weights, neg_weights, pos_scale, neg_scale)
        grads.pull(block, cotangent)
    return np.array([term, 1.0]), grads


@array_route
@finite_or_refused
def circle_loss(
    embeddings,
    labels,
    *,
    margin=0.4,
    scale=80.0,
    form="per_anchor",
    detach_weights=True,
    similarity="cosine",
    reduction="mean_nonzero",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""Circle loss (Sun et al. 2020): every (positive, negative) pair of similarities pushed out of a circle around
    the optimum (s_n, s_p) = (0, 1), each similarity weighted by its distance from its own optimum.

    .. math::

        \ell = \log\Big(1 + \sum_{p} \sum_{n} e^{\gamma (\alpha_n (s_n - \Delta_n) - \alpha_p (s_p - \Delta_p))}\Big)
             = \operatorname{softplus}\Big(\log \sum_p e^{-\gamma \alpha_p (s_p - \Delta_p)}
                + \log \sum_n e^{\gamma \alpha_n (s_n - \Delta_n)}\Big)

    with α_p = [O_p − s_p]₊, α_n = [s_n − O_n]₊, O_p = 1 + m, O_n = −m, Δ_p = 1 − m, Δ_n = m, and s the cosine
    similarities; the paper's m is ``margin`` and γ ``scale``. ``form`` says which pairs make a term:

    * ``"per_anchor"``: one term ℓ_a per anchor, over its positives p (same label, not itself) and negatives n
      (another label); an anchor without a positive or without a negative has an empty double sum: ℓ_a = 0.
      Reduced over the B anchors by ``reduction``: the default ``"mean_nonzero"`` averages the terms > 0, i.e.
      over the anchors that have both (a term is > 0 unless it underflows float64: γ m² > ~370);
    * ``"all_pairs"``: one term for the whole batch, over every positive pair and every negative pair of it (each
      unordered pair once; with references, every (query, reference) pair). One term: every reduction gives it.

    Gradient (``detach_weights=True``, the default): the weights α are held constant, as pytorch-metric-learning and
    the widely copied reference code do (``.detach()``), so the gradient returned is that of the objective with α
    frozen at the current similarities — not the derivative of the value. With x = LSE⁺ + LSE⁻ and σ the
    logistic function, ∂ℓ/∂x = σ(x); ∂x/∂z is the softmax of each sum (the shared log-sum-exp's weights w);
    ∂z_p/∂s_p = −γ α_p, ∂z_n/∂s_n = γ α_n. So G_ap = −ρ σ(x_a) γ α_ap w⁺_ap and G_an = ρ σ(x_a) γ α_an w⁻_an
    (ρ the reduction's weight; for ``"all_pairs"`` each row's weights are scaled by its share of the batch's sum,
    e^{LSE_i − LSE}). ``detach_weights=False`` differentiates α too (∂α_p/∂s_p = −[O_p − s_p > 0],
    ∂α_n/∂s_n = [s_n − O_n > 0]): the derivative of the value, as autograd gives for code without ``.detach()``.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    margin : float in [0, 0.5), default 0.4
        m, the relaxation factor: the decision boundary is the circle of radius √2·m around (0, 1). It stays on the
        side s_p > s_n of the plane only for m < 0.5 (at 0.5 it touches s_p = s_n); a negative m zeroes the
        weights of pairs that are still wrong.
    scale : float > 0, default 80.0
        γ, the scale factor of the similarities (as ``scale`` in
        :func:`metricloss.multiple_negatives_ranking_loss`). The defaults are the paper's setting for fine-grained
        image retrieval, m = 0.4 and γ = 80 (pytorch-metric-learning's defaults too); its other settings, as
        pytorch-metric-learning lists them: m = 0.25, γ = 256 for face recognition, m = 0.25, γ = 128 for person
        re-identification.
    form : {"per_anchor", "all_pairs"}, default "per_anchor"
    detach_weights : bool, default True
        Hold α constant in the gradient (above).
    similarity : {"cosine"}, default "cosine"
        The optima O and margins Δ assume similarities in [−1, 1]: the cosine only (pytorch-metric-learning
        asserts the same).
    reduction : {"mean_nonzero", "mean", "sum"}, default "mean_nonzero"
        Over the B anchors of ``"per_anchor"``; ``"mean"`` counts every anchor, complete or not.
    ref_embeddings : array of shape (R, F), optional
        A reference set (query-vs-reference batches): anchors are the rows of ``embeddings``, their positives and
        negatives the references. Give ``ref_labels`` with it.
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
    Stable for every accepted γ (up to 1e18): each log-sum-exp is shifted by its largest logit
    (``|logit| <= γ (2 + m)(2 − m) < 4γ``), and the softplus and σ are computed in float64 from x
    (softplus(x) = logaddexp(0, x), σ(x) = e^{x − softplus(x)}); at γ = 256 in float32, identical or opposite rows
    give finite, correct values and gradients. Nothing valid (no positive pair, or no negative pair, or one sample)
    gives ``(0.0, zeros)``.

    The loss runs in blocks of anchor rows when its matrix exceeds the working memory (:func:`metricloss.set_config`).
    ``"per_anchor"``'s terms read each anchor's own row; ``"all_pairs"``'s one term reads every row, so it takes two
    passes over the blocks: the first passes on each block's largest row log-sum-exp and its rows' sum of
    exponentials below it (two numbers per block and per set of pairs) for the batch's LSE⁺ and LSE⁻; the second
    recomputes each block's rows and scales their weights by their shares. One block is read once.

    *pytorch-metric-learning*: ``CircleLoss(m, gamma)`` (its defaults are m = 0.4, γ = 80, as here) is
    ``margin=m, scale=gamma`` with ``form="per_anchor"``, the default ``detach_weights=True`` and
    ``reduction="mean_nonzero"`` (its default ``AvgNonZeroReducer``); ``reducer=MeanReducer()`` is
    ``reduction="mean"``. It zeroes the rows without a positive or a negative, as here, and like its
    multi-similarity loss returns 0 when each of its four index arrays has at most one element (a query with one
    positive and one negative reference).

    *The reference code* (TinyZeaMays/CircleLoss, which most implementations copy):
    ``CircleLoss(m, gamma)(*convert_label_to_similarity(normalize(x), labels))`` is ``form="all_pairs"``: its
    ``triu(diagonal=1)`` takes each unordered pair once, and it detaches α. Some copies drop the ``.detach()``:
    ``detach_weights=False``.

    See Also
    --------
    metricloss.textbook.circle_loss : the formula as loops, the gradient term by term.

    References
    ----------
    Y. Sun, C. Cheng, Y. Zhang, C. Zhang, L. Zheng, Z. Wang, Y. Wei. Circle Loss: A Unified Perspective of Pair
    Similarity Optimization. CVPR 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import circle_loss
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # s01 = 0, s02 = s12 = 1/√2
    >>> labels = np.array([0, 0, 1])
    >>> value, grad = circle_loss(x, labels, margin=0.25, scale=1.0, form="all_pairs")
    >>> round(value, 6)  # z⁺ = 1.25·0.75 for (0, 1); z⁻ = (r + 0.25)(r − 0.25) = 0.4375 twice: log(1 + 2e^1.375)
    2.187191
    >>> grad.shape
    (3, 2)
    """
    m, gamma, detach_weights = _checked_circle_options(margin, scale, form, detach_weights, similarity, reduction)
    batch = labelled_batch(
        embeddings,
        labels,
        similarity=similarity,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        in_blocks=True,
        block_matrices=5,
    )
    if form == "all_pairs":  # one term over the whole batch, from two passes over its blocks
        totals, grads = _circle_all_pairs(batch, m, gamma, detach_weights)
    else:  # one term per anchor, from its own row
        totals, grads = np.zeros(2), GradientSum(batch)  # Σ terms, the terms > 0
        for block in batch.blocks():
            terms, cotangent = _circle_anchor_terms(block, m, gamma, detach_weights)
            totals += np.sum(terms), np.count_nonzero(terms > 0)
            grads.pull(block, cotangent)
    if not totals[1]:  # nothing valid (or every term underflows): nothing to pull back
        return 0.0, batch.zeros()
    weight = weight_from_counts(reduction, 1 if form == "all_pairs" else batch.x.shape[0], totals[1])
    return weight * float(totals[0]), grads.result(weight)
