"""The margin loss as its paper writes it (Wu et al. 2017): every triplet's two pair terms around the boundary β,
the gradient term by term, β's included where β is learnable."""

import numpy as np

from ._common import Batch, hinge, reduction_weight, rows


def margin_loss(
    embeddings,
    labels,
    triplets=None,
    beta=None,
    *,
    margin=0.2,
    nu=0.0,
    distance="euclidean",
    reduction="mean_nonzero",
    ref_embeddings=None,
    ref_labels=None,
):
    r"""The margin loss of Wu et al. (2017, "Sampling Matters in Deep Embedding Learning"), as a loop over the
    triplets.

    .. math::

        L = w \sum_{(a, p, n) \in T} \Big( [\alpha + d_{ap} - \beta_a]_+ + [\alpha + \beta_a - d_{an}]_+ \Big)
            + R(\beta)

    The loop runs over the triplets T: every (anchor a, positive p, negative n) of the batch (p ≠ a within one
    batch; p and n among the references when given), or the ``triplets`` given as index arrays; each gives a
    positive-pair and a negative-pair term, and w is the reduction's weight over these 2|T| terms. β_a is β (the
    constant 1.2 without ``beta``; a float, or an array of one entry) or β[y_a] (an array of one entry per class).
    A given β is learnable: it adds R = ν·β (shared) or R = ν w Σ_T β[y_a] (per class), and its gradient comes
    right after the embeddings' (before the references'). A hinge is active iff its argument is > 0; no triplet
    gives (0.0, zeros), no ν term either.

    The textbook twin of :func:`metricloss.margin_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    learnable = beta is not None  # a given β is learnable
    betas = rows(np.atleast_1d(1.2 if beta is None else beta))  # β, one entry (shared) or one per class
    grad_beta = np.zeros_like(betas)  # ∂L/∂β

    def beta_index(a):
        """The entry of β that anchor a uses: its class's, or the one shared β."""
        return int(batch.labels[a]) if betas.size > 1 else 0

    if triplets is None:
        triplets = [(a, p, n) for a in range(len(batch.x)) for p in batch.positives(a) for n in batch.negatives(a)]
    else:
        triplets = list(zip(*(np.asarray(index) for index in triplets), strict=True))

    terms = []  # (ℓ, ∂ℓ/∂d, add_slope, c, ∂ℓ/∂β_c) of each pair term
    for a, p, n in triplets:
        c = beta_index(a)
        d_ap, add_slope_ap = batch.distance(a, p, distance)
        d_an, add_slope_an = batch.distance(a, n, distance)
        h, s = hinge(margin + d_ap - betas[c])  # ℓ⁺ = [α + d_ap − β_a]₊: ∂/∂d_ap = s, ∂/∂β_a = −s
        terms.append((h, s, add_slope_ap, c, -s))
        h, s = hinge(margin + betas[c] - d_an)  # ℓ⁻ = [α + β_a − d_an]₊: ∂/∂d_an = −s, ∂/∂β_a = s
        terms.append((h, -s, add_slope_an, c, s))

    value = 0.0
    if triplets:
        weight = reduction_weight([term for term, *_ in terms], reduction)
        for term, dterm_dd, add_slope, c, dterm_dbeta in terms:
            value += weight * term  # L += w ℓ
            add_slope(weight * dterm_dd)  # ∂L/∂x += w · ∂ℓ/∂d · ∂d/∂x
            grad_beta[c] += weight * dterm_dbeta  # ∂L/∂β_c += w · ∂ℓ/∂β_c
        if learnable and betas.size > 1:
            for a, _, _ in triplets:
                value += nu * weight * betas[beta_index(a)]  # R = ν w Σ_T β[y_a]
                grad_beta[beta_index(a)] += nu * weight  # ∂R/∂β_c = ν w per triplet with y_a = c
        elif learnable:
            value += nu * betas[0]  # R = ν β
            grad_beta[0] += nu  # ∂R/∂β = ν

    grads = batch.gradients(1.0)
    if not learnable:
        return float(value), grads
    grad_x, *grad_refs = grads if isinstance(grads, tuple) else (grads,)
    grad_beta = np.reshape(grad_beta, np.shape(beta)).astype(np.asarray(beta).dtype)  # shaped and typed like β
    return float(value), (grad_x, grad_beta, *grad_refs)  # argument order: embeddings, β, references
