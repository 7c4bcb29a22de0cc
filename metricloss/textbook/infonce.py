"""Temperature-scaled cross-entropies on similarities (the InfoNCE family) as their papers write them: each positive
pair, or each anchor's positives, against the anchor's negatives, one −log of a softmax at a time, the gradient
term by term."""

import numpy as np

from ._common import Batch, logsumexp, reduction_weight, rows
from ._common import similarity as pair_similarity


def _apply(terms, weight):
    """w · Σ ℓ, adding w · ∂ℓ/∂S into the gradients for each (ℓ, [(∂ℓ/∂S, add_slope), ...])."""
    value = 0.0
    for term, slopes in terms:
        value += weight * term
        for slope, add_slope in slopes:
            add_slope(weight * slope)  # ∂L/∂x += w · ∂ℓ/∂S · ∂S/∂x
    return float(value)


def ntxent_loss(
    embeddings,
    labels,
    *,
    temperature=0.07,
    similarity="cosine",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
):
    r"""NT-Xent (Chen et al. 2020, SimCLR; as pytorch-metric-learning's ``NTXentLoss``) pair by pair, as a loop.

    .. math::

        \ell_{ap} = -\log \frac{e^{S_{ap}/\tau}}{e^{S_{ap}/\tau} + \sum_{n \in N_a} e^{S_{an}/\tau}}
                  = \log\Big(1 + \sum_{n \in N_a} e^{(S_{an} - S_{ap})/\tau}\Big),
        \qquad L = \rho(\ell_{ap} : (a, p) \in \mathcal P)

    The loops run over the anchors a, their positives p (same label, not itself: (a, p) and (p, a) are both
    terms; with references every reference of the query's label) and their negatives n (another label); the
    anchor's other positives are not in the denominator. The second form is a log-sum-exp with the extra exponent
    0, shifted by its largest exponent. An anchor without negatives costs log 1 = 0 per pair; no positive pair →
    (0.0, zeros).

    The textbook twin of :func:`metricloss.ntxent_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    terms = []  # (ℓ_ap, [(∂ℓ_ap/∂S, add_slope), ...])
    for a in range(len(batch.x)):
        negatives = [batch.similarity(a, n, similarity) for n in batch.negatives(a)]  # (S_an, add_slope)
        for p in batch.positives(a):
            s_ap, add_ap = batch.similarity(a, p, similarity)
            # ℓ_ap = log(1 + Σ_n e^{v_n}), v_n = z_an − z_ap = (S_an − S_ap)/τ; w_n = ∂ℓ_ap/∂v_n, n's softmax weight
            term, w = logsumexp([0.0] + [(s_an - s_ap) / temperature for s_an, _ in negatives])
            # ∂ℓ_ap/∂S_an = w_n / τ;  ∂ℓ_ap/∂S_ap = −Σ_n w_n / τ (= (softmax_p − 1)/τ)
            slopes = [(-sum(w[1:]) / temperature, add_ap)]
            slopes += [(w_n / temperature, add_an) for w_n, (_, add_an) in zip(w[1:], negatives, strict=True)]
            terms.append((term, slopes))
    weight = reduction_weight([term for term, _ in terms], reduction)  # ρ over the positive pairs
    return _apply(terms, weight), batch.gradients(1.0)


def supcon_loss(
    embeddings,
    labels,
    *,
    temperature=0.1,
    similarity="cosine",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
):
    r"""The supervised contrastive loss of Khosla et al. (2020), L_out, anchor by anchor, as a loop.

    .. math::

        \ell_a = \frac{-1}{|P(a)|} \sum_{p \in P(a)} \log \frac{e^{S_{ap}/\tau}}{\sum_{k \ne a} e^{S_{ak}/\tau}}
               = \frac{1}{|P(a)|} \sum_{p \in P(a)} \log\Big(1 + \sum_{k \ne a, p} e^{(S_{ak} - S_{ap})/\tau}\Big),
        \qquad L = \rho(\ell_a : a \in A)

    The loops run over the anchors a with at least one positive (A; the others are no term), their positives p
    (same label, not itself) and, in each denominator, every other candidate k (positives included; with
    references, every reference). Each −log of a softmax is a log-sum-exp with the extra exponent 0, shifted by its
    largest exponent. No anchor with a positive → (0.0, zeros).

    The textbook twin of :func:`metricloss.supcon_loss`: same arguments but ``backend``, same result.
    """
    batch = Batch(embeddings, labels, ref_embeddings, ref_labels)
    terms = []  # (ℓ_a, [(∂ℓ_a/∂S, add_slope), ...])
    for a in range(len(batch.x)):
        positives = batch.positives(a)
        if not positives:
            continue  # a ∉ A
        scores = {k: batch.similarity(a, k, similarity) for k in batch.candidates(a)}  # k -> (S_ak, add_slope)
        term, slopes = 0.0, []
        for p in positives:
            s_ap, add_ap = scores[p]
            others = [k for k in scores if k != p]
            # −log softmax_p = log(1 + Σ_{k ≠ p} e^{v_k}), v_k = (S_ak − S_ap)/τ; w_k = ∂/∂v_k, k's softmax weight
            lse, w = logsumexp([0.0] + [(scores[k][0] - s_ap) / temperature for k in others])
            term += lse / len(positives)  # ℓ_a = (1/|P(a)|) Σ_p −log softmax_p
            # ∂/∂S_ak = w_k / (τ |P(a)|);  ∂/∂S_ap = −Σ_k w_k / (τ |P(a)|)
            slopes.append((-sum(w[1:]) / (temperature * len(positives)), add_ap))
            for w_k, k in zip(w[1:], others, strict=True):
                slopes.append((w_k / (temperature * len(positives)), scores[k][1]))
        terms.append((term, slopes))
    weight = reduction_weight([term for term, _ in terms], reduction)  # ρ over the anchors of A
    return _apply(terms, weight), batch.gradients(1.0)


def multiple_negatives_ranking_loss(
    anchors,
    positives,
    negatives=None,
    *,
    scale=20.0,
    similarity="cosine",
    symmetric=False,
    reduction="mean",
):
    r"""The multiple-negatives ranking loss (Henderson et al. 2017; sentence-transformers) anchor by anchor, as a
    loop.

    .. math::

        \ell_i = -\log \frac{e^{s\,S(a_i, p_i)}}{\sum_{j=1}^{N} e^{s\,S(a_i, p_j)} + \sum_{k=1}^{M} e^{s\,S(a_i, n_k)}},
        \qquad \ell'_j = -\log \frac{e^{s\,S(a_j, p_j)}}{\sum_{i=1}^{N} e^{s\,S(a_i, p_j)}},
        \qquad L = \rho(\ell) \ \text{or, symmetric,}\ \tfrac12 (\rho(\ell) + \rho(\ell'))

    The loops run over the anchors i and, in each denominator, every positive and every negative (shared by all
    anchors); with ``symmetric=True`` also over the positives j, each against every anchor (no negative). Each
    −log of a softmax is written log(1 + Σ_{other r} e^{z_r − z_target}), a log-sum-exp with the extra exponent 0,
    shifted by its largest exponent. One pair without negatives costs log 1 = 0.

    The textbook twin of :func:`metricloss.multiple_negatives_ranking_loss`: same arguments but ``backend``, same
    result.
    """
    a, p = rows(anchors), rows(positives)
    n = rows(negatives) if negatives is not None else np.zeros((0, a.shape[1]))
    grads = (np.zeros_like(a), np.zeros_like(p), np.zeros_like(n))  # ∂L/∂a, ∂L/∂p, ∂L/∂n
    pool = [(p, grads[1], j) for j in range(len(p))] + [(n, grads[2], k) for k in range(len(n))]

    def score(i, rows_r, grad_r, r):
        """S(a_i, r) and a function adding slope · ∂S/∂(a_i, r) into the gradients."""
        s, ds_da, ds_dr = pair_similarity(a[i], rows_r[r], similarity)

        def add_slope(slope):
            grads[0][i] += slope * ds_da
            grad_r[r] += slope * ds_dr

        return s, add_slope

    def cross_entropy(target, others):
        """−log softmax of ``target`` among itself and ``others`` ((S, add_slope) each), z = s·S:
        log(1 + Σ_r e^{v_r}), v_r = z_r − z_target; ∂/∂S_r = s w_r, ∂/∂S_target = −s Σ_r w_r."""
        s_target, add_target = target
        term, w = logsumexp([0.0] + [scale * (s_r - s_target) for s_r, _ in others])
        slopes = [(-scale * sum(w[1:]), add_target)]
        slopes += [(scale * w_r, add_r) for w_r, (_, add_r) in zip(w[1:], others, strict=True)]
        return term, slopes

    n_pairs = len(a)
    forward = []  # ℓ_i: anchor i finds its positive p_i among the positives and negatives
    for i in range(n_pairs):
        scores = [score(i, *entry) for entry in pool]  # S(a_i, r) for every r of the pool, p_i at index i
        forward.append(cross_entropy(scores[i], scores[:i] + scores[i + 1 :]))
    directions = [(forward, 1.0)]
    if symmetric:
        backward = []  # ℓ'_j: positive j finds its anchor a_j among the anchors
        for j in range(n_pairs):
            scores = [score(i, p, grads[1], j) for i in range(n_pairs)]  # S(a_i, p_j) for every anchor i
            backward.append(cross_entropy(scores[j], scores[:j] + scores[j + 1 :]))
        directions = [(forward, 0.5), (backward, 0.5)]  # L = ½ (ρ(ℓ) + ρ(ℓ'))
    value = 0.0
    for terms, half in directions:
        value += _apply(terms, half * reduction_weight([term for term, _ in terms], reduction))
    return float(value), grads if negatives is not None else grads[:2]
