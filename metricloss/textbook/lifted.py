"""Lifted structure losses as their papers write them: every positive pair (Oh Song et al.) or every anchor
(Hermans et al.), each log-sum-exp a loop over its negatives, the gradient term by term."""

from ._common import Batch, hinge, logsumexp, reduction_weight


def lifted_structure_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    distance="euclidean",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
):
    r"""The smooth lifted structured loss of Oh Song, Xiang, Jegelka & Savarese (CVPR 2016), pair by pair.

    .. math::

        L = \frac{1}{2|P|} \sum_{(i,j) \in P} [J_{ij}]_+^2, \qquad
        J_{ij} = \log\Big(\sum_{(i,k) \in N} e^{m - D_{ik}} + \sum_{(j,l) \in N} e^{m - D_{jl}}\Big) + D_{ij}

    The loops enumerate the positive pairs (i, j), i < j of one label within one batch, every (query i,
    reference j) of one label with references; each pair's sum runs over i's negatives and j's negatives (with
    references: query i's references of another label, and reference j's queries of another label), shifted by
    its largest exponent. The hinge is active iff J_ij > 0; a pair with no negative at either end has an empty
    sum (J = −∞, the term 0, still counted by ``"mean"``); ``"mean_nonzero"`` counts the pairs with J_ij > 0;
    no positive pair gives (0.0, zeros).

    The textbook twin of :func:`metricloss.lifted_structure_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    pairs = []  # ([J_ij]₊, ∂½[J]₊²/∂J, the add_slope of D_ij, the negatives' add_slopes, their softmax weights)
    for i in range(len(batch.x)):
        for j in batch.positives(i):
            if batch.within and j < i:
                continue  # an unordered pair counts once
            d_ij, add_slope_ij = batch.distance(i, j, distance)
            exponents, add_slopes = [], []  # m − D over the pair's negative pairs, and their chain rules
            for k in batch.negatives(i):  # (i, k) ∈ N
                d_ik, add_slope_ik = batch.distance(i, k, distance)
                exponents.append(margin - d_ik)
                add_slopes.append(add_slope_ik)
            if batch.within:
                for k in batch.negatives(j):  # (j, l) ∈ N
                    d_jl, add_slope_jl = batch.distance(j, k, distance)
                    exponents.append(margin - d_jl)
                    add_slopes.append(add_slope_jl)
            else:
                for k in range(len(batch.x)):  # reference j's column: the queries of another label
                    if batch.labels[k] != batch.ref_labels[j]:
                        d_kj, add_slope_kj = batch.distance(k, j, distance)
                        exponents.append(margin - d_kj)
                        add_slopes.append(add_slope_kj)
            lse, softmax = logsumexp(exponents)  # log Σ e^{m − D}; ∂lse/∂(m − D_k) = p_k
            h, dh_dj = hinge(lse + d_ij)  # [J_ij]₊, J_ij = lse + D_ij; ∂[J]₊/∂J = 1 where active
            pairs.append((h, h * dh_dj, add_slope_ij, add_slopes, softmax))  # ∂(½[J]₊²)/∂J = [J]₊

    weight = reduction_weight([h for h, _, _, _, _ in pairs], reduction)  # counts J_ij > 0 for "mean_nonzero"
    value = 0.0
    for h, dterm_dj, add_slope_ij, add_slopes, softmax in pairs:
        value += weight * 0.5 * h * h  # w · ½[J_ij]₊²
        add_slope_ij(weight * dterm_dj)  # ∂J/∂D_ij = 1
        for add_slope, p in zip(add_slopes, softmax, strict=True):
            add_slope(-weight * dterm_dj * p)  # ∂J/∂D_ik = −p_k, the softmax weight of m − D_ik
    return float(value), batch.gradients(1.0)


def generalized_lifted_structure_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    distance="euclidean",
    reduction="mean",
    incomplete_anchors="drop",
    ref_embeddings=None,
    ref_labels=None,
):
    r"""The generalized lifted structure loss of Hermans, Beyer & Leibe (2017), anchor by anchor.

    .. math::

        \ell_a = \Big[\log \sum_{p \in P(a)} e^{D_{ap}} + \log \sum_{n \in N(a)} e^{m - D_{an}}\Big]_+

    The loop enumerates the anchors a (the rows of ``embeddings``), their positives p (same label, p ≠ a) and
    negatives n (another label) among the candidates (the batch, or the references); each log-sum-exp is
    shifted by its largest exponent. The hinge is active iff its argument is > 0. An anchor without a positive
    or without a negative is dropped (``"drop"``) or kept with that empty sum's log taken as 0 (``"keep"``);
    nothing valid gives (0.0, zeros).

    The textbook twin of :func:`metricloss.generalized_lifted_structure_loss`: same arguments but ``backend``,
    same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    anchors = []  # (ℓ_a, ∂ℓ_a/∂(its argument), [(add_slope of D, ∂argument/∂D)])
    for a in range(len(batch.x)):
        positives = [batch.distance(a, p, distance) for p in batch.positives(a)]  # (D_ap, add_slope)
        negatives = [batch.distance(a, n, distance) for n in batch.negatives(a)]  # (D_an, add_slope)
        if not (positives and negatives) and incomplete_anchors == "drop":
            continue
        # an empty sum's log is taken as 0 ("keep"): logsumexp is then not called, and no slope flows
        lse_pos, p_pos = logsumexp([d for d, _ in positives]) if positives else (0.0, [])  # ∂/∂D_ap = p_p
        lse_neg, p_neg = logsumexp([margin - d for d, _ in negatives]) if negatives else (0.0, [])  # ∂/∂D_an = −p_n
        h, dh_dz = hinge(lse_pos + lse_neg)  # ℓ_a = [z]₊, ∂ℓ_a/∂z = 1 where active
        slopes = [(add_slope, w) for (_, add_slope), w in zip(positives, p_pos, strict=True)]
        slopes += [(add_slope, -w) for (_, add_slope), w in zip(negatives, p_neg, strict=True)]
        anchors.append((h, dh_dz, slopes))

    weight = reduction_weight([h for h, _, _ in anchors], reduction)
    value = 0.0
    for h, dh_dz, slopes in anchors:
        value += weight * h  # w · ℓ_a
        for add_slope, dz_dd in slopes:
            add_slope(weight * dh_dz * dz_dd)  # ∂L/∂x += w · ∂ℓ_a/∂z · ∂z/∂D · ∂D/∂x
    return float(value), batch.gradients(1.0)
