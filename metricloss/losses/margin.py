"""The margin loss (Wu et al. 2017): positive pairs closer than the boundary β − α, negative pairs farther than
β + α, with a boundary β that is fixed, shared and learnable, or learnable per class. Its sampler,
distance-weighted negatives, is :func:`metricloss.mining.distance_weighted_negatives`."""

import functools
import numbers

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, candidate_masks, labelled_batch
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import (
    check_class_indices,
    check_embeddings,
    check_float_array,
    check_labels,
    check_margin,
    check_option,
    check_scalar,
    finite_or_refused,
)
from ..distances import SYMMETRIC_DISTANCES
from .triplet import _given_in, _mined_triplets


@array_route
@finite_or_refused
def margin_loss(
    embeddings,
    labels,
    triplets=None,
    beta=None,
    *,
    margin=0.2,
    nu=0.0,
    distance="euclidean",
    reduction="mean_nonzero",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""The margin loss of "Sampling Matters": a hinge on each pair's distance around a boundary β.

    .. math::

        L = w \sum_{(a, p, n) \in T} \Big( [\alpha + d_{ap} - \beta_a]_+ + [\alpha + \beta_a - d_{an}]_+ \Big)
            + R(\beta)

    over a set T of triplets (a, p, n) (p of a's class, n of another), i.e. the paper's pair loss
    [α + y_ij(D_ij − β)]₊ on the pairs (a, p) (y = +1) and (a, n) (y = −1) that the triplets hold, each counted as
    often as a triplet holds it. w is the reduction's weight over the 2|T| pair terms: 1/#{terms > 0}
    (``"mean_nonzero"``, the default: pytorch-metric-learning divides by the number of active pair terms),
    1/(2|T|) (``"mean"``) or 1 (``"sum"``). β_a is β (a float, or an array of shape (1,)) or β[y_a], the boundary
    of the anchor's class (an array of shape (C,), indexed by ``labels``).

    *The pair set.* ``triplets=None`` (the default) is every triplet of the batch (pytorch-metric-learning's
    ``triplets_per_anchor="all"``): anchor a with P_a positives and N_a negatives holds each of its positive pairs
    N_a times and each negative pair P_a times; the sum is taken in that form, in O(B²) time and memory, without
    enumerating the triplets. ``triplets=(a, p, n)`` index arrays use those triplets, as the paper does with its
    sampler: ``triplets=distance_weighted_negatives(x, labels, rng=rng)``; any miner's output fits
    (:func:`metricloss.mine_triplets`, :func:`metricloss.batch_triplets`).

    *β.* Without ``beta`` (the default) β is the constant 1.2, the paper's initial value, and the gradient is the
    embeddings' alone (with references ``(grad_embeddings, grad_ref_embeddings)``). Given, ``beta`` is learnable:
    a float or an array of shape (1,) (one boundary shared by all classes, the paper's β⁽⁰⁾), or an array of shape
    (C,) (one per class, β⁽ᶜˡᵃˢˢ⁾; ``labels`` must then be class indices in [0, C)). Its gradient is then returned
    after the embeddings', in argument order: ``(grad_embeddings, grad_beta)``, with references
    ``(grad_embeddings, grad_beta, grad_ref_embeddings)``; ``grad_beta`` is shaped and typed like ``beta`` (a 0-d
    float64 array for a float). ν regularises a learnable β as pytorch-metric-learning does (the paper's
    ν(β⁽⁰⁾ + β⁽ᶜˡᵃˢˢ⁾)): R = ν·β for a shared β (not reduced), R = ν w Σ_{(a,p,n) ∈ T} β[y_a] per class (reduced
    like the hinge terms); without ``beta``, ``nu`` must be 0.

    Gradient. Where a hinge is active (argument > 0), ∂/∂d_ap = +1, ∂/∂d_an = −1, ∂/∂β_a = −1 (positive pair) or
    +1 (negative pair); so ∂L/∂d_ap = w N_a 1[active] and ∂L/∂d_an = −w P_a 1[active] over all triplets, and the
    cotangent on D goes through the distance's VJP. ∂R/∂β = ν (shared), ∂R/∂β_c = ν w #{triplets with y_a = c}.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
        The paper's embeddings are L2-normalised (the distance-weighted sampler assumes the unit sphere); this
        loss does not normalise them.
    labels : int array of shape (B,)
        Any integers; class indices in [0, C) when ``beta`` has shape (C,), C > 1.
    triplets : tuple of three int arrays (a, p, n) of equal length, optional
        The triplets T (p and n index ``ref_embeddings`` when given). Default: every triplet of the batch.
    beta : float, or array of shape (1,) or (C,), float32 or float64; optional
        β, the learnable boundary (above); without it the constant 1.2 (the paper's initial value and
        pytorch-metric-learning's). Any finite value is accepted, negative ones too: a learned β can cross 0 during
        training, and the loss and its gradients stay exact there (with β < 0 every positive pair is active, as
        pytorch-metric-learning computes it too, which does not bound β either).
    margin : float >= 0, default 0.2
        α, the paper's.
    nu : float >= 0, default 0.0
        ν, the regularisation of a learnable β (0: none, pytorch-metric-learning's default).
    distance : {"euclidean", "sqeuclidean", "cosine"}, default "euclidean"
        d, as in :func:`metricloss.pairwise_distances` (the paper's is Euclidean); ``"dot"`` and ``"snr"`` are
        refused (a ValueError): the boundary β is a distance on the sphere's scale, >= 0.
    reduction : {"mean_nonzero", "mean", "sum"}, default "mean_nonzero"
    ref_embeddings, ref_labels : optional
        A reference set (query-vs-reference batch): anchors are the embeddings, positives and negatives the
        references. β is indexed by the anchors' labels.
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F); with ``beta`` given the tuple (grad_embeddings, grad_beta); with references
        (grad_embeddings, grad_ref_embeddings), or (grad_embeddings, grad_beta, grad_ref_embeddings) with ``beta``.

    Notes
    -----
    A hinge is active iff its argument is > 0. Nothing valid (no triplet: one class, one sample, or ``triplets``
    empty) gives ``(0.0, zeros)``, also for a learnable β (no ν term either, as pytorch-metric-learning).

    It runs in blocks of anchor rows when its B×R distance matrix exceeds the working memory
    (:func:`metricloss.set_config`); a learnable β's gradient adds up over the blocks, as the embeddings' does.

    *pytorch-metric-learning*'s ``MarginLoss(margin, nu, beta, triplets_per_anchor="all", learn_beta,
    num_classes, distance=LpDistance(normalize_embeddings=False))`` is this loss with ``reduction="mean_nonzero"``
    (its ``DivisorReducer`` divides by the number of active pair terms): ``learn_beta=False`` is no ``beta`` for
    its default β = 1.2 (PML ignores ν then; here ν must be 0), or ``beta`` given with its gradient left unused
    (and ν = 0); ``learn_beta=True`` is ``beta`` of shape (1,) (``num_classes=None``) or (C,) (``num_classes=C``).
    Called with ``indices_tuple=(a, p, n)`` it is ``triplets=(a, p, n)``. It keeps β in a float32 tensor whatever
    the embeddings' dtype, so in float64 it computes with float32(β) (β = 1.2 is 1.2000000477): pass
    ``beta=float(np.float32(β))`` to reproduce it to the last digit. Its default ``LpDistance()`` normalises the
    embeddings first; normalise them before calling this loss to reproduce it. Its ``triplets_per_anchor=k`` (k
    random triplets per anchor, drawn with torch's generator) has no counterpart here: pass
    ``triplets=mine_triplets(x, labels, max_per_anchor=k, rng=...)`` (k distinct triplets per anchor). Its
    ``DistanceWeightedMiner`` is :func:`metricloss.mining.distance_weighted_negatives`, with the differences listed
    there.

    Through an adapter (:mod:`metricloss.adapters`) β is an array argument of the wrapped function, never a bound
    hyper-parameter: its gradient is always returned; a tensor that does not require a gradient holds it fixed.

    *The paper* also learns a β per image, β⁽ⁱᵐᵍ⁾, predicted by the network: that is β given per anchor, not
    provided here.

    See Also
    --------
    metricloss.textbook.margin_loss : the formula as loops, the gradient term by term.

    References
    ----------
    C.-Y. Wu, R. Manmatha, A. J. Smola, P. Krähenbühl. Sampling Matters in Deep Embedding Learning. ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import margin_loss
    >>> x = np.array([[0.0, 0.0], [1.5, 0.0], [1.0, 0.0]])
    >>> labels = np.array([0, 0, 1])
    >>> value, grad = margin_loss(x, labels)  # α = 0.2, β = 1.2; d_01 = 1.5, d_02 = 1, d_12 = 0.5
    >>> round(value, 12)  # triplets (0, 1, 2), (1, 0, 2): [0.2 + 1.5 − 1.2]₊ twice, [1.4 − 1]₊, [1.4 − 0.5]₊
    0.575
    >>> value, (grad_x, grad_beta) = margin_loss(x, labels, beta=np.array([1.2, 1.2]), nu=0.1)
    >>> round(value, 12)  # + ν w Σ_T β[y_a] = 0.1 · ¼ · (1.2 + 1.2)
    0.635
    >>> grad_beta  # class 0: w(−1 − 1 + 1 + 1) per active pair, + ν w · 2 triplets; class 1 anchors none
    array([0.05, 0.  ])
    """
    margin = check_margin(margin)
    nu = check_scalar(nu, "nu", low=0.0, why=" (a negative ν rewards a larger β)")
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x.shape[0])
    beta64 = _checked_beta(beta, nu, labels)
    check_option(reduction, "reduction", REDUCTIONS)
    batch = labelled_batch(
        x,
        labels,
        distance=distance,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        distances=SYMMETRIC_DISTANCES,
        in_blocks=True,
    )
    # β_a for every anchor (row): β[y_a] per class, else the one β. Labels index β only when it is per class.
    per_class = beta64.size > 1
    beta_class = np.asarray(labels, dtype=np.int64) if per_class else np.zeros(x.shape[0], dtype=np.int64)
    if triplets is None:
        value, grads, beta_part = _all_triplets(batch, margin, beta64, beta_class, reduction)
    else:
        triplets = batch.given_triplets(triplets)
        value, grads, beta_part = _given_triplets(batch, triplets, margin, beta64, beta_class, reduction)
    if beta is None:  # the constant β: no gradient for it
        return value, grads
    value, grad_beta = _with_beta_gradient(value, beta_part, nu, beta64)
    grad_beta = grad_beta.reshape(np.shape(beta)).astype(_beta_dtype(beta))
    grad_x, *grad_refs = grads if isinstance(grads, tuple) else (grads,)
    return value, (grad_x, grad_beta, *grad_refs)  # argument order: embeddings, beta, ref_embeddings


_CONSTANT_BETA = 1.2  # the paper's initial β, and pytorch-metric-learning's default


def _beta_dtype(beta):
    """The dtype of β's gradient: β's own, float64 for a float."""
    return np.float64 if isinstance(beta, numbers.Real) else np.asarray(beta).dtype


def _checked_beta(beta, nu, labels):
    """β checked against the checked labels and ν, as a float64 array of shape (1,) (the constant β where ``beta``
    is None, or a float or array of one entry) or (n_classes,)."""
    if beta is None:
        if nu != 0.0:
            raise ValueError(
                f"nu must be 0 without beta (the constant β = {_CONSTANT_BETA} needs no regularisation; pass beta, "
                f"a float or an array of shape (1,) or (n_classes,), to learn it); got {nu}"
            )
        return np.array([_CONSTANT_BETA])
    if isinstance(beta, numbers.Real) and not isinstance(beta, bool):  # a bool is refused below
        return np.array([check_scalar(beta, "beta")])
    beta_array = check_float_array(beta, "beta", ndim=1)
    if beta_array.shape[0] > 1:
        if labels.size and labels.min() >= 0 and labels.max() >= beta_array.shape[0]:
            raise ValueError(
                f"beta must have one entry per class, indexed by labels: shape (n_classes,) with n_classes > "
                f"{labels.max()}, the largest label; got shape {beta_array.shape} (shape (1,): one shared β)"
            )
        check_class_indices(labels, beta_array.shape[0], rows_of="beta")
    return beta_array.astype(np.float64)


def _with_beta_gradient(value, beta_part, nu, beta64):
    """For a learnable β: the value with the regulariser's term added, and ∂L/∂β (float64, the shape of
    ``beta64``); ``beta_part`` as :func:`_all_triplets` returns it."""
    grad_beta = np.zeros_like(beta64)
    if beta_part is not None:  # no triplet: no term, no ν term either (as PML)
        grad_beta, weight, counts = beta_part
        # R = ν β (shared, not reduced): ∂R/∂β = ν. R = ν w Σ_T β[y_a] = ν w Σ_c counts_c β_c (per class, counts_c
        # the triplets whose anchor is of class c): ∂R/∂β_c = ν w counts_c.
        if nu and beta64.size > 1:
            value += nu * weight * float(counts @ beta64)
            grad_beta = grad_beta + nu * weight * counts
        elif nu:
            value += nu * float(beta64[0])
            grad_beta = grad_beta + nu
    return value, grad_beta


_BLOCK_ELEMENTS = 1 << 16  # entries of D per slice of a block's rows: the float64 temporaries stay ≪ B²


def _all_triplets(batch, margin, beta64, beta_class, reduction):
    """Every triplet, as counts: anchor a holds each positive pair N_a times and each negative pair P_a times.
    Returns (value, grads, β's part): β's part is (the hinges' ∂L/∂β, w, the number of triplets per entry of β),
    None where there is no triplet. Works block by block of anchor rows (the batch's blocks), each in slices of
    rows, the cotangent g written over the block's D (g/d for the Euclidean distance, whose pullback would read D
    otherwise), so that its peak memory is the block's D and small float64 slices."""
    n_pos, n_neg = (count.astype(np.float64) for count in batch.candidate_counts())  # P_a, N_a (O(B), whole batch)
    n_triplets = n_pos * n_neg
    if not n_triplets.any():
        return 0.0, batch.zeros(), None
    total = 0.0
    pos_active = np.zeros(n_triplets.size)  # active positive terms of anchor a, each counted N_a times
    neg_active = np.zeros(n_triplets.size)
    grads = GradientSum(batch)
    for block in batch.blocks():
        n_anchors, n_refs = block.d.shape
        g, divide = block.d, block.fused_division  # each slice of g is written once its slice of d is read
        step = max(1, _BLOCK_ELEMENTS // max(n_refs, 1))
        for start in range(0, n_anchors, step):
            rows = slice(start, min(start + step, n_anchors))  # in the block
            at = slice(block.start + rows.start, block.start + rows.stop)  # in the batch
            same, other = candidate_masks(block, rows)
            d = block.d[rows].astype(np.float64)
            beta_a = beta64[beta_class[at]][:, None]
            h_pos = np.where(same, margin + d - beta_a, 0.0)  # [α + d_ap − β_a]₊ on the positive pairs
            h_neg = np.where(other, margin + beta_a - d, 0.0)  # [α + β_a − d_an]₊ on the negative pairs
            on_pos, on_neg = h_pos > 0, h_neg > 0
            # Anchors without positives or without negatives hold no triplet: their counts N_a or P_a are 0 there.
            pos_active[at] = on_pos.sum(axis=1) * n_neg[at]
            neg_active[at] = on_neg.sum(axis=1) * n_pos[at]
            total += n_neg[at] @ np.maximum(h_pos, 0).sum(axis=1) + n_pos[at] @ np.maximum(h_neg, 0).sum(axis=1)
            # ∂L/∂d_ap = w N_a 1[active], ∂L/∂d_an = −w P_a 1[active]; ∂L/∂β_a = w (P_a #active⁻ − N_a #active⁺).
            slopes = on_pos * n_neg[at, None] - on_neg * n_pos[at, None]
            g[rows] = np.divide(slopes, d, out=np.zeros_like(d), where=d != 0) if divide else slopes
        grads.pull(block, g, divided=divide)
    weight = weight_from_counts(reduction, 2 * n_triplets.sum(), pos_active.sum() + neg_active.sum())
    size = beta64.size
    grad_beta = weight * np.bincount(beta_class, weights=neg_active - pos_active, minlength=size)
    counts = np.bincount(beta_class, weights=n_triplets, minlength=size)
    return weight * float(total), grads.result(weight), (grad_beta, weight, counts)


def _given_triplets(batch, triplets, margin, beta64, beta_class, reduction):
    """The triplets given as index arrays, each a positive-pair and a negative-pair term, their distances read
    block by block of anchors; returns as :func:`_all_triplets`."""
    a, p, n, d_pos, d_neg = _mined_triplets(batch, functools.partial(_given_in, triplets=triplets))
    if a.size == 0:
        return 0.0, batch.zeros(), None
    beta_a = beta64[beta_class[a]]
    h_pos = margin + d_pos - beta_a
    h_neg = margin + beta_a - d_neg
    on_pos, on_neg = h_pos > 0, h_neg > 0
    weight = weight_from_counts(reduction, 2 * a.size, np.count_nonzero(on_pos) + np.count_nonzero(on_neg))
    total = float(np.sum(h_pos[on_pos]) + np.sum(h_neg[on_neg]))
    # Per triplet: +w on d_ap and −w on d_an where active (pull_pairs adds up repeated entries).
    rows, cols = np.concatenate([a, a]), np.concatenate([p, n])
    grads = batch.pull_pairs(rows, cols, weight * np.concatenate([on_pos, -1.0 * on_neg]))
    size = beta64.size
    grad_beta = weight * np.bincount(beta_class[a], weights=on_neg * 1.0 - on_pos, minlength=size)
    counts = np.bincount(beta_class[a], minlength=size).astype(np.float64)
    return weight * total, grads, (grad_beta, weight, counts)
