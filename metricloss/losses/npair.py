"""The multi-class N-pair loss (Sohn 2016): each anchor's positive against the positives of the other pairs, a
softmax cross-entropy over the rows of the anchors × positives dot-product matrix.

The row-wise softmax cross-entropy and its cotangent are the shared ``_logsumexp.softmax_cross_entropy_rows`` (the
SupCon and multiple-negatives ranking losses use it too), built on the row-wise log-sum-exp that the multi-similarity
and circle losses share.
"""

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, class_index, labelled_batch
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import (
    check_embeddings,
    check_given,
    check_labels,
    check_not_class_ids,
    check_option,
    check_same_shape,
    check_scalar,
    check_targets,
    finite_or_refused,
)
from ._logsumexp import softmax_cross_entropy_rows


def _class_targets(block):
    """Per anchor row of the block, its targets: weight 1/n_i on each of the n_i positives of its class (TF-Addons'
    soft targets; with every pair its own class, the paper's, its own positive alone, weight 1)."""
    rows, cols = block.positive_entries()
    n_positives, _ = block.candidate_counts()
    return (rows, cols, 1.0 / n_positives[rows]), None


def _shared_label_targets(indicators):
    """TF-Addons' multi-label targets, block by block of anchor rows: t_ij ∝ |labels(i) ∩ labels(j)|, each row
    normalised to sum 1; rows without a label have no target (the second result marks the rows that do)."""

    def targets(block):
        rows = slice(block.start, block.start + block.x.shape[0])
        shared = indicators[rows] @ indicators.T  # |labels(i) ∩ labels(j)|, exact in float32 below 2²⁴ labels
        counts = shared.sum(axis=1, dtype=np.float64)
        rows, cols = np.nonzero(shared)
        return (rows, cols, shared[rows, cols] / counts[rows]), counts > 0

    return targets


def _two_view_targets(labels, n):
    """The pairs' class labels for the batch (each pair its own class where there are none, or label sets) and the
    targets of a block of anchor rows: ``targets(block)`` is ((rows, cols, weights), which anchors count or None)."""
    if labels is None:
        return np.arange(n), _class_targets
    labels_array = np.asarray(labels)
    if labels_array.ndim == 2 and labels_array.shape[1] > 1:  # one column would be class ids: check_labels says so
        indicators = check_targets(
            labels_array, (n, labels_array.shape[1]), "labels", allowed=(0, 1), against="embeddings"
        )
        return np.arange(n), _shared_label_targets(indicators.astype(np.float32))
    return check_labels(labels, n), _class_targets  # class_index compares any integer dtype exactly


def _npair(anchors, positives, pair_labels, targets, l2_reg, reduction):
    """Value and (∂L/∂anchors, ∂L/∂positives) of the N-pair loss on checked pairs: a batch of the anchors against
    the positives, its logits z_ij = f_i · f_j⁺ block by block of anchor rows (each row's softmax is its own)."""
    n = anchors.shape[0]
    batch = labelled_batch(
        anchors,
        pair_labels,
        similarity="dot",
        ref_embeddings=positives,
        ref_labels=pair_labels,
        backend="numpy",
        ref_name="positives",
        in_blocks=True,
    )
    total, n_counted, n_nonzero = 0.0, 0, 0
    grads = GradientSum(batch)
    for block in batch.blocks():
        # z_ij = f_i · f_j⁺; the pullback of a cotangent G is (G P, Gᵀ A): ∂z_ij/∂f_i = f_j⁺ and ∂z_ij/∂f_j⁺ = f_i.
        (rows, cols, weights), counted = targets(block)
        losses = softmax_cross_entropy_rows(block.s, rows, cols, weights)
        g = block.s  # now softmax(z) − t: the cotangent of each row's loss
        if counted is not None:
            g[~counted] = 0
            losses = losses[counted]
        total += float(np.sum(losses))
        n_counted += losses.size
        n_nonzero += np.count_nonzero(losses > 0)
        grads.pull(block, g)
    weight = weight_from_counts(reduction, n_counted, n_nonzero)
    value = weight * total
    grad_anchors, grad_positives = grads.result(weight)
    if l2_reg:
        # λ/N Σ_i (‖f_i‖² + ‖f_i⁺‖²): gradient 2λ/N f for each row of either view.
        value += l2_reg / n * float(np.sum(anchors.astype(np.float64) ** 2) + np.sum(positives.astype(np.float64) ** 2))
        grad_anchors += (2 * l2_reg / n) * anchors
        grad_positives += (2 * l2_reg / n) * positives
    return value, grad_anchors, grad_positives


def _one_pair_per_class(labels):
    """pytorch-metric-learning's pairs: for each class with two samples or more, its first two (lowest indices),
    as (anchors, positives), ordered by anchor."""
    _, _, class_order, class_starts = class_index(labels, labels)
    first = class_starts[:-1][np.diff(class_starts) >= 2]
    anchors, positives = class_order[first], class_order[first + 1]
    order = np.argsort(anchors)
    return anchors[order], positives[order]


@array_route
@finite_or_refused
def npair_loss(embeddings, positives=None, labels=None, *, l2_reg=0.0, reduction="mean"):
    r"""The multi-class N-pair loss: N pairs (f_i, f_i⁺) from N classes; each anchor f_i should be more similar
    (dot product) to its own positive than to the positives of the other pairs.

    .. math::

        L = \frac1N \sum_{i=1}^N \log\Big(1 + \sum_{j \ne i} e^{f_i \cdot f_j^+ - f_i \cdot f_i^+}\Big)
            + \frac{\lambda}{N} \sum_{i=1}^N \big(\|f_i\|^2 + \|f_i^+\|^2\big)

    Each term is the softmax cross-entropy of row i of the logits z_ij = f_i · f_j⁺ against the target i. With
    ``labels``, repeated classes among the pairs are allowed (TF-Addons' form): anchor i's target is spread evenly
    over the positives of its class, t_ij = [y_j = y_i] / #{k : y_k = y_i}, and ℓ_i = −Σ_j t_ij log softmax(z_i)_j;
    distinct labels give the formula above.

    Three ways to call it; the structure of the return follows the arrays given, never a flag:

    ==========================================  ============================================  =====================
    call                                        pairs                                         gradient
    ==========================================  ============================================  =====================
    ``npair_loss(anchors, positives)``          row i of each: pair i, all classes distinct   (g_anchors, g_pos)
                                                (Sohn's N-pair-mc)
    ``npair_loss(anchors, positives, labels)``  labels (N,): class ids, soft targets over     (g_anchors, g_pos)
                                                same-class positives; labels (N, C) of 0/1:
                                                label sets, t_ij ∝ the number of labels i
                                                and j share
    ``npair_loss(embeddings, labels=labels)``   a labelled batch: each class with two         g_embeddings
                                                samples or more gives one pair, its first
                                                two (pytorch-metric-learning's choice)
    ==========================================  ============================================  =====================

    Gradient: the cotangent of the logits is G = w (softmax(z) − t) row by row (w the reduction's weight), written
    over z by one stable pass (log-sum-exp shifted by each row's maximum); the dot products pull it back with two
    GEMMs, ∂L/∂f = G P and ∂L/∂f⁺ = Gᵀ A, plus 2λ/N · f for the regulariser. Memory: the logits of a block of
    anchor rows against the N positives, N × N where they fit the working memory (the cotangent overwrites them),
    and their targets: a row each, the n_i of its class for class labels; for label sets the block's count matrix
    and its non-zero entries (up to 8 such float32 matrices in all when most pairs share a label).

    Parameters
    ----------
    embeddings : array of shape (N, F), float32 or float64
        The anchors f_i, row i paired with row i of ``positives``; without ``positives``, a labelled batch (B, F).
    positives : array of shape (N, F), optional
        The positives f_i⁺. Not normalised: the paper regularises the norms instead (``l2_reg``).
    labels : array, optional
        With ``positives``: None (every pair its own class), int class ids of shape (N,), or a 0/1 (or boolean)
        indicator of shape (N, C), C >= 2, row i the label set of pair i. Without ``positives``: int class ids of
        shape (B,) for the batch.
    l2_reg : float >= 0, default 0.0
        λ of the regulariser (λ/N) Σ (‖f_i‖² + ‖f_i⁺‖²), over the N pairs whatever the reduction. Off by default,
        as in the loss's definition; see Notes for other libraries' weights.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the N anchors (those with a label, for label sets): ``"mean"`` is the paper's 1/N; ``"mean_nonzero"``
        counts the anchors whose loss is > 0 (all, unless a loss underflows to 0).

    Returns
    -------
    value : float
    grad : tuple (grad_anchors, grad_positives) of shape (N, F) each; with a labelled batch, one array (B, F)
        (0 on the samples that are in no pair)

    Notes
    -----
    It runs in blocks of anchor rows when its N × N logits exceed the working memory (:func:`metricloss.set_config`):
    each anchor's softmax is over its own row of logits, so a block of anchors against every positive needs no other.

    One pair (N = 1) costs log(1 + 0) = 0. A labelled batch with no class of two samples has no pair: (0.0, zeros).
    Label sets: an anchor with no label has no target and is left out (of the sum and of the mean's count); its
    positive is still a negative for the other anchors. The value is a sum of non-negative float64 parts,
    log1p(Σ_{j≠top} e^{z_ij − m_i}) + Σ_j t_ij (m_i − z_ij), with m_i the row's maximum: finite for any finite
    logits, and a tiny loss (1e-22, say, where log-sum-exp minus z_ii would round to 0) keeps its digits.

    Why these calling structures: the labelled batch is the same loss on pairs taken from the batch, so it is a
    way of calling ``npair_loss`` rather than another function; its labels go by name because the second
    positional array is always the positives (1-D integers there are refused with that advice). The loss takes
    embeddings, not a similarity matrix, because it is defined on them and the gradient a model needs is theirs.

    *Sohn (2016)*: ``npair_loss(anchors, positives)``; the pairs must come from N different classes. The paper
    regularises the squared L2 norms of the embeddings rather than normalising them. The TensorFlow implementation
    that cites it, ``tf.contrib.losses.metric_learning.npairs_loss(labels, anchors, positives, reg_lambda=0.002)``
    (and Paddle's ``npair_loss(..., l2_reg=0.002)``), adds 0.25 λ' (mean ‖f_i‖² + mean ‖f_i⁺‖²): that is
    ``l2_reg=λ'/4`` here (0.0005 for its default), with ``labels``.

    *TensorFlow Addons* takes the similarity matrix, not the embeddings: ``npairs_loss(y_true=labels,
    y_pred=anchors @ positives.T)`` is ``npair_loss(anchors, positives, labels)``, and ``npairs_multilabel_loss(
    y_true=indicators, y_pred=anchors @ positives.T)`` is ``npair_loss(anchors, positives, indicators)``, values and
    gradients through the product, except that an anchor without a label makes TF-Addons' loss NaN (0/0 targets)
    where it is left out here.

    *pytorch-metric-learning*: ``NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))(embeddings,
    labels)`` is ``npair_loss(embeddings, labels=labels)``: the same pairs (the first two samples of each class),
    taken in another order (PML sorts them by label, here by anchor), which does not change the loss. PML's default
    ``DotProductSimilarity()`` normalises the embeddings first: the value is then ours on unit rows. Its
    ``embedding_regularizer=LpRegularizer(power=2), embedding_reg_weight=w`` adds w times the mean of ‖x‖² over all
    B rows, picked or not: ``l2_reg=w/2`` when every class has exactly two samples, different otherwise. Its
    ``SumReducer`` and ``AvgNonZeroReducer`` are ``reduction="sum"`` and ``"mean_nonzero"``.

    See Also
    --------
    metricloss.textbook.npair_loss : the formula as loops, the gradient term by term.

    References
    ----------
    K. Sohn. Improved Deep Metric Learning with Multi-class N-pair Loss Objective. NeurIPS 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import npair_loss
    >>> anchors = positives = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> value, (g_anchors, g_positives) = npair_loss(anchors, positives)
    >>> round(value, 6)  # z = I: each row costs log(1 + e^(0 − 1))
    0.313262
    >>> g_anchors  # (softmax − target)/2 = ±(1/(1 + e))/2, times the positives (the identity)
    array([[-0.13447071,  0.13447071],
           [ 0.13447071, -0.13447071]])

    A labelled batch: rows 0 and 3 (class 7), rows 2 and 4 (class 5) make the same two pairs; row 1 is alone.

    >>> x = np.array([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    >>> value, grad = npair_loss(x, labels=np.array([7, 9, 5, 7, 5]))
    >>> round(value, 6), grad[1]
    (0.313262, array([0., 0.]))
    """
    check_option(reduction, "reduction", REDUCTIONS)
    l2_reg = check_scalar(l2_reg, "l2_reg", low=0.0, why=" (a negative weight rewards large embeddings)")
    if positives is None:
        return _npair_on_labelled_batch(embeddings, labels, l2_reg, reduction)
    anchors = check_embeddings(embeddings)
    check_not_class_ids(
        positives, "positives", "for a labelled batch, name them: npair_loss(embeddings, labels=labels)"
    )
    positives = check_embeddings(positives, "positives")
    check_same_shape(positives, "positives", anchors, "embeddings")
    pair_labels, targets = _two_view_targets(labels, anchors.shape[0])
    value, grad_anchors, grad_positives = _npair(anchors, positives, pair_labels, targets, l2_reg, reduction)
    return value, (grad_anchors, grad_positives)


def _npair_on_labelled_batch(embeddings, labels, l2_reg, reduction):
    x = check_embeddings(embeddings)
    labels = check_given(labels, "labels", "when positives is None (a labelled batch, which gives one pair per class)")
    labels = check_labels(labels, x.shape[0])
    anchors, positives = _one_pair_per_class(labels)
    grad = np.zeros_like(x)
    if anchors.size == 0:
        return 0.0, grad
    value, grad[anchors], grad[positives] = _npair(
        x[anchors], x[positives], np.arange(anchors.size), _class_targets, l2_reg, reduction
    )
    return value, grad
