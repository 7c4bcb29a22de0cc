"""The triplet-center loss as its paper writes it: each embedding against its own centre and the nearest other one,
the gradient term by term (and through the class means, for batch centres)."""

import numpy as np

from ._common import Batch, hinge, reduction_weight, rows


def triplet_center_loss(
    embeddings, labels, centers=None, *, margin=5.0, distance="sqeuclidean", halved=True, reduction="sum"
):
    r"""The triplet-center loss of He et al. (2018), as a loop over the embeddings and, per embedding, the centres.

    .. math::

        L = w \sum_{i=1}^{B} \Big[ D(f_i, c_{y_i}) + m - \min_{j \ne y_i} D(f_i, c_j) \Big]_+,
        \qquad D = \tfrac12 d \ (\texttt{halved}) \ \text{or}\ d, \qquad c_y = \frac{1}{n_y} \sum_{k : y_k = y} f_k

    The loop visits every embedding f_i and every other centre c_j to find the nearest; the centres are the rows
    of ``centers`` (row y for class y), or without them the batch's class means, one per class present, in order
    of first appearance (∂c_y/∂f_k = 1/n_y for the n_y members k of class y). The nearest other centre's ties go to
    the lowest row (the class seen first); a hinge is active iff its argument is > 0; an embedding without another
    centre has no term, and nothing valid gives (0.0, zeros). The textbook twin of
    :func:`metricloss.triplet_center_loss`: same arguments but ``backend``, same result.
    """
    f, labels = rows(embeddings), np.asarray(labels)
    if centers is None:  # c_k = the mean of class k's rows, classes k = 0, 1, ... in order of first appearance
        classes = list(dict.fromkeys(labels.tolist()))
        members = [[i for i in range(len(f)) if labels[i] == y] for y in classes]
        c = np.array([sum(f[i] for i in class_members) / len(class_members) for class_members in members])
        y = [classes.index(label) for label in labels.tolist()]  # y_i: the row of f_i's centre
    else:
        c, y = rows(centers), labels
    # f_i against the centres: the one positive of f_i is c_{y_i}, the other centres are its negatives
    batch = Batch(f, y, c, np.arange(len(c)))
    s = 0.5 if halved else 1.0  # D = s·d

    terms = []  # (ℓ_i, ∂ℓ_i/∂z, add_slope of d(f_i, c_{y_i}), add_slope of d(f_i, c_q))
    for i in range(len(f)):
        others = batch.negatives(i)
        if not others:
            continue  # no other centre: no term
        d_own, add_own = batch.distance(i, batch.positives(i)[0], distance)  # d(f_i, c_{y_i})
        d_near, add_near = batch.distance(i, others[0], distance)
        for j in others[1:]:  # the nearest other centre c_q, the lowest row on ties
            d_j, add_j = batch.distance(i, j, distance)
            if d_j < d_near:
                d_near, add_near = d_j, add_j
        term, dterm_dz = hinge(s * d_own + margin - s * d_near)  # z = s·d⁺ + m − s·d⁻: ∂z/∂d⁺ = s, ∂z/∂d⁻ = −s
        terms.append((term, dterm_dz, add_own, add_near))

    weight = reduction_weight([term for term, _, _, _ in terms], reduction)
    value = 0.0
    for term, dterm_dz, add_own, add_near in terms:
        value += weight * term
        add_own(weight * dterm_dz * s)  # ∂L/∂(f_i, c_{y_i}) += w · ∂ℓ/∂z · s · ∂d⁺/∂(f_i, c_{y_i})
        add_near(-weight * dterm_dz * s)  # ∂L/∂(f_i, c_q) −= w · ∂ℓ/∂z · s · ∂d⁻/∂(f_i, c_q)
    grad_f, grad_c = batch.gradients(1.0)
    if centers is not None:
        return float(value), (grad_f, grad_c)
    for k, class_members in enumerate(members):  # c_k = (1/n_k) Σ_{i in k} f_i ⇒ ∂L/∂f_i += (1/n_k) ∂L/∂c_k
        for i in class_members:
            grad_f[i] += grad_c[k] / len(class_members)
    return float(value), grad_f
