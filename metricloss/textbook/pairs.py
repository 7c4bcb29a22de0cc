"""Pair losses as their papers write them: every pair of the batch, one term each, the gradient term by term."""

from ._common import Batch, hinge, reduction_weight


def contrastive_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    pos_margin=0.0,
    form="hadsell",
    distance="euclidean",
    reduction="mean",
    split_reduction=False,
    ref_embeddings=None,
    ref_labels=None,
):
    r"""The contrastive loss of Hadsell, Chopra & LeCun (2006) over every pair of a labelled batch, as a loop;
    the textbook twin of :func:`metricloss.contrastive_loss` (same arguments but ``backend``, same result).

    .. math::

        \ell_{ij} = \tfrac12 [d_{ij} - m^+]_+^2 \ (y_i = y_j), \qquad \tfrac12 [m - d_{ij}]_+^2 \ (y_i \ne y_j)

    ``form="squared"`` drops the ½, ``form="linear"`` the square. The pairs are i < j within one batch (every
    ordered pair i ≠ j for the asymmetric ``"snr"`` distance), every (query, reference) pair with references.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    similar_terms, dissimilar_terms = [], []  # (ℓ, ∂ℓ/∂d, add_slope) of each pair, by kind
    for i in range(len(batch.x)):
        for j in batch.candidates(i):
            if batch.within and distance != "snr" and j < i:
                continue  # an unordered pair counts once
            d, add_slope = batch.distance(i, j, distance)
            similar = batch.labels[i] == batch.ref_labels[j]
            if similar:
                h, dh_dd = hinge(d - pos_margin)  # h = [d − m⁺]₊, ∂h/∂d = 1 where active
            else:
                h, dh_dd = hinge(margin - d)  # h = [m − d]₊, ∂h/∂d = −1 where active
                dh_dd = -dh_dd
            if form == "linear":
                term, dterm_dh = h, 1.0  # ℓ = h
            elif form == "squared":
                term, dterm_dh = h * h, 2 * h  # ℓ = h²
            else:
                term, dterm_dh = 0.5 * h * h, h  # ℓ = ½h²
            (similar_terms if similar else dissimilar_terms).append((term, dterm_dh * dh_dd, add_slope))

    # ρ over all pairs, or (split_reduction) ρ over the similar pairs plus ρ over the dissimilar ones
    groups = [similar_terms, dissimilar_terms] if split_reduction else [similar_terms + dissimilar_terms]
    value = 0.0
    for group in groups:
        weight = reduction_weight([term for term, _, _ in group], reduction)
        for term, dterm_dd, add_slope in group:
            value += weight * term
            add_slope(weight * dterm_dd)  # ∂L/∂x += w · ∂ℓ/∂d · ∂d/∂x
    return value, batch.gradients(1.0)
