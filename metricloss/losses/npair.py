"""The multi-class N-pair loss (Sohn 2016): each anchor's positive against the positives of the other pairs, a
softmax cross-entropy over the rows of the anchors × positives similarity matrix (dot products, the paper's, or
cosine similarities).

Two functions, one per calling form: :func:`npair_loss` on a labelled batch (pytorch-metric-learning's pairs, one
per class) and :func:`npair_pairs_loss` on explicit (anchors, positives) rows (Sohn's, and TF-Addons' targets for
class ids or label sets). Both run the same body on the pairs.

The row-wise softmax cross-entropy and its cotangent are the shared ``_logsumexp.softmax_cross_entropy_rows`` (the
SupCon and multiple-negatives ranking losses use it too), built on the row-wise log-sum-exp that the multi-similarity
and circle losses share.
"""

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, labelled_batch
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import (
    check_embeddings,
    check_labels,
    check_not_class_ids,
    check_option,
    check_same_shape,
    check_scalar,
    check_targets,
    finite_or_refused,
)
from ..distances import SIMILARITIES
from ._logsumexp import softmax_cross_entropy_rows


def _own_positive(block):
    """Per anchor row of the block, its target: its own pair's positive, weight 1 (Sohn's, every pair its own
    class); every anchor counts."""
    rows = np.arange(block.x.shape[0])
    return (rows, block.start + rows, np.ones(rows.size)), None


def _class_targets(block):
    """Per anchor row of the block, its targets: weight 1/n_i on each of the n_i positives of its class (TF-Addons'
    soft targets)."""
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


def _pair_targets(labels, n):
    """The pairs' class labels (each pair its own class where there are none, or label sets) and the targets of a
    block of anchor rows: ``targets(block)`` is ((rows, cols, weights), which anchors count or None)."""
    if labels is None:
        return np.arange(n), _own_positive
    labels_array = np.asarray(labels)
    if labels_array.ndim == 2 and labels_array.shape[1] > 1:  # one column would be class ids: check_labels says so
        indicators = check_targets(
            labels_array, (n, labels_array.shape[1]), "labels", allowed=(0, 1), against="anchors"
        )
        return np.arange(n), _shared_label_targets(indicators.astype(np.float32))
    return check_labels(labels, n, against="anchors"), _class_targets  # compared exactly, any integer dtype


def _npair(anchors, positives, pair_labels, targets, l2_reg, similarity, reduction, backend):
    """Value and (∂L/∂anchors, ∂L/∂positives) of the N-pair loss on checked pairs: a batch of the anchors against
    the positives, its logits z_ij = S(f_i, f_j⁺) block by block of anchor rows (each row's softmax is its own)."""
    n = anchors.shape[0]
    batch = labelled_batch(
        anchors,
        pair_labels,
        similarity=similarity,
        ref_embeddings=positives,
        ref_labels=pair_labels,
        backend=backend,
        name="anchors",
        ref_name="positives",
        in_blocks=True,
    )
    total, n_counted, n_nonzero = 0.0, 0, 0
    grads = GradientSum(batch)
    for block in batch.blocks():
        # z_ij = S(f_i, f_j⁺); the similarity's pullback turns the cotangent G of the logits into ∂L/∂f and ∂L/∂f⁺
        # (for dot products (G P, Gᵀ A): ∂z_ij/∂f_i = f_j⁺ and ∂z_ij/∂f_j⁺ = f_i).
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


def _checked_options(l2_reg, similarity, reduction):
    check_option(similarity, "similarity", SIMILARITIES)
    check_option(reduction, "reduction", REDUCTIONS)
    return check_scalar(l2_reg, "l2_reg", low=0.0, why=" (a negative weight rewards large embeddings)")


def _one_pair_per_class(labels):
    """pytorch-metric-learning's pairs: for each class with two samples or more, its first two (lowest indices),
    as (anchors, positives), ordered by anchor."""
    class_order = np.argsort(labels, kind="stable")  # each class's samples together, in batch order
    grouped = labels[class_order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])  # where each class begins
    first = starts[np.diff(np.r_[starts, labels.size]) >= 2]  # the classes of two samples or more
    anchors, positives = class_order[first], class_order[first + 1]
    order = np.argsort(anchors)
    return anchors[order], positives[order]


_LABELS_ELSEWHERE = (
    "for a labelled batch call npair_loss(embeddings, labels); the pairs' own class ids are the third argument, "
    "npair_pairs_loss(anchors, positives, labels)"
)


def _check_batch_labels(labels, n):
    """The labelled batch's class ids; rows of floats where the labels belong are the pairs' positives, by the
    look: the message says which function takes those."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.dtype.kind == "f":
        raise TypeError(
            f"labels must be integer class ids of shape ({n},); got a 2-D float array {array.shape}, positives by the "
            "look: for explicit (anchor, positive) pairs call npair_pairs_loss(anchors, positives)"
        )
    return check_labels(labels, n)


@array_route
@finite_or_refused
def npair_loss(embeddings, labels, *, l2_reg=0.0, similarity="dot", reduction="mean", backend=None):
    r"""The multi-class N-pair loss on a labelled batch: each class with two samples or more gives one pair, its
    first two samples (pytorch-metric-learning's choice); each pair's anchor should be more similar to its own
    positive than to the positives of the other pairs.

    .. math::

        L = \frac1N \sum_{i=1}^N \log\Big(1 + \sum_{j \ne i} e^{S(f_i, f_j^+) - S(f_i, f_i^+)}\Big)
            + \frac{\lambda}{N} \sum_{i=1}^N \big(\|f_i\|^2 + \|f_i^+\|^2\big)

    over the N pairs (f_i, f_i⁺) so taken, all of distinct classes; S the dot product (Sohn's) or the cosine
    similarity. Each term is the softmax cross-entropy of row i of the logits z_ij = S(f_i, f_j⁺) against the
    target i. The pairs' gradients land on their rows of the batch; a sample in no pair gets 0.

    Gradient: the cotangent of the logits is G = w (softmax(z) − t) row by row (w the reduction's weight), written
    over z by one stable pass (log-sum-exp shifted by each row's maximum); the similarity's pullback turns it into
    the pairs' gradients (for dot products two GEMMs, ∂L/∂f = G P and ∂L/∂f⁺ = Gᵀ A), plus 2λ/N · f for the
    regulariser. Memory: the logits of a block of anchor rows against the N positives, N × N where they fit the
    working memory (the cotangent overwrites them).

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    l2_reg : float >= 0, default 0.0
        λ of the regulariser (λ/N) Σ (‖f_i‖² + ‖f_i⁺‖²) over the N pairs, whatever the reduction. Off by default,
        as in the loss's definition; see Notes for other libraries' weights.
    similarity : {"dot", "cosine"}, default "dot"
        S: Sohn's dot product, or the cosine similarity f̂_i · f̂_j⁺ (the dot product of the rows scaled to unit
        norm, a zero row's 0; logits in [−1, 1]), which pytorch-metric-learning's default computes. The
        regulariser reads the raw norms in either case.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the N pairs' anchors: ``"mean"`` is the paper's 1/N; ``"mean_nonzero"`` counts the anchors whose loss
        is > 0 (all, unless a loss underflows to 0).
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the similarity's engine (the N-pair body has no kernel of its own); default
        ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an NVIDIA GPU, host arrays copied in and out
        (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F), the dtype of ``embeddings`` (0 on the samples that are in no pair)

    Notes
    -----
    One pair (N = 1) costs log(1 + 0) = 0. A batch with no class of two samples has no pair: (0.0, zeros). The
    first two samples of a class pair up, so permuting the batch can change the pairs (and the value). The value is
    a sum of non-negative float64 parts, log1p(Σ_{j≠top} e^{z_ij − m_i}) + (m_i − z_ii), with m_i the row's
    maximum: finite for any finite logits, and a tiny loss keeps its digits. It runs in blocks of anchor rows when
    its N × N logits exceed the working memory (:func:`metricloss.set_config`).

    Explicit pairs, (anchors, positives) rows with or without class ids or label sets (Sohn's and TF-Addons'
    forms), are :func:`npair_pairs_loss`: the same loss, the pairs given rather than taken from the batch.

    *pytorch-metric-learning*: ``NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))(embeddings,
    labels)`` is ``npair_loss(embeddings, labels)``: the same pairs (the first two samples of each class), taken in
    another order (PML sorts them by label, here by anchor), which does not change the loss. PML's default
    ``NPairsLoss()`` (``DotProductSimilarity()``, which normalises the embeddings first) is
    ``similarity="cosine"``. Its ``embedding_regularizer=LpRegularizer(power=2), embedding_reg_weight=w`` adds w
    times the mean of ‖x‖² over all B rows, picked or not: ``l2_reg=w/2`` when every class has exactly two
    samples, different otherwise. Its ``SumReducer`` and ``AvgNonZeroReducer`` are ``reduction="sum"`` and
    ``"mean_nonzero"``.

    See Also
    --------
    npair_pairs_loss : the same loss on explicit (anchor, positive) pairs.
    metricloss.textbook.npair_loss : the formula as loops, the gradient term by term.

    References
    ----------
    K. Sohn. Improved Deep Metric Learning with Multi-class N-pair Loss Objective. NeurIPS 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import npair_loss

    Rows 0 and 3 (class 7), rows 2 and 4 (class 5) make two pairs, anchors = positives = I₂; row 1 is alone.

    >>> x = np.array([[1.0, 0.0], [5.0, 5.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    >>> value, grad = npair_loss(x, np.array([7, 9, 5, 7, 5]))
    >>> round(value, 6)  # z = I: each pair costs log(1 + e^(0 − 1))
    0.313262
    >>> grad[:3]  # (softmax − target)/2 = ±(1/(1 + e))/2, times the positives; row 1 in no pair
    array([[-0.13447071,  0.13447071],
           [ 0.        ,  0.        ],
           [ 0.13447071, -0.13447071]])
    """
    l2_reg = _checked_options(l2_reg, similarity, reduction)
    x = check_embeddings(embeddings)
    labels = _check_batch_labels(labels, x.shape[0])
    anchors, positives = _one_pair_per_class(labels)
    grad = np.zeros_like(x)
    if anchors.size == 0:
        return 0.0, grad
    value, grad[anchors], grad[positives] = _npair(
        x[anchors], x[positives], np.arange(anchors.size), _own_positive, l2_reg, similarity, reduction, backend
    )
    return value, grad


@array_route
@finite_or_refused
def npair_pairs_loss(anchors, positives, labels=None, *, l2_reg=0.0, similarity="dot", reduction="mean", backend=None):
    r"""The multi-class N-pair loss on explicit pairs: N pairs (f_i, f_i⁺), row i of ``anchors`` and of
    ``positives``; each anchor should be more similar to its own positive than to the positives of the other pairs.

    .. math::

        L = \frac1N \sum_{i=1}^N \log\Big(1 + \sum_{j \ne i} e^{S(f_i, f_j^+) - S(f_i, f_i^+)}\Big)
            + \frac{\lambda}{N} \sum_{i=1}^N \big(\|f_i\|^2 + \|f_i^+\|^2\big)

    S the dot product (Sohn's) or the cosine similarity. Each term is the softmax cross-entropy of row i of the
    logits z_ij = S(f_i, f_j⁺) against the target i. With ``labels``, repeated classes among the pairs are allowed
    (TF-Addons' form): anchor i's target is spread evenly over the positives of its class,
    t_ij = [y_j = y_i] / #{k : y_k = y_i}, and ℓ_i = −Σ_j t_ij log softmax(z_i)_j; distinct labels give the
    formula above. Label sets (a 0/1 matrix) give t_ij ∝ the number of labels i and j share.

    ==========================================  ==================================================
    call                                        pairs
    ==========================================  ==================================================
    ``npair_pairs_loss(anchors, positives)``    row i of each: pair i, all classes distinct (Sohn's
                                                N-pair-mc)
    ``..., labels)``, labels (N,)               class ids: soft targets over same-class positives
    ``..., labels)``, labels (N, C) of 0/1      label sets: t_ij ∝ the number of labels i and j
                                                share
    ==========================================  ==================================================

    Gradient: the cotangent of the logits is G = w (softmax(z) − t) row by row (w the reduction's weight), written
    over z by one stable pass (log-sum-exp shifted by each row's maximum); the similarity's pullback turns it into
    ∂L/∂f and ∂L/∂f⁺ (for dot products two GEMMs, G P and Gᵀ A), plus 2λ/N · f for the regulariser. Memory: the
    logits of a block of anchor rows against the N positives, N × N where they fit the working memory (the
    cotangent overwrites them), and their targets: a row each, the n_i of its class for class labels; for label
    sets the block's count matrix and its non-zero entries (up to 8 such float32 matrices in all when most pairs
    share a label).

    Parameters
    ----------
    anchors : array of shape (N, F), float32 or float64
        The anchors f_i, row i paired with row i of ``positives``.
    positives : array of shape (N, F), float32 or float64
        The positives f_i⁺. Not normalised by the dot product: the paper regularises the norms instead (``l2_reg``).
    labels : array, optional
        None (every pair its own class), int class ids of shape (N,), or a 0/1 (or boolean) indicator of shape
        (N, C), C >= 2, row i the label set of pair i.
    l2_reg : float >= 0, default 0.0
        λ of the regulariser (λ/N) Σ (‖f_i‖² + ‖f_i⁺‖²), over the N pairs whatever the reduction. Off by default,
        as in the loss's definition; see Notes for other libraries' weights.
    similarity : {"dot", "cosine"}, default "dot"
        S: Sohn's dot product, or the cosine similarity f̂_i · f̂_j⁺ (the dot product of the rows scaled to unit
        norm, a zero row's 0; logits in [−1, 1]). The regulariser reads the raw norms in either case.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the N anchors (those with a label, for label sets): ``"mean"`` is the paper's 1/N; ``"mean_nonzero"``
        counts the anchors whose loss is > 0 (all, unless a loss underflows to 0).
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module of the similarity's engine (the N-pair body has no kernel of its own); default
        ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs them on an NVIDIA GPU, host arrays copied in and out
        (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : tuple (grad_anchors, grad_positives) of shape (N, F) each, typed like its argument

    Notes
    -----
    One pair (N = 1) costs log(1 + 0) = 0. Label sets: an anchor with no label has no target and is left out (of
    the sum and of the mean's count); its positive is still a negative for the other anchors. The value is a sum
    of non-negative float64 parts, log1p(Σ_{j≠top} e^{z_ij − m_i}) + Σ_j t_ij (m_i − z_ij), with m_i the row's
    maximum: finite for any finite logits, and a tiny loss (1e-22, say, where log-sum-exp minus z_ii would round to
    0) keeps its digits. It runs in blocks of anchor rows when its N × N logits exceed the working memory
    (:func:`metricloss.set_config`): each anchor's softmax is over its own row of logits.

    The pairs taken from a labelled batch (pytorch-metric-learning's ``NPairsLoss``) are :func:`npair_loss`. The
    loss takes embeddings, not a similarity matrix, because it is defined on them and the gradient a model needs is
    theirs. With ``similarity="cosine"`` it is :func:`multiple_negatives_ranking_loss` at ``scale=1.0``.

    *Sohn (2016)*: ``npair_pairs_loss(anchors, positives)``; the pairs must come from N different classes. The
    paper regularises the squared L2 norms of the embeddings rather than normalising them. The TensorFlow
    implementation that cites it, ``tf.contrib.losses.metric_learning.npairs_loss(labels, anchors, positives,
    reg_lambda=0.002)`` (and Paddle's ``npair_loss(..., l2_reg=0.002)``), adds 0.25 λ' (mean ‖f_i‖² + mean
    ‖f_i⁺‖²): that is ``l2_reg=λ'/4`` here (0.0005 for its default), with ``labels``.

    *TensorFlow Addons* takes the similarity matrix, not the embeddings: ``npairs_loss(y_true=labels,
    y_pred=anchors @ positives.T)`` is ``npair_pairs_loss(anchors, positives, labels)``, and
    ``npairs_multilabel_loss(y_true=indicators, y_pred=anchors @ positives.T)`` is ``npair_pairs_loss(anchors,
    positives, indicators)``, values and gradients through the product, except that an anchor without a label makes
    TF-Addons' loss NaN (0/0 targets) where it is left out here.

    See Also
    --------
    npair_loss : the same loss on the pairs of a labelled batch.
    metricloss.textbook.npair_pairs_loss : the formula as loops, the gradient term by term.

    References
    ----------
    K. Sohn. Improved Deep Metric Learning with Multi-class N-pair Loss Objective. NeurIPS 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import npair_pairs_loss
    >>> anchors = positives = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> value, (g_anchors, g_positives) = npair_pairs_loss(anchors, positives)
    >>> round(value, 6)  # z = I: each row costs log(1 + e^(0 − 1))
    0.313262
    >>> g_anchors  # (softmax − target)/2 = ±(1/(1 + e))/2, times the positives (the identity)
    array([[-0.13447071,  0.13447071],
           [ 0.13447071, -0.13447071]])
    """
    l2_reg = _checked_options(l2_reg, similarity, reduction)
    anchors = check_embeddings(anchors, "anchors")
    positives = check_embeddings(check_not_class_ids(positives, "positives", _LABELS_ELSEWHERE), "positives")
    check_same_shape(positives, "positives", anchors, "anchors")
    pair_labels, targets = _pair_targets(labels, anchors.shape[0])
    value, grad_anchors, grad_positives = _npair(
        anchors, positives, pair_labels, targets, l2_reg, similarity, reduction, backend
    )
    return value, (grad_anchors, grad_positives)
