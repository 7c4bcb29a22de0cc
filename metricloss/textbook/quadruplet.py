"""Quadruplet losses as their paper writes them (Chen et al. 2017): every triplet and every quadruplet of the
batch (or every given row), one term each, the gradient term by term, the adaptive margins differentiated too."""

import numpy as np

from ._common import Batch, hinge, reduction_weight, rows
from ._common import distance as pair_distance


def _weights(first, second, reduction, split_reduction):
    """(w₁, w₂): each term's set reduced on its own (split), or both sets reduced as one."""
    if split_reduction:
        return reduction_weight(first, reduction), reduction_weight(second, reduction)
    weight = reduction_weight(first + second, reduction)
    return weight, weight


def _hinge_terms(pairs_of_distances, alpha):
    """[d⁺ − d⁻ + α]₊ for each (d⁺, add_slope⁺, d⁻, add_slope⁻), as (term, ∂term/∂(d⁺, d⁻, α) = s·(1, −1, 1),
    add_slope⁺, add_slope⁻), s = 1 where the hinge is active, else 0."""
    terms = []
    for d_pos, add_pos, d_neg, add_neg in pairs_of_distances:
        term, slope = hinge(d_pos - d_neg + alpha)  # ℓ = [d⁺ − d⁻ + α]₊, ∂ℓ/∂d⁺ = ∂ℓ/∂α = s, ∂ℓ/∂d⁻ = −s
        terms.append((term, slope, add_pos, add_neg))
    return terms


def _accumulate(terms, weight):
    """value = w Σ ℓ, and the chain rule for each term: ∂L/∂d⁺ += w s, ∂L/∂d⁻ −= w s. Returns (value, ∂L/∂α)."""
    value, dvalue_dalpha = 0.0, 0.0
    for term, slope, add_pos, add_neg in terms:
        value += weight * term  # L += w ℓ
        add_pos(weight * slope)  # ∂L/∂x += w · ∂ℓ/∂d⁺ · ∂d⁺/∂x
        add_neg(-weight * slope)  # ∂L/∂x += w · ∂ℓ/∂d⁻ · ∂d⁻/∂x
        dvalue_dalpha += weight * slope  # ∂L/∂α += w · ∂ℓ/∂α
    return value, dvalue_dalpha


def _two_terms(
    first_pairs, second_pairs, positives, negatives, *, margin, margin2, adaptive_margins, reduction, split_reduction
):
    """The loss from its two sets of distance pairs (d⁺, d⁻), given the positive and the negative distances (d,
    add_slope) that the adaptive margins average: returns the value, every gradient added through the slopes."""
    gap, gap_active = 1.0, False  # fixed margins: α₁ = margin, α₂ = margin2
    if adaptive_margins:
        mu_p = sum(d for d, _ in positives) / len(positives)  # μ_p, the mean positive distance
        mu_n = sum(d for d, _ in negatives) / len(negatives)  # μ_n, the mean negative distance
        gap, gap_active = hinge(mu_n - mu_p)  # [μ_n − μ_p]₊; its derivative 1 where > 0, 0 at and below the kink
    alpha1, alpha2 = margin * gap, margin2 * gap  # α₁ = margin·gap, α₂ = margin2·gap

    first = _hinge_terms(first_pairs, alpha1)
    second = _hinge_terms(second_pairs, alpha2)
    w1, w2 = _weights([t for t, *_ in first], [t for t, *_ in second], reduction, split_reduction)
    value1, dl_dalpha1 = _accumulate(first, w1)
    value2, dl_dalpha2 = _accumulate(second, w2)

    if gap_active:
        # α = m·gap: ∂L/∂gap = margin·∂L/∂α₁ + margin2·∂L/∂α₂; gap = μ_n − μ_p, so ∂gap/∂d = +1/N_n on each
        # negative distance and −1/N_p on each positive one.
        dl_dgap = margin * dl_dalpha1 + margin2 * dl_dalpha2
        for _, add_slope in positives:
            add_slope(-dl_dgap / len(positives))
        for _, add_slope in negatives:
            add_slope(dl_dgap / len(negatives))
    return value1 + value2


def quadruplet_margin_loss(
    anchors,
    positives,
    negatives,
    negatives2,
    *,
    margin=1.0,
    margin2=0.5,
    adaptive_margins=False,
    distance="sqeuclidean",
    reduction="mean",
    split_reduction=True,
):
    r"""The quadruplet loss of Chen et al. (2017, "Beyond triplet loss") on explicit rows, as a loop over the rows.

    .. math::

        L = \rho_1\big(\big[d(a_k, p_k) - d(a_k, n_k) + \alpha_1\big]_+\big)
          + \rho_2\big(\big[d(a_k, p_k) - d(n_k, n'_k) + \alpha_2\big]_+\big)

    The loop runs over the N rows k, each giving one term of each kind; ρ is each set's reduction (one reduction of
    the 2N terms with ``split_reduction=False``). ``adaptive_margins=True``: α₁ = ``margin``·[μ_n − μ_p]₊, α₂ =
    ``margin2``·[μ_n − μ_p]₊, μ_p the mean of the d(a, p), μ_n of the d(a, n) and d(n, n'), differentiated through
    every distance (derivative 0 at the kink). A hinge is active iff its argument is > 0.

    The textbook twin of :func:`metricloss.quadruplet_margin_loss`: same arguments, same result.
    """
    x = [rows(array) for array in (anchors, positives, negatives, negatives2)]  # a, p, n, n'
    grads = [np.zeros_like(array) for array in x]

    def row_distance(u, v, k):
        """d(x_u[k], x_v[k]) between row k of inputs u and v, and a function adding slope·∂d/∂(those rows)."""
        d, dd_du, dd_dv = pair_distance(x[u][k], x[v][k], distance)

        def add_slope(slope):
            grads[u][k] += slope * dd_du
            grads[v][k] += slope * dd_dv

        return d, add_slope

    a, p, n, n2 = range(4)
    d_ap = [row_distance(a, p, k) for k in range(len(x[a]))]  # d(a_k, p_k)
    d_an = [row_distance(a, n, k) for k in range(len(x[a]))]  # d(a_k, n_k)
    d_nn = [row_distance(n, n2, k) for k in range(len(x[a]))]  # d(n_k, n'_k)
    if not d_ap:
        return 0.0, tuple(grads)
    value = _two_terms(
        [(*ap, *an) for ap, an in zip(d_ap, d_an, strict=True)],  # (d(a,p), d(a,n)) of the first term
        [(*ap, *nn) for ap, nn in zip(d_ap, d_nn, strict=True)],  # (d(a,p), d(n,n')) of the second term
        d_ap,
        d_an + d_nn,
        margin=margin,
        margin2=margin2,
        adaptive_margins=adaptive_margins,
        reduction=reduction,
        split_reduction=split_reduction,
    )
    return float(value), tuple(grads)


def quadruplet_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    margin2=0.5,
    adaptive_margins=False,
    distance="sqeuclidean",
    reduction="mean",
    split_reduction=True,
):
    r"""The quadruplet loss of Chen et al. (2017, "Beyond triplet loss") on a labelled batch, as loops over every
    triplet and every quadruplet.

    .. math::

        L = \rho_1\Big(\big[d_{ij} - d_{ik} + \alpha_1\big]_+ : y_i = y_j \ne y_k\Big)
          + \rho_2\Big(\big[d_{ij} - d_{lk} + \alpha_2\big]_+ : y_i = y_j;\ y_l \ne y_k;\ y_l, y_k \ne y_i\Big)

    The first loops run over the ordered triplets (anchor i, positive j ≠ i, negative k), the second over the
    unordered positive pairs {i, j} (i < j) against the unordered negative pairs {l, k} (l < k) with no end in the
    positive pair's class; each pair's distance is computed once. ρ is each set's reduction (one reduction of both
    sets with ``split_reduction=False``). ``adaptive_margins=True``: α₁ = ``margin``·[μ_n − μ_p]₊, α₂ =
    ``margin2``·[μ_n − μ_p]₊, μ_p and μ_n the mean distances of the batch's positive and negative pairs,
    differentiated through every pair (derivative 0 at the kink). A hinge is active iff its argument is > 0; no
    positive pair or one class gives (0.0, zeros).

    The textbook twin of :func:`metricloss.quadruplet_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels)
    y, size = batch.labels, len(batch.x)
    pair = {}  # (i, j), i < j → (d_ij, add_slope): one distance per unordered pair, d symmetric
    for i in range(size):
        for j in range(i + 1, size):
            pair[i, j] = batch.distance(i, j, distance)

    def d(i, j):
        return pair[min(i, j), max(i, j)]

    # the positive pairs {i, j} and the negative pairs {l, k}, in the paper's letters
    positives = [(i, j) for (i, j) in pair if y[i] == y[j]]
    negatives = [(l, k) for (l, k) in pair if y[l] != y[k]]  # noqa: E741
    if not positives or not negatives:
        return 0.0, batch.gradients(1.0)
    triplets = [
        (*d(i, j), *d(i, k))  # (d_ij, d_ik)
        for i in range(size)
        for j in batch.positives(i)
        for k in batch.negatives(i)
    ]
    quadruplets = [
        (*d(i, j), *d(l, k))  # (d_ij, d_lk)
        for i, j in positives
        for l, k in negatives  # noqa: E741
        if y[l] != y[i] and y[k] != y[i]
    ]
    value = _two_terms(
        triplets,
        quadruplets,
        [pair[ij] for ij in positives],  # the distances μ_p averages
        [pair[lk] for lk in negatives],  # the distances μ_n averages
        margin=margin,
        margin2=margin2,
        adaptive_margins=adaptive_margins,
        reduction=reduction,
        split_reduction=split_reduction,
    )
    return float(value), batch.gradients(1.0)
