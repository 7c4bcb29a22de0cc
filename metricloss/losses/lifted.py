"""Lifted structure losses on a labelled batch: Oh Song et al.'s smooth lifted structured loss over positive pairs,
and Hermans et al.'s generalized lifted structure loss over anchors.

Both are log-sum-exps over the batch's negatives, computed from per-row sums: the lifted loss combines two of them
per positive pair, log(S_i + S_j) = logaddexp(log S_i, log S_j), so it costs O(B²), not O(B³), and each row's sum
is shifted by its largest exponent (no overflow for large margins or distances). The kernels write the cotangent
∂L/∂D over the distance matrix; one pullback turns it into the gradient.
"""

import numpy as np

from .._batch import GradientSum, class_index, labelled_batch
from .._kernels import NO_SELF
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import check_margin, check_option, finite_or_refused
from ..distances import SYMMETRIC_DISTANCES
from .triplet import INCOMPLETE_ANCHORS


@finite_or_refused
def lifted_structure_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    distance="euclidean",
    reduction="mean",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""Lifted structured loss (Oh Song et al. 2016, the smooth form): every positive pair against all the
    negative pairs that share one of its two ends.

    .. math::

        L = \frac{1}{2|P|} \sum_{(i,j) \in P} [J_{ij}]_+^2, \qquad
        J_{ij} = \log\Big(\sum_{(i,k) \in N} e^{m - D_{ik}} + \sum_{(j,l) \in N} e^{m - D_{jl}}\Big) + D_{ij}

    P is the set of unordered positive pairs (same label, i ≠ j), N the set of negative pairs (different labels).
    That is ``reduction="mean"`` of the terms ½[J_ij]₊² over P; ``"sum"`` is Σ_P ½[J_ij]₊², ``"mean_nonzero"``
    divides by #{J_ij > 0}.

    Computation: with λ_i = log Σ_{k ∈ N(i)} e^{m − D_ik}, each row's log-sum-exp shifted by its largest exponent
    m − min_k D_ik, J_ij = logaddexp(λ_i, λ_j) + D_ij: O(B²) time and memory. Gradient, with c_ij = w [J_ij]₊
    (w the reduction's weight) and σ_ij = e^{λ_i} / (e^{λ_i} + e^{λ_j}) the share of i's negatives in the pair's
    sum: ∂L/∂D_ij = c_ij on the positive pair, and each negative D_ik receives −e^{m − D_ik − λ_i} α_i from every
    pair through i, α_i = Σ_j c_ij σ_ij (the softmax weight of D_ik among i's negatives times the pairs' slopes).

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    margin : float >= 0, default 1.0
        m (the paper's α).
    distance : {"euclidean", "sqeuclidean", "cosine"}, default "euclidean"
        ``"dot"`` and ``"snr"`` are refused (a ValueError): the loss's kernels assume a symmetric distance >= 0.
        D; the paper's is Euclidean.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the terms ½[J_ij]₊², one per unordered positive pair; ``"mean"`` is the paper's 1/(2 ``|P|``) Σ [J]₊².
    ref_embeddings : array of shape (R, F), optional
        A reference set (query-vs-reference batches): the positive pairs are (query i, reference j) of one
        class, J_ij's negatives are query i's row (references of another class than i) and reference j's column
        (queries of another class than j). Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out. GPU embeddings (a torch CUDA tensor, a CuPy or numba device array) run on
        the GPU where they live, the value and gradients returned there (Euclidean distances; references, if any,
        on the GPU too; ``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F), the dtype of ``embeddings``; with references the tuple
        (grad_embeddings, grad_ref_embeddings)

    Notes
    -----
    A hinge is active iff J_ij > 0. A pair whose two ends have no negative (a batch of one class) has an empty
    sum: its log is −∞, so [J_ij]₊ = 0 and the pair costs nothing, with zero gradient (it still counts in ``|P|``
    for ``"mean"``). No positive pair, or one class only: ``(0.0, zeros)``.

    The paper, *pytorch-metric-learning* and *TensorFlow Addons* agree on this loss, including its normalisation:

    * pytorch-metric-learning: ``LiftedStructureLoss(neg_margin=m, pos_margin=0,
      distance=LpDistance(normalize_embeddings=False))`` (its default ``LpDistance()`` normalises the
      embeddings; metricloss never does). PML sums over ordered pairs (i, j) and (j, i) with the term ½[J]₊², so
      its ``MeanReducer`` gives the same value, its ``AvgNonZeroReducer`` is ``reduction="mean_nonzero"`` and
      its ``SumReducer`` twice ``reduction="sum"``. Its margins enter only as neg_margin − pos_margin (J is
      shifted by both): ``neg_margin=a, pos_margin=b`` is ``margin=a − b``. ``LpDistance(power=2)`` is
      ``distance="sqeuclidean"``. With ``ref_emb=`` PML differs: it takes a pair's negatives from the query rows
      i and j (it compares a reference index with query indices), where this takes query i's row and
      reference j's column.
    * TensorFlow Addons: ``lifted_struct_loss(labels, embeddings, margin)`` (Euclidean distances, 0.25 Σ over
      ordered pairs / ``|P|``: the same value) equals the default; for a batch of one class it returns NaN (0 here).

    See Also
    --------
    metricloss.textbook.lifted_structure_loss : the formula as loops, the gradient term by term.

    References
    ----------
    H. Oh Song, Y. Xiang, S. Jegelka, S. Savarese. Deep Metric Learning via Lifted Structured Feature Embedding.
    CVPR 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import lifted_structure_loss
    >>> x = np.array([[0.0, 0.0], [0.0, 0.5], [0.8, 0.0]])
    >>> value, grad = lifted_structure_loss(x, np.array([0, 0, 1]))
    >>> round(value, 6)  # one pair: J = log(e^(1 − 0.8) + e^(1 − √0.89)) + 0.5; L = J²/2
    0.87651
    >>> grad.shape
    (3, 2)
    """
    check_margin(margin)
    check_option(reduction, "reduction", REDUCTIONS)
    batch = labelled_batch(
        embeddings,
        labels,
        distance=distance,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        distances=SYMMETRIC_DISTANCES,
        gpu_arrays=True,
    )
    d, kernels, classes = batch.d, batch.kernels, batch.classes
    g, divide = d, batch.fused_division  # the kernels write the cotangent over d (g/d for Euclidean distances)
    if batch.ref is None:
        # Within one batch every unordered pair appears twice, (i, j) and (j, i), in the per-row sums: halve the
        # value, the counts and the weight. D is symmetric, so the column sums are the row sums, and the negative
        # D_ik's two shares (through i's pairs and through k's) can both be put on row i's entry: the pullback
        # adds g and gᵀ. So row i's negatives carry 2α_i and the columns nothing.
        copies = 2
        row_lse = kernels.negative_softmax(d, *classes[:2], margin, g, divide)  # the weights go to g's negatives
        col_lse, col_weights = row_lse, g
        values, n_pairs, n_active, row_coef = kernels.lifted_pairs(d, *classes, 0, row_lse, col_lse)
        row_coef *= 2
        col_coef = np.zeros(d.shape[1])
    else:
        # Reference j's column is a row of Dᵀ with the roles of queries and references exchanged; its share of
        # the pair's sum is 1 − σ_ij, which lifted_pairs computes on Dᵀ with the two log-sum-exps swapped. Its
        # softmax weights are written over Dᵀ's negatives (taken before g, which may be d, is written).
        copies, col_weights = 1, kernels.transposed(d)
        classes_t = class_index(batch.ref_labels, batch.labels)
        col_lse = kernels.negative_softmax(col_weights, *classes_t[:2], margin, col_weights, divide)
        row_lse = kernels.negative_softmax(d, *classes[:2], margin, g, divide)
        values, n_pairs, n_active, row_coef = kernels.lifted_pairs(d, *classes, NO_SELF, row_lse, col_lse)
        col_coef = kernels.lifted_pairs(col_weights, *classes_t, NO_SELF, col_lse, row_lse)[3]
    weight = weight_from_counts(reduction, n_pairs.sum() // copies, n_active.sum() // copies)
    value = weight * float(np.sum(values)) / copies
    kernels.lifted_cotangent(
        d, *classes, batch.self_offset, row_lse, col_lse, row_coef, col_coef, col_weights, g, divide
    )
    del col_weights
    return batch.value(value), batch.pull(g, weight / copies, divided=divide)


@finite_or_refused
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
    backend=None,
):
    r"""Generalized lifted structure loss (Hermans, Beyer & Leibe 2017): per anchor, a smooth maximum of its
    positive distances against a smooth minimum of its negative distances.

    .. math::

        \ell_a = \Big[\log \sum_{p \in P(a)} e^{D_{ap}} + \log \sum_{n \in N(a)} e^{m - D_{an}}\Big]_+

    over the anchors a that have a positive p (same label, p ≠ a) and a negative n (another label), reduced by
    ``reduction`` (``"mean"``: divided by the number of those anchors).

    Gradient: where ℓ_a > 0, ∂ℓ_a/∂D_ap = e^{D_ap} / Σ_p e^{D_ap} and ∂ℓ_a/∂D_an = −e^{m − D_an} / Σ_n e^{m − D_an},
    two softmax weights over the anchor's row, each log-sum-exp shifted by its largest exponent; the B×R
    cotangent is written over the distance matrix and pulled back once.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    margin : float >= 0, default 1.0
        m.
    distance : {"euclidean", "sqeuclidean", "cosine"}, default "euclidean"
        ``"dot"`` and ``"snr"`` are refused (a ValueError): the loss's kernels assume a symmetric distance >= 0.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
    incomplete_anchors : {"drop", "keep"}, default "drop"
        Anchors without a positive or without a negative: dropped (the log of an empty sum is −∞, so the term
        is 0, and the anchor is not counted by ``"mean"``), or kept with the empty sum's log taken as 0 and
        every anchor counted (pytorch-metric-learning).
    ref_embeddings : array of shape (R, F), optional
        A reference set (query-vs-reference batches): anchors are the rows of ``embeddings``, positives and
        negatives are taken from the references. Give ``ref_labels`` with it.
    ref_labels : int array of shape (R,), optional
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out. GPU embeddings (a torch CUDA tensor, a CuPy or numba device array) run on
        the GPU where they live, the value and gradients returned there (Euclidean distances; references, if any,
        on the GPU too; ``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F), or with references the tuple (grad_embeddings, grad_ref_embeddings)

    Notes
    -----
    A term is active iff its argument is > 0. Nothing valid (no anchor with both a positive and a negative,
    under ``"drop"``) gives ``(0.0, zeros)``. Hermans et al. write the loss as a sum over the anchors; the mean
    is the same up to the batch size, and is what pytorch-metric-learning reports.

    *pytorch-metric-learning*: ``GeneralizedLiftedStructureLoss(neg_margin=m, pos_margin=0,
    distance=LpDistance(normalize_embeddings=False))`` is ``incomplete_anchors="keep"`` (its masked
    log-sum-exp is 0 for an empty set, and its ``MeanReducer`` averages over every row). Its margins enter only
    as neg_margin − pos_margin: ``neg_margin=a, pos_margin=b`` is ``margin=a − b``. ``LpDistance(power=2)`` is
    ``distance="sqeuclidean"``; ``AvgNonZeroReducer`` is ``reduction="mean_nonzero"``. With ``ref_emb=`` it pairs
    every query with the references, as here. Its default ``LpDistance()`` normalises the embeddings; metricloss
    never does.

    See Also
    --------
    metricloss.textbook.generalized_lifted_structure_loss : the formula as loops, the gradient term by term.

    References
    ----------
    A. Hermans, L. Beyer, B. Leibe. In Defense of the Triplet Loss for Person Re-Identification. 2017, section 2
    (the generalization of the lifted structured loss of Oh Song et al., CVPR 2016).

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import generalized_lifted_structure_loss
    >>> x = np.array([[0.0, 0.0], [0.0, 0.5], [0.8, 0.0]])
    >>> value, grad = generalized_lifted_structure_loss(x, np.array([0, 0, 1]))
    >>> round(value, 6)  # anchors 0 and 1: [0.5 + 1 − 0.8]₊ and [0.5 + 1 − √0.89]₊; 2 has no positive
    0.628301
    >>> grad  # ∂/∂x0 = ½((x0 − x1)/0.5 − (x0 − x2)/0.8) + ½(x0 − x1)/0.5 = (0.5, −1), ...
    array([[ 0.5       , -1.        ],
           [ 0.42399915,  0.73500053],
           [-0.92399915,  0.26499947]])
    """
    check_margin(margin)
    check_option(reduction, "reduction", REDUCTIONS)
    check_option(incomplete_anchors, "incomplete_anchors", INCOMPLETE_ANCHORS)
    batch = labelled_batch(
        embeddings,
        labels,
        distance=distance,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        distances=SYMMETRIC_DISTANCES,
        gpu_arrays=True,
        in_blocks=True,
    )
    keep = incomplete_anchors == "keep"
    totals = np.zeros(3)  # Σ terms, the anchors that have a term, the terms > 0
    grads = GradientSum(batch)
    for block in batch.blocks():  # each anchor's term from its row; the kernel writes the cotangent over d
        terms, complete = block.kernels.generalized_lifted_rows(
            block.d, *block.classes, block.self_offset, margin, keep, block.d, block.fused_division
        )
        totals += np.sum(terms), terms.size if keep else np.count_nonzero(complete), np.count_nonzero(terms > 0)
        grads.pull(block, block.d, divided=block.fused_division)
    weight = weight_from_counts(reduction, totals[1], totals[2])
    return batch.value(weight * totals[0]), grads.result(weight)
