"""Triplet losses as their papers write them: every triplet that enters, one term each, the gradient term by term."""

import numpy as np

from ._common import Batch, hinge, reduction_weight, rows, softplus


def _lp_distance(u, v, p, eps):
    """d = ‖u − v + ε‖_p and ∂d/∂u (∂d/∂v is its negative): with w = u − v + ε,
    ∂d/∂w_k = sign(w_k) |w_k|^(p−1) / d^(p−1) (p = 2: w/d; p = 1: sign(w)), and 0 where d = 0 (the subgradient)."""
    w = u - v + eps  # ε on every coordinate of the difference, as torch adds it
    d = np.sum(np.abs(w) ** p) ** (1 / p)  # d = (Σ_k |w_k|^p)^(1/p)
    if d == 0:
        return 0.0, np.zeros_like(w)
    return d, np.sign(w) * (np.abs(w) / d) ** (p - 1)  # ∂d/∂w_k = sign(w_k) (|w_k|/d)^(p−1)


def triplet_margin_loss(anchors, positives, negatives, *, margin=1.0, p=2, eps=1e-6, swap=False, reduction="mean"):
    r"""The triplet margin loss of Weinberger & Saul (2009) and Schroff et al. (2015) on explicit rows, with the
    distance swap of Balntas et al. (2016), as a loop over the triplets.

    .. math::

        \ell_k = [m + d(a_k, p_k) - d^-_k]_+, \qquad d(u, v) = \|u - v + \epsilon\|_p, \qquad
        d^-_k = d(a_k, n_k) \ \text{or, with swap,}\ \min(d(a_k, n_k), d(p_k, n_k))

    The loop runs over the rows k, one triplet (a_k, p_k, n_k) each. A hinge is active iff its argument is > 0;
    the swap is taken iff d(p, n) < d(a, n) (a tie keeps d(a, n)); the gradient of the p-norm is 0 where the
    difference is 0. The textbook twin of :func:`metricloss.triplet_margin_loss`: same arguments, same result.
    """
    a, pos, neg = rows(anchors), rows(positives), rows(negatives)
    grad_a, grad_p, grad_n = np.zeros_like(a), np.zeros_like(pos), np.zeros_like(neg)

    def adder(grad_u, grad_v, k, dd_du):
        """slope ↦ slope·∂d/∂(u_k, v_k) added into the gradients, for d(u_k, v_k) with ∂d/∂v = −∂d/∂u."""

        def add_slope(slope):
            grad_u[k] += slope * dd_du
            grad_v[k] -= slope * dd_du

        return add_slope

    terms = []  # (ℓ_k, ∂ℓ_k/∂d⁺ = −∂ℓ_k/∂d⁻, add_slope of d⁺, add_slope of d⁻)
    for k in range(len(a)):
        d_pos, dd_pos = _lp_distance(a[k], pos[k], p, eps)  # d⁺ = d(a_k, p_k), ∂d⁺/∂a_k = dd_pos = −∂d⁺/∂p_k
        d_neg, dd_neg = _lp_distance(a[k], neg[k], p, eps)  # d⁻ = d(a_k, n_k)
        add_neg = adder(grad_a, grad_n, k, dd_neg)
        if swap:
            d_swap, dd_swap = _lp_distance(pos[k], neg[k], p, eps)  # d(p_k, n_k)
            if d_swap < d_neg:  # d⁻ = min(d(a, n), d(p, n)): the positive stands in for the anchor
                d_neg, add_neg = d_swap, adder(grad_p, grad_n, k, dd_swap)
        term, dterm_dz = hinge(margin + d_pos - d_neg)  # ℓ = [z]₊, z = m + d⁺ − d⁻: ∂z/∂d⁺ = 1, ∂z/∂d⁻ = −1
        terms.append((term, dterm_dz, adder(grad_a, grad_p, k, dd_pos), add_neg))

    weight = reduction_weight([term for term, _, _, _ in terms], reduction)
    value = 0.0
    for term, dterm_dz, add_pos, add_neg in terms:
        value += weight * term
        add_pos(weight * dterm_dz)  # ∂L/∂x += w · ∂ℓ/∂d⁺ · ∂d⁺/∂x
        add_neg(-weight * dterm_dz)  # ∂L/∂x += w · ∂ℓ/∂d⁻ · ∂d⁻/∂x, ∂ℓ/∂d⁻ = −∂ℓ/∂z
    return float(value), (grad_a, grad_p, grad_n)


def _mined_triplets(batch, d, mining, margin, incomplete_anchors):
    """The triplets (a, p, n) that ``mining`` picks from the distances d[a][j] = d(x_a, r_j); p is None for a kept
    batch-hard anchor without a positive (d⁺ = 0). Candidates are visited in index order and a choice changes only
    on a strictly better one: ties go to the lowest index."""
    triplets = []
    for a in range(len(batch.x)):
        positives, negatives = batch.positives(a), batch.negatives(a)
        if mining in ("all", "all_semihard"):  # batch-all: every valid (a, p, n)
            for p in positives:
                for n in negatives:  # all_semihard: d_ap <= d_an < d_ap + m, the margin's band
                    if mining == "all" or d[a][p][0] <= d[a][n][0] < d[a][p][0] + margin:
                        triplets.append((a, p, n))
        elif mining == "semihard":  # per positive pair: the closest negative farther than p, else the farthest
            for p in positives:
                if not negatives:
                    continue  # an anchor without a negative has no triplet
                farther = [n for n in negatives if d[a][n][0] > d[a][p][0]]
                if farther:
                    triplets.append((a, p, _lowest(farther, d[a], closest=True)))
                else:
                    triplets.append((a, p, _lowest(negatives, d[a], closest=False)))
        elif positives and negatives:  # batch-hard: the farthest positive and the closest negative
            triplets.append((a, _lowest(positives, d[a], closest=False), _lowest(negatives, d[a], closest=True)))
        elif incomplete_anchors == "keep" and (positives or negatives):
            # kept: d⁺ = 0 without a positive; without a negative, d⁻ = the row's largest distance
            p = _lowest(positives, d[a], closest=False) if positives else None
            n = _lowest(negatives, d[a], closest=True) if negatives else _lowest(batch.candidates(a), d[a], False)
            triplets.append((a, p, n))
    return triplets


def _lowest(candidates, d_row, closest):
    """The candidate j with the smallest (``closest``) or largest d_row[j], the lowest index among ties."""
    best = candidates[0]
    for j in candidates[1:]:
        if (d_row[j][0] < d_row[best][0]) if closest else (d_row[j][0] > d_row[best][0]):
            best = j
    return best


def triplet_loss(
    embeddings,
    labels,
    triplets=None,
    *,
    mining="all",
    margin=None,
    soft=False,
    distance="euclidean",
    reduction=None,
    incomplete_anchors="drop",
    ref_embeddings=None,
    ref_labels=None,
):
    r"""The online triplet loss of Schroff et al. (FaceNet, 2015) and Hermans et al. (2017) on a labelled batch,
    as loops over the mined triplets.

    .. math::

        L = w \sum_{(a, p, n)} \ell(d_{ap} - d_{an} + m), \qquad \ell(z) = [z]_+ \ \text{or, soft,}\ \log(1 + e^z)

    with w the reduction's weight. The loops visit every anchor a and its positives p (y_p = y_a, p ≠ a within one
    batch) and negatives n (y_n ≠ y_a), the candidates being the batch or the reference set, and keep: every
    (a, p, n) (``"all"``); those with d_ap <= d_an < d_ap + m (``"all_semihard"``); per anchor the farthest positive
    and the closest negative (``"hard"``; ``incomplete_anchors="keep"`` keeps an anchor with only one of them,
    d⁺ = 0 without a positive, d⁻ = its row's largest distance without a negative); per positive pair the closest
    negative farther than p, else the farthest (``"semihard"``, as TF-Addons); or the ``triplets`` given. Ties go
    to the lowest index; a hinge is active iff its argument is > 0; a soft term that rounds to 0 in the input's
    dtype is 0, slope included; nothing valid gives (0.0, zeros). The textbook twin of
    :func:`metricloss.triplet_loss`: same arguments but ``backend``, same result.
    """
    margin = (0.0 if soft else 1.0) if margin is None else margin  # Hermans et al.'s soft margin has m = 0
    if reduction is None:  # the mean per mined anchor or pair; over the non-zero terms for batch-all and given ones
        reduction = "mean" if mining in ("hard", "semihard") else "mean_nonzero"
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    # d[a][j] = (d(x_a, r_j), add_slope): every distance from anchor a, with its chain rule
    d = [{j: batch.distance(a, j, distance) for j in batch.candidates(a)} for a in range(len(batch.x))]
    if triplets is not None:
        chosen = [(int(a), int(p), int(n)) for a, p, n in zip(*triplets, strict=True)]  # each as often as given
    else:
        chosen = _mined_triplets(batch, d, mining, margin, incomplete_anchors)
    rounds_to_zero = np.finfo(np.asarray(embeddings).dtype).smallest_subnormal / 2

    terms = []  # (ℓ, ∂ℓ/∂z, add_slope of d_ap or None, add_slope of d_an)
    for a, p, n in chosen:
        d_ap, add_ap = d[a][p] if p is not None else (0.0, None)  # d⁺ = 0 for a kept anchor without positive
        d_an, add_an = d[a][n]
        z = d_ap - d_an + margin  # ∂z/∂d_ap = 1, ∂z/∂d_an = −1
        if soft:
            term, dterm_dz = softplus(z)  # ℓ = log(1 + eᶻ), ∂ℓ/∂z = σ(z)
            if term <= rounds_to_zero:
                term, dterm_dz = 0.0, 0.0  # as the input's dtype computes it
        else:
            term, dterm_dz = hinge(z)  # ℓ = [z]₊, ∂ℓ/∂z = 1 where z > 0
        terms.append((term, dterm_dz, add_ap, add_an))

    weight = reduction_weight([term for term, _, _, _ in terms], reduction)
    value = 0.0
    for term, dterm_dz, add_ap, add_an in terms:
        value += weight * term
        if add_ap is not None:
            add_ap(weight * dterm_dz)  # ∂L/∂x += w · ∂ℓ/∂z · ∂d_ap/∂x
        add_an(-weight * dterm_dz)  # ∂L/∂x −= w · ∂ℓ/∂z · ∂d_an/∂x
    return float(value), batch.gradients(1.0)
