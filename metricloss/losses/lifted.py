"""Lifted structure losses on a labelled batch: Oh Song et al.'s smooth lifted structured loss over positive pairs,
and Hermans et al.'s generalized lifted structure loss over anchors.

Both are log-sum-exps over the batch's negatives, computed from per-row sums: the lifted loss combines two of them
per positive pair, log(S_i + S_j) = logaddexp(log S_i, log S_j), so it costs O(B²), not O(B³), and each row's sum
is shifted by its largest exponent (no overflow for large margins or distances). The kernels write the cotangent
∂L/∂D over the distance matrix; one pullback turns it into the gradient. Both run in blocks of anchor rows; the
lifted loss's pairs read other rows' log-sum-exps, which a first pass over the blocks computes.
"""

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, class_index, labelled_batch
from .._kernels import NO_SELF
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import check_margin, check_option, finite_or_refused
from ..distances import SYMMETRIC_DISTANCES
from .triplet import INCOMPLETE_ANCHORS


@array_route
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

    It runs in blocks of anchor rows when its matrix exceeds the working memory (:func:`metricloss.set_config`). A
    pair reads the negative log-sum-exps of both its ends, which other blocks hold, so the blocks are read in
    passes that exchange O(B + R) numbers: the log-sum-exps λ of every row (and, with references, of every
    reference's column, each block's combined by log-sum-exp); with references, each reference's coefficient
    Σ_i [J_ij]₊ (1 − σ_ij); then the terms and the cotangent.

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
        in_blocks=True,
    )
    # Within one batch every unordered pair appears twice, (i, j) and (j, i), in the per-row sums: halve the value,
    # the counts and the weight.
    copies = 2 if batch.ref is None else 1
    # A pair reads the negative log-sum-exps of both its ends, which other blocks hold: passes over the blocks first.
    statistics = _negative_statistics(batch, margin) if batch.in_blocks else None
    totals = [0.0, 0, 0]  # Σ ½[J]₊², the positive pairs, those with J > 0 (each twice within one batch)
    grads = GradientSum(batch)
    for block in batch.blocks():  # the block's pairs' terms; the kernels write the cotangent over d (g/d: Euclidean)
        values, n_pairs, n_active = _pair_terms(block, margin, batch.ref is None, statistics)
        totals[0] += float(np.sum(values))
        totals[1] += int(n_pairs.sum())
        totals[2] += int(n_active.sum())
        grads.pull(block, block.d, divided=block.fused_division)
    weight = weight_from_counts(reduction, totals[1] // copies, totals[2] // copies)
    return weight * totals[0] / copies, grads.result(weight / copies)


def _pair_terms(block, margin, within, statistics):
    """The block's positive pairs' terms ½[J_ij]₊², J_ij = logaddexp(λ_i, λ_j) + D_ij, per row (values, n_pairs,
    n_active), with the cotangent ∂L/∂D written over ``block.d``. ``statistics``: (row_lse, col_lse, col_coef) of
    the batch (:func:`_negative_statistics`) for a block of a batch in blocks; None for a batch that is its own one
    block, which computes them here."""
    kernels, classes, offset = block.kernels, block.classes, block.self_offset
    g, divide = block.d, block.fused_division  # the kernels write the cotangent over d (g/d for Euclidean)
    # λ_i = log Σ_{k ∈ N(i)} e^{m − D_ik} for the block's rows (and with references for its columns), and the
    # softmax weights e^{m − D_ik − λ_i} of the negatives written over g (the columns' over col_weights).
    block_row_lse, block_col_lse, col_weights, transposed_classes = _negative_softmax(block, margin, g, within)
    if statistics is None:  # the block is the batch: its log-sum-exps are the batch's
        row_lse = block_row_lse
        col_lse = row_lse if within else block_col_lse
        if within:  # the columns' shares are on the rows (below)
            col_coef = np.zeros(block.x.shape[0])
        else:  # col_weights' positive entries are still Dᵀ's distances
            col_coef = kernels.lifted_pairs(col_weights, transposed_classes, NO_SELF, col_lse, row_lse)[3]
    else:
        row_lse, col_lse, col_coef = statistics
        row_lse = row_lse[block.start : block.start + block.x.shape[0]]
        if not within:  # the columns' softmax weights over the block's queries, normalised by the whole column
            col_weights *= _share(block_col_lse, col_lse)[:, None]
    # Per positive pair: ½[J_ij]₊² and its slope [J_ij]₊ (c_ij before the weight w); per row α_i = Σ_j c_ij σ_ij.
    values, n_pairs, n_active, row_coef = kernels.lifted_pairs(block.d, classes, offset, row_lse, col_lse)
    # Within one batch D is symmetric, so the column sums are the row sums, and the negative D_ik's two shares
    # (through i's pairs and through k's) can both be put on row i's entry: the pullback adds g and gᵀ. So row i's
    # negatives carry 2α_i and the columns nothing.
    if within:
        row_coef *= 2
    # ∂L/∂D_ij = c_ij on the positive pairs, −e^{m − D_ik − λ_i} α_i (and the column's share) on the negatives.
    kernels.lifted_cotangent(block.d, classes, offset, row_lse, col_lse, row_coef, col_coef, col_weights, g, divide)
    return values, n_pairs, n_active


def _negative_statistics(batch, margin):
    """The passes over the blocks of a batch in blocks, before its terms: every row's (and reference column's)
    negative log-sum-exp λ, O(B + R), and the columns' coefficients, with references each reference's share of its
    pairs' slopes, O(R) (within one batch the columns' shares are on the rows: zeros): (row_lse, col_lse, col_coef)."""
    row_lse, col_lse = _negative_log_sum_exps(batch, margin)
    if batch.ref is None:
        return row_lse, col_lse, np.zeros(batch.x.shape[0])
    return row_lse, col_lse, _column_coefficients(batch, row_lse, col_lse)


def _negative_softmax(block, margin, out, within):
    """The block's rows' negative log-sum-exps λ, with their softmax weights written over ``out``'s negatives, and,
    with references, its columns' over the block's queries, with theirs written over the negatives of a new array,
    the transposed block (whose other entries stay Dᵀ's distances), and the classes of that transposed view:
    (row_lse, col_lse, col_weights, transposed_classes). Within one batch D is symmetric, the columns are the
    rows: (row_lse, None, out, None), out standing for the column weights, which the cotangent then never reads."""
    kernels, divide = block.kernels, block.fused_division
    if within:
        return kernels.negative_softmax(block.d, block.classes, margin, out, divide), None, out, None
    # Reference j's column is a row of Dᵀ with the roles of queries and references exchanged; its softmax weights
    # are written over Dᵀ's negatives (taken before out, which may be d, is written).
    col_weights, transposed_classes = kernels.transposed(block.d), class_index(block.ref_labels, block.labels)
    col_lse = kernels.negative_softmax(col_weights, transposed_classes, margin, col_weights, divide)
    row_lse = kernels.negative_softmax(block.d, block.classes, margin, out, divide)
    return row_lse, col_lse, col_weights, transposed_classes


def _column_coefficients(batch, row_lse, col_lse):
    """Pass 2 of a batch in blocks with references: per reference j, its column's coefficient Σ_i [J_ij]₊ (1 − σ_ij)
    over its positive pairs, added up over the blocks of queries. Reference j's share of a pair's sum is
    1 − σ_ij, which lifted_pairs computes on Dᵀ (only its positive entries: distances) with the two log-sum-exps
    swapped."""
    kernels, col_coef = batch.kernels, np.zeros(batch.ref.shape[0])
    for block in batch.blocks():
        transposed_classes = class_index(block.ref_labels, block.labels)
        block_row_lse = row_lse[block.start : block.start + block.x.shape[0]]
        col_coef += kernels.lifted_pairs(
            kernels.transposed(block.d), transposed_classes, NO_SELF, col_lse, block_row_lse
        )[3]
    return col_coef


def _negative_log_sum_exps(batch, margin):
    """Pass 1 of a batch in blocks: every row's negative log-sum-exp λ_i and, with references, every reference
    column's, each block's column log-sum-exps (over its queries) combined by logaddexp: (row_lse, col_lse), the
    same array within one batch (D is symmetric)."""
    within = batch.ref is None
    row_lse = np.empty(batch.x.shape[0])
    col_lse = row_lse if within else np.full(batch.ref.shape[0], -np.inf)
    for block in batch.blocks():
        block_row_lse, block_col_lse, *_ = _negative_softmax(block, margin, block.d, within)  # weights unused
        row_lse[block.start : block.start + block.x.shape[0]] = block_row_lse
        if not within:
            np.logaddexp(col_lse, block_col_lse, out=col_lse)
    return row_lse, col_lse


def _share(part_lse, whole_lse):
    """e^{part − whole}, the share of a partial sum of exponentials in the whole, 0 where the part is empty."""
    empty = np.isneginf(part_lse)  # then the whole may be empty too: no −∞ − (−∞)
    return np.exp(np.where(empty, -np.inf, part_lse - np.where(empty, 0.0, whole_lse)))


@array_route
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
    It runs in blocks of anchor rows when its matrix exceeds the working memory (:func:`metricloss.set_config`).
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
            block.d, block.classes, block.self_offset, margin, keep, block.d, block.fused_division
        )
        totals += np.sum(terms), terms.size if keep else np.count_nonzero(complete), np.count_nonzero(terms > 0)
        grads.pull(block, block.d, divided=block.fused_division)
    weight = weight_from_counts(reduction, totals[1], totals[2])
    return float(weight * totals[0]), grads.result(weight)
