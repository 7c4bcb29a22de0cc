"""Losses that weigh an anchor's pairs by a softmax, as their papers write them: each anchor's positive and negative
similarities, the log-sum-exps over them, the gradient term by term."""

from ._common import Batch, hinge, logsumexp, reduction_weight


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
):
    r"""The multi-similarity loss of Wang et al. (2019), anchor by anchor, with the paper's ε pair mining as a loop.

    .. math::

        \ell_a = \frac1\alpha \log\Big(1 + \sum_{p \in P_a} e^{-\alpha (S_{ap} - \lambda)}\Big)
               + \frac1\beta \log\Big(1 + \sum_{n \in N_a} e^{\beta (S_{an} - \lambda)}\Big),
        \qquad L = \rho(\ell_1, \dots, \ell_B)

    The loop runs over the anchors a, each one's positives p (same label, not itself) and negatives n (another
    label); with references, over every (query, reference) pair. α = ``positive_scale``, β = ``negative_scale``,
    λ = ``threshold``. ``mining="epsilon"`` first keeps n iff S_an + ε >
    min_p S_ap and p iff S_ap − ε < max_n S_an, both against the unmined sets (strictly: a pair at the boundary is
    dropped; an empty set keeps nothing of the other). Every anchor is a term, an empty sum costing log 1 = 0; the
    mining is piecewise constant in S, so no gradient flows through it. Each log(1 + Σ e^v) is a log-sum-exp with
    the extra exponent 0, shifted by its largest exponent. Nothing valid → (0.0, zeros).

    The textbook twin of :func:`metricloss.multi_similarity_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    alpha, beta, lam = positive_scale, negative_scale, threshold  # the paper's α, β, λ
    terms = []  # (ℓ_a, [(∂ℓ_a/∂S_aj, add_slope) for each pair (a, j) in ℓ_a])
    for a in range(len(batch.x)):
        positives = [batch.similarity(a, p, similarity) for p in batch.positives(a)]  # (S_ap, add_slope)
        negatives = [batch.similarity(a, n, similarity) for n in batch.negatives(a)]  # (S_an, add_slope)
        if mining == "epsilon":
            hardest_negative = max((s for s, _ in negatives), default=-float("inf"))  # max_n S_an
            hardest_positive = min((s for s, _ in positives), default=float("inf"))  # min_p S_ap
            positives, negatives = (
                [(s, add) for s, add in positives if s - epsilon < hardest_negative],  # S_ap − ε < max_n S_an
                [(s, add) for s, add in negatives if s + epsilon > hardest_positive],  # S_an + ε > min_p S_ap
            )
        # log(1 + Σ_p e^{z⁺_ap}) with z⁺_ap = −α(S_ap − λ); w⁺_ap = ∂/∂z⁺_ap, its softmax weight (0 counted)
        pos_lse, pos_w = logsumexp([0.0] + [-alpha * (s - lam) for s, _ in positives])
        # log(1 + Σ_n e^{z⁻_an}) with z⁻_an = β(S_an − λ); w⁻_an = ∂/∂z⁻_an
        neg_lse, neg_w = logsumexp([0.0] + [beta * (s - lam) for s, _ in negatives])
        term = pos_lse / alpha + neg_lse / beta  # ℓ_a
        # ∂ℓ_a/∂S_ap = (1/α) w⁺_ap ∂z⁺_ap/∂S_ap = (1/α) w⁺_ap (−α) = −w⁺_ap
        slopes = [(-w, add) for w, (_, add) in zip(pos_w[1:], positives, strict=True)]
        # ∂ℓ_a/∂S_an = (1/β) w⁻_an ∂z⁻_an/∂S_an = (1/β) w⁻_an β = w⁻_an
        slopes += [(w, add) for w, (_, add) in zip(neg_w[1:], negatives, strict=True)]
        terms.append((term, slopes))

    weight = reduction_weight([term for term, _ in terms], reduction)  # ρ over the B anchors
    value = 0.0
    for term, slopes in terms:
        value += weight * term
        for slope, add_slope in slopes:
            add_slope(weight * slope)  # ∂L/∂x += w · ∂ℓ_a/∂S · ∂S/∂x
    return float(value), batch.gradients(1.0)


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
):
    r"""The circle loss of Sun et al. (2020): the paper's double sum over (positive, negative) pairs, as a loop.

    .. math::

        \ell = \log\Big(1 + \sum_{p} \sum_{n} e^{\gamma (\alpha_n (s_n - \Delta_n) - \alpha_p (s_p - \Delta_p))}\Big),
        \quad \alpha_p = [O_p - s_p]_+,\ \alpha_n = [s_n - O_n]_+,\ O_p = 1 + m,\ O_n = -m,\ \Delta_p = 1 - m,
        \ \Delta_n = m

    with m = ``margin`` and γ = ``scale``.
    ``form="per_anchor"``: one ℓ_a per anchor a, p over its positives (same label, not itself) and n over its
    negatives (another label), an anchor without either costing log 1 = 0; ρ over the B anchors.
    ``form="all_pairs"``: one ℓ for the batch, p over its positive pairs and n over its negative pairs (each
    unordered pair i < j once; with references every (query, reference) pair). Each sum is a log-sum-exp with the
    extra exponent 0, shifted by its largest exponent (γ = 256 makes exponents of ~1000). The weights' hinges are
    active iff their argument is > 0 (derivative 1 there, 0 elsewhere). Nothing valid → (0.0, zeros).

    The gradient with ``detach_weights=True`` (the default) is the gradient of the same double sum with α_p and α_n
    held constant, ∂z_p/∂s_p = −γ α_p and ∂z_n/∂s_n = γ α_n (the paper's code ``.detach()``-es them): the
    quantity :func:`metricloss.circle_loss` returns, term by term, not the derivative of the value. With
    ``detach_weights=False`` α is differentiated too.

    The textbook twin of :func:`metricloss.circle_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    m, gamma = margin, scale  # the paper's m, γ
    optimum_p, optimum_n, delta_p, delta_n = 1 + m, -m, 1 - m, m  # O_p, O_n, Δ_p, Δ_n

    def positive_logit(s):
        """z_p = −γ α_p (s_p − Δ_p) and ∂z_p/∂s_p."""
        alpha_p, dhinge = hinge(optimum_p - s)  # α_p = [O_p − s_p]₊, so ∂α_p/∂s_p = −dhinge
        z = -gamma * alpha_p * (s - delta_p)
        if detach_weights:
            return z, -gamma * alpha_p  # α_p held constant: ∂z_p/∂s_p = −γ α_p
        return z, -gamma * (alpha_p - dhinge * (s - delta_p))  # ∂z_p/∂s_p = −γ (α_p + (s_p − Δ_p) ∂α_p/∂s_p)

    def negative_logit(s):
        """z_n = γ α_n (s_n − Δ_n) and ∂z_n/∂s_n."""
        alpha_n, dhinge = hinge(s - optimum_n)  # α_n = [s_n − O_n]₊, so ∂α_n/∂s_n = dhinge
        z = gamma * alpha_n * (s - delta_n)
        if detach_weights:
            return z, gamma * alpha_n  # α_n held constant: ∂z_n/∂s_n = γ α_n
        return z, gamma * (alpha_n + dhinge * (s - delta_n))  # ∂z_n/∂s_n = γ (α_n + (s_n − Δ_n) ∂α_n/∂s_n)

    groups = []  # the (positives, negatives) of each term, each a list of (s, add_slope)
    if form == "per_anchor":
        for a in range(len(batch.x)):
            positives = [batch.similarity(a, p, similarity) for p in batch.positives(a)]
            negatives = [batch.similarity(a, n, similarity) for n in batch.negatives(a)]
            groups.append((positives, negatives))
    else:
        positives, negatives = [], []
        for i in range(len(batch.x)):
            for j in batch.candidates(i):
                if batch.within and j < i:
                    continue  # an unordered pair counts once
                same = batch.labels[i] == batch.ref_labels[j]
                (positives if same else negatives).append(batch.similarity(i, j, similarity))
        groups.append((positives, negatives))

    terms = []  # (ℓ, [(∂ℓ/∂s, add_slope) for each similarity in ℓ])
    for positives, negatives in groups:
        pos_logits = [positive_logit(s) for s, _ in positives]  # (z_p, ∂z_p/∂s_p)
        neg_logits = [negative_logit(s) for s, _ in negatives]  # (z_n, ∂z_n/∂s_n)
        # ℓ = log(1 + Σ_p Σ_n e^{z_p + z_n}); W_pn = ∂ℓ/∂(z_p + z_n), the softmax weight of the pair (p, n)
        term, w = logsumexp([0.0] + [z_p + z_n for z_p, _ in pos_logits for z_n, _ in neg_logits])
        weights = [w[1 + p * len(neg_logits) : 1 + (p + 1) * len(neg_logits)] for p in range(len(pos_logits))]
        slopes = []
        for p, ((_, dz_p), (_, add)) in enumerate(zip(pos_logits, positives, strict=True)):
            slopes.append((sum(weights[p]) * dz_p, add))  # ∂ℓ/∂s_p = (Σ_n W_pn) ∂z_p/∂s_p
        for n, ((_, dz_n), (_, add)) in enumerate(zip(neg_logits, negatives, strict=True)):
            slopes.append((sum(row[n] for row in weights) * dz_n, add))  # ∂ℓ/∂s_n = (Σ_p W_pn) ∂z_n/∂s_n
        terms.append((term, slopes))

    weight = reduction_weight([term for term, _ in terms], reduction)  # ρ over the terms
    value = 0.0
    for term, slopes in terms:
        value += weight * term
        for slope, add_slope in slopes:
            add_slope(weight * slope)  # ∂L/∂x += w · ∂ℓ/∂s · ∂s/∂x
    return float(value), batch.gradients(1.0)
