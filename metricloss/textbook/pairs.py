"""Pair losses as their papers write them: every pair of the batch (or every given pair, or every pair of scores),
one term each, the gradient term by term."""

import numpy as np

from ._common import Batch, hinge, reduction_weight, rows
from ._common import distance as pair_distance


def _contrastive_term(d, similar, margin, pos_margin, form):
    """One pair's contrastive term ℓ and its slope ∂ℓ/∂d."""
    if similar:
        h, dh_dd = hinge(d - pos_margin)  # h = [d − m⁺]₊, ∂h/∂d = 1 where active
    else:
        h, dh_dd = hinge(margin - d)  # h = [m − d]₊, ∂h/∂d = −1 where active
        dh_dd = -dh_dd
    if form == "linear":
        return h, dh_dd  # ℓ = h, ∂ℓ/∂d = ∂h/∂d
    if form == "squared":
        return h * h, 2 * h * dh_dd  # ℓ = h², ∂ℓ/∂d = 2h ∂h/∂d
    return 0.5 * h * h, h * dh_dd  # ℓ = ½h², ∂ℓ/∂d = h ∂h/∂d


def _contrastive_sum(similar_terms, dissimilar_terms, reduction, split_reduction):
    """ρ over all pairs, or (``split_reduction``) ρ over the similar pairs plus ρ over the dissimilar ones, from
    each pair's (ℓ, ∂ℓ/∂d, add_slope); the slopes go into the gradients as they are summed."""
    groups = [similar_terms, dissimilar_terms] if split_reduction else [similar_terms + dissimilar_terms]
    value = 0.0
    for group in groups:
        weight = reduction_weight([term for term, _, _ in group], reduction)
        for term, dterm_dd, add_slope in group:
            value += weight * term
            add_slope(weight * dterm_dd)  # ∂L/∂x += w · ∂ℓ/∂d · ∂d/∂x
    return float(value)


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
            term, dterm_dd = _contrastive_term(d, similar, margin, pos_margin, form)
            (similar_terms if similar else dissimilar_terms).append((term, dterm_dd, add_slope))
    value = _contrastive_sum(similar_terms, dissimilar_terms, reduction, split_reduction)
    return value, batch.gradients(1.0)


def contrastive_pair_loss(
    x1,
    x2,
    y,
    *,
    margin=1.0,
    pos_margin=0.0,
    form="hadsell",
    distance="euclidean",
    reduction="mean",
    split_reduction=False,
):
    r"""The contrastive loss of Hadsell, Chopra & LeCun (2006) on given pairs (x1_k, x2_k), as in siamese training.

    .. math::

        L = \rho\big(\{\ell_k\}_k\big), \qquad
        \ell_k = \tfrac12 [d_k - m^+]_+^2 \ (y_k = 1), \qquad \tfrac12 [m - d_k]_+^2 \ (y_k = 0), \qquad
        d_k = D(x1_k, x2_k)

    ``form="squared"`` drops the ½, ``form="linear"`` the square. The loop runs over the N given pairs, x1_k the
    anchor (for the asymmetric ``"snr"`` distance); a hinge is active iff its argument is > 0; ρ is the
    ``reduction`` over all pairs, or over the similar and the dissimilar pairs apart (``split_reduction``), 0
    where there is nothing to divide by.

    The textbook twin of :func:`metricloss.contrastive_pair_loss`: same arguments, same result.
    """
    x1, x2, y = rows(x1), rows(x2), np.asarray(y)
    grad_x1, grad_x2 = np.zeros_like(x1), np.zeros_like(x2)
    similar_terms, dissimilar_terms = [], []  # (ℓ_k, ∂ℓ_k/∂d_k, add_slope) of each pair, by kind
    for k in range(len(x1)):
        d, dd_dx1, dd_dx2 = pair_distance(x1[k], x2[k], distance)  # d_k and ∂d_k/∂x1_k, ∂d_k/∂x2_k
        similar = y[k] == 1
        term, dterm_dd = _contrastive_term(d, similar, margin, pos_margin, form)

        def add_slope(slope, k=k, dd_dx1=dd_dx1, dd_dx2=dd_dx2):
            grad_x1[k] += slope * dd_dx1  # ∂L/∂x1_k += ∂L/∂d_k · ∂d_k/∂x1_k
            grad_x2[k] += slope * dd_dx2  # ∂L/∂x2_k += ∂L/∂d_k · ∂d_k/∂x2_k

        (similar_terms if similar else dissimilar_terms).append((term, dterm_dd, add_slope))
    value = _contrastive_sum(similar_terms, dissimilar_terms, reduction, split_reduction)
    return value, (grad_x1, grad_x2)


def margin_ranking_loss(x1, x2, y, *, margin=0.0, reduction="mean"):
    r"""The margin ranking loss of ``torch.nn.MarginRankingLoss`` (the pairwise hinge of large-margin ranking,
    Herbrich, Graepel & Obermayer 2000) on scores: y_k = 1 asks for x1_k > x2_k + m, y_k = −1 for x2_k > x1_k + m.

    .. math::

        L = \rho\big(\{\ell_k\}_k\big), \qquad \ell_k = [m - y_k (x1_k - x2_k)]_+

    The loop runs over every element k of the score arrays (of any shape); a hinge is active iff its argument is
    > 0; ρ is the ``reduction`` over all elements.

    The textbook twin of :func:`metricloss.margin_ranking_loss`: same arguments, same result.
    """
    x1, x2, y = rows(x1), rows(x2), np.asarray(y)
    grad_x1, grad_x2 = np.zeros_like(x1), np.zeros_like(x2)
    terms = []  # (ℓ_k, ∂ℓ_k/∂x1_k, ∂ℓ_k/∂x2_k, k)
    for k in np.ndindex(x1.shape):
        h, dh_dz = hinge(margin - y[k] * (x1[k] - x2[k]))  # ℓ_k = [z]₊, z = m − y_k (x1_k − x2_k)
        terms.append((h, -y[k] * dh_dz, y[k] * dh_dz, k))  # ∂z/∂x1_k = −y_k, ∂z/∂x2_k = y_k
    weight = reduction_weight([term for term, _, _, _ in terms], reduction)
    value = 0.0
    for term, dterm_dx1, dterm_dx2, k in terms:
        value += weight * term
        grad_x1[k] += weight * dterm_dx1  # ∂L/∂x1_k = w · ∂ℓ_k/∂x1_k
        grad_x2[k] += weight * dterm_dx2  # ∂L/∂x2_k = w · ∂ℓ_k/∂x2_k
    return float(value), (grad_x1, grad_x2)


_EPS = 1e-12  # torch's ε, added to each squared norm of the cosine embedding loss


def cosine_embedding_loss(x1, x2, y, *, margin=0.0, reduction="mean"):
    r"""The cosine embedding loss of ``torch.nn.CosineEmbeddingLoss`` on given pairs: similar pairs (y_k = 1)
    pulled to cosine 1, dissimilar ones (y_k = −1) pushed below m.

    .. math::

        L = \rho\big(\{\ell_k\}_k\big), \qquad
        \ell_k = \begin{cases} 1 - c_k & y_k = 1 \\ [c_k - m]_+ & y_k = -1 \end{cases}, \qquad
        c_k = \frac{x1_k \cdot x2_k}{\sqrt{(\|x1_k\|^2 + \epsilon)(\|x2_k\|^2 + \epsilon)}},\ \epsilon = 10^{-12}

    The cosine is torch's, with ε added to each squared norm (not the plain u·v/(‖u‖‖v‖) of the other losses): a
    zero row's cosine is 0, and the gradient with respect to it is the other row over √(ε (‖x2_k‖² + ε)), finite.
    The loop runs over the N given pairs; a hinge is active iff its argument is > 0; ρ is the ``reduction`` over all
    pairs.

    The textbook twin of :func:`metricloss.cosine_embedding_loss`: same arguments, same result.
    """
    x1, x2, y = rows(x1), rows(x2), np.asarray(y)
    grad_x1, grad_x2 = np.zeros_like(x1), np.zeros_like(x2)
    terms = []  # (ℓ_k, ∂ℓ_k/∂c_k, ∂c_k/∂x1_k, ∂c_k/∂x2_k, k)
    for k in range(len(x1)):
        u, v = x1[k], x2[k]
        nu2, nv2 = u @ u + _EPS, v @ v + _EPS  # ‖u‖² + ε, ‖v‖² + ε
        c = (u @ v) / np.sqrt(nu2 * nv2)  # c = u·v / √((‖u‖² + ε)(‖v‖² + ε))
        dc_du = v / np.sqrt(nu2 * nv2) - c * u / nu2  # ∂c/∂u = v/√(…) − c u/(‖u‖² + ε)
        dc_dv = u / np.sqrt(nu2 * nv2) - c * v / nv2  # ∂c/∂v = u/√(…) − c v/(‖v‖² + ε)
        if y[k] == 1:
            term, dterm_dc = 1.0 - c, -1.0  # ℓ = 1 − c, ∂ℓ/∂c = −1
        else:
            term, dterm_dc = hinge(c - margin)  # ℓ = [c − m]₊, ∂ℓ/∂c = 1 where active
        terms.append((term, dterm_dc, dc_du, dc_dv, k))
    weight = reduction_weight([term for term, _, _, _, _ in terms], reduction)
    value = 0.0
    for term, dterm_dc, dc_du, dc_dv, k in terms:
        value += weight * term
        grad_x1[k] += weight * dterm_dc * dc_du  # ∂L/∂x1_k = w · ∂ℓ_k/∂c_k · ∂c_k/∂x1_k
        grad_x2[k] += weight * dterm_dc * dc_dv  # ∂L/∂x2_k = w · ∂ℓ_k/∂c_k · ∂c_k/∂x2_k
    return float(value), (grad_x1, grad_x2)


def hinge_embedding_loss(x, y, *, margin=1.0, reduction="mean"):
    r"""The hinge embedding loss of ``torch.nn.HingeEmbeddingLoss`` on given distances (or any scores): the
    distance itself for a similar pair (y_k = 1), the hinge [m − x_k]₊ for a dissimilar one (y_k = −1).

    .. math::

        L = \rho\big(\{\ell_k\}_k\big), \qquad
        \ell_k = \begin{cases} x_k & y_k = 1 \\ [m - x_k]_+ & y_k = -1 \end{cases}

    The loop runs over every element k of x (of any shape); a hinge is active iff its argument is > 0; ρ is the
    ``reduction`` over all elements (``"mean_nonzero"`` counts the terms > 0, so a similar x_k <= 0 is not counted,
    though its slope is still w).

    The textbook twin of :func:`metricloss.hinge_embedding_loss`: same arguments, same result.
    """
    x, y = rows(x), np.asarray(y)
    grad = np.zeros_like(x)
    terms = []  # (ℓ_k, ∂ℓ_k/∂x_k, k)
    for k in np.ndindex(x.shape):
        if y[k] == 1:
            terms.append((x[k], 1.0, k))  # ℓ = x, ∂ℓ/∂x = 1
        else:
            h, dh_dz = hinge(margin - x[k])  # ℓ = [m − x]₊, ∂ℓ/∂x = −1 where active
            terms.append((h, -dh_dz, k))
    weight = reduction_weight([term for term, _, _ in terms], reduction)
    value = 0.0
    for term, dterm_dx, k in terms:
        value += weight * term
        grad[k] += weight * dterm_dx  # ∂L/∂x_k = w · ∂ℓ_k/∂x_k
    return float(value), grad
