"""The multi-class N-pair loss as its paper writes it: every anchor against every pair's positive, the gradient
term by term."""

import numpy as np

from ._common import logsumexp, reduction_weight, rows
from ._common import similarity as pair_similarity


def _targets(labels, i, n):
    """Anchor i's target weights {j: t_ij} over the N positives; empty for an anchor without a label."""
    if labels is None:
        return {i: 1.0}  # Sohn: pair i's own positive
    if labels.ndim == 1:  # class ids: t_ij = [y_j = y_i] / #{k : y_k = y_i}
        same = [j for j in range(n) if labels[j] == labels[i]]
        return {j: 1.0 / len(same) for j in same}
    # label sets: t_ij = |L_i ∩ L_j| / Σ_k |L_i ∩ L_k|
    shared = [int(np.sum((labels[i] != 0) & (labels[j] != 0))) for j in range(n)]
    total = sum(shared)
    return {j: c / total for j, c in enumerate(shared) if c} if total else {}


def _npair(anchors, positives, labels, l2_reg, similarity, reduction):
    """Value and (∂L/∂f, ∂L/∂f⁺) of N pairs (f_i, f_i⁺), anchor i's targets from ``labels``."""
    n = len(anchors)
    grad_anchors, grad_positives = np.zeros_like(anchors), np.zeros_like(positives)
    losses = []  # (i, ℓ_i, [(∂ℓ_i/∂z_ik, ∂z_ik/∂f_i, ∂z_ik/∂f_k⁺, k)])
    for i in range(n):
        targets = _targets(labels, i, n)
        if not targets:
            continue  # no label: not an anchor of the loss (its positive is still a negative for the others)
        # z_ik = S(f_i, f_k⁺): for "dot" f_i · f_k⁺, with ∂z_ik/∂f_i = f_k⁺ and ∂z_ik/∂f_k⁺ = f_i
        z, dz_df, dz_dpos = zip(*(pair_similarity(anchors[i], positives[k], similarity) for k in range(n)), strict=True)
        loss, slopes = 0.0, np.zeros(n)
        for j, t_ij in targets.items():
            # the paper's term with j as the positive: log(1 + Σ_{k≠j} e^{z_ik − z_ij}) = log Σ_k e^{z_ik − z_ij}
            term, p = logsumexp([z[k] - z[j] for k in range(n)])
            loss += t_ij * term  # ℓ_i = Σ_j t_ij log(1 + Σ_{k≠j} e^{z_ik − z_ij})
            for k in range(n):
                slopes[k] += t_ij * (
                    p[k] - (1.0 if k == j else 0.0)
                )  # ∂term/∂z_ik = p_ik − [k = j], p_i = softmax(z_i)
        losses.append((i, loss, [(slopes[k], dz_df[k], dz_dpos[k], k) for k in range(n)]))

    weight = reduction_weight([loss for _, loss, _ in losses], reduction)
    value = 0.0
    for i, loss, terms in losses:
        value += weight * loss  # w · ℓ_i
        for slope, dz_df, dz_dpos, k in terms:
            grad_anchors[i] += weight * slope * dz_df  # ∂z_ik/∂f_i
            grad_positives[k] += weight * slope * dz_dpos  # ∂z_ik/∂f_k⁺
    for i in range(n):
        value += l2_reg / n * (anchors[i] @ anchors[i] + positives[i] @ positives[i])  # λ/N (‖f_i‖² + ‖f_i⁺‖²)
        grad_anchors[i] += 2 * l2_reg / n * anchors[i]  # ∂/∂f_i = 2λ/N f_i
        grad_positives[i] += 2 * l2_reg / n * positives[i]  # ∂/∂f_i⁺ = 2λ/N f_i⁺
    return float(value), grad_anchors, grad_positives


def npair_loss(embeddings, labels, *, l2_reg=0.0, similarity="dot", reduction="mean"):
    r"""The multi-class N-pair loss of Sohn (NeurIPS 2016) on a labelled batch, anchor by anchor.

    .. math::

        L = \frac1N \sum_{i=1}^N \log\Big(1 + \sum_{k \ne i} e^{S(f_i, f_k^+) - S(f_i, f_i^+)}\Big)
            + \frac{\lambda}{N} \sum_{i=1}^N \big(\|f_i\|^2 + \|f_i^+\|^2\big)

    The pairs are each class's first two samples, in batch order (pytorch-metric-learning's); no such class gives
    (0.0, zeros). The loops enumerate the anchors i and every positive k; each log is a log-sum-exp shifted by its
    largest exponent; each pair's gradients land on its two rows of the batch.

    The textbook twin of :func:`metricloss.npair_loss`: same arguments but ``backend``, same result.
    """
    x = rows(embeddings)
    first, pairs = {}, {}
    for b, label in enumerate(labels):
        if label not in first:
            first[label] = b
        elif label not in pairs:
            pairs[label] = (first[label], b)
    grad = np.zeros_like(x)
    if not pairs:
        return 0.0, grad
    chosen = sorted(pairs.values())  # (anchor, positive), by anchor
    value, grad_anchors, grad_positives = _npair(
        x[[a for a, _ in chosen]], x[[p for _, p in chosen]], None, l2_reg, similarity, reduction
    )
    for (a, p), g_a, g_p in zip(chosen, grad_anchors, grad_positives, strict=True):
        grad[a] += g_a  # the pair's anchor row
        grad[p] += g_p  # and its positive row
    return value, grad


def npair_pairs_loss(anchors, positives, labels=None, *, l2_reg=0.0, similarity="dot", reduction="mean"):
    r"""The multi-class N-pair loss of Sohn (NeurIPS 2016) on explicit pairs, anchor by anchor.

    .. math::

        L = \frac1N \sum_{i=1}^N \sum_j t_{ij} \log\Big(1 + \sum_{k \ne j} e^{S(f_i, f_k^+) - S(f_i, f_j^+)}\Big)
            + \frac{\lambda}{N} \sum_{i=1}^N \big(\|f_i\|^2 + \|f_i^+\|^2\big)

    With t_ij = [i = j] (no ``labels``) that is Sohn's formula; class ids spread anchor i's target evenly over the
    positives of its class, label sets in proportion to the labels i and j share (TF-Addons), and each target's
    term is Sohn's with that positive: −Σ_j t_ij log softmax(z_i)_j. The loops enumerate the anchors i, their
    targets j and every positive k; each log is a log-sum-exp shifted by its largest exponent. An anchor without
    a label has no target and is left out (of the sum and of the mean's count).

    The textbook twin of :func:`metricloss.npair_pairs_loss`: same arguments but ``backend``, same result.
    """
    labels = None if labels is None else np.asarray(labels)
    value, grad_anchors, grad_positives = _npair(rows(anchors), rows(positives), labels, l2_reg, similarity, reduction)
    return value, (grad_anchors, grad_positives)
