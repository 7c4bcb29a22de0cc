"""Triplet losses: on explicit (anchor, positive, negative) rows, and online, mined from a labelled batch."""

import functools

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, labelled_batch
from .._pairwise import lp_distance_rows
from .._reduce import REDUCTIONS, reduce_terms, weight_from_counts
from .._triplets import hardest_triplets, semihard_triplets
from .._validation import (
    check_bool,
    check_embeddings,
    check_margin,
    check_option,
    check_same_shape,
    check_scalar,
    finite_or_refused,
    promote,
)
from .pairs import _hinge


def _checked_rows(anchors, positives, negatives, margin, p, eps, swap, reduction):
    """:func:`triplet_margin_loss`'s rows and options checked together: the checked rows (anchors, positives,
    negatives), and (p, eps, swap) as Python numbers."""
    anchors = check_embeddings(anchors, "anchors")
    positives = check_embeddings(positives, "positives")
    negatives = check_embeddings(negatives, "negatives")
    check_same_shape(positives, "positives", anchors, "anchors")
    check_same_shape(negatives, "negatives", anchors, "anchors")
    check_margin(margin)
    p = check_scalar(p, "p", low=1.0, why=" (a norm's degree)")
    eps = check_scalar(eps, "eps", low=0.0)
    swap = check_bool(swap, "swap")
    check_option(reduction, "reduction", REDUCTIONS)
    return (anchors, positives, negatives), p, eps, swap


@array_route
@finite_or_refused
def triplet_margin_loss(anchors, positives, negatives, *, margin=1.0, p=2, eps=1e-6, swap=False, reduction="mean"):
    r"""Triplet margin loss on explicit rows: each anchor should be closer to its positive than to its negative
    by at least the margin.

    .. math::

        \ell_k = [m + d(a_k, p_k) - d(a_k, n_k)]_+, \qquad d(u, v) = \|u - v + \epsilon\|_p

    With ``swap=True`` (Balntas et al. 2016) the negative distance is min(d(a, n), d(p, n)). Gradient, where
    the hinge is active: ∂ℓ/∂d(a, p) = 1 and ∂ℓ/∂(the negative distance used) = −1, each pulled back through
    the row-wise p-norm, ∂‖u‖_p/∂u = sign(u)|u|^(p−1)/‖u‖_p^(p−1) (0 where ‖u‖_p = 0).

    Parameters
    ----------
    anchors, positives, negatives : arrays of shape (N, F), float32 or float64
        Row k of each is the triplet (a_k, p_k, n_k); torch's ``anchor, positive, negative``.
    margin : float >= 0, default 1.0
    p : float >= 1, default 2
        The norm's degree.
    eps : float >= 0, default 1e-6
        Added to every coordinate of the difference before the norm, as torch does; ``eps=0`` gives the exact
        distance.
    swap : bool, default False
        Use the distance from positive to negative where it is smaller (ties keep d(a, n)).
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"

    Returns
    -------
    value : float
    grad : tuple (grad_anchors, grad_positives, grad_negatives), each of shape (N, F)

    Notes
    -----
    The defaults are ``torch.nn.TripletMarginLoss``'s, and the loss is identical to it for every p and ``swap``
    (its ``anchor, positive, negative`` are ``anchors, positives, negatives``),
    except at exact ties: at the hinge's kink torch's gradient is the active one (metricloss's is 0), and where
    d(p, n) = d(a, n) under ``swap`` torch splits the gradient between the two (metricloss gives it all to
    d(a, n)). The default ε = 1e-6 is torch's; it biases the distance slightly and breaks its rotation
    invariance, so pass ``eps=0`` for the exact distance of Schroff et al. and Weinberger et al. FaceNet uses
    the squared distance; the online (batch) versions of this loss take ``distance="sqeuclidean"``.

    See Also
    --------
    metricloss.textbook.triplet_margin_loss : the formula as loops, the gradient term by term.

    References
    ----------
    K. Weinberger, L. Saul. Distance Metric Learning for Large Margin Nearest Neighbor Classification. JMLR 2009.
    V. Balntas, E. Riba, D. Ponsa, K. Mikolajczyk. Learning local feature descriptors with triplets and shallow
    convolutional neural networks. BMVC 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import triplet_margin_loss
    >>> a, p, n = np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.5, 0.0]])
    >>> value, (g_a, g_p, g_n) = triplet_margin_loss(a, p, n, eps=0.0)
    >>> value  # [1 + 1 − 1.5]₊
    0.5
    >>> g_a, g_p, g_n  # ∂d(a,p)/∂a = (a − p)/d = (0, −1); ∂d(a,n)/∂a = (−1, 0)
    (array([[ 1., -1.]]), array([[0., 1.]]), array([[-1.,  0.]]))
    """
    rows, p, eps, swap = _checked_rows(anchors, positives, negatives, margin, p, eps, swap, reduction)
    a, pos, neg = promote(*rows)
    d_ap, pull_ap = lp_distance_rows(a, pos, p, eps)
    d_an, pull_an = lp_distance_rows(a, neg, p, eps)
    d_neg, use_swap = d_an, np.zeros(d_an.shape, dtype=bool)
    if swap:
        d_pn, pull_pn = lp_distance_rows(pos, neg, p, eps)
        use_swap = d_pn < d_an
        d_neg = np.where(use_swap, d_pn, d_an)

    terms, active = _hinge(margin + d_ap - d_neg)
    value, g = reduce_terms(terms, active, reduction)
    # ∂L/∂d(a,p) = g,  ∂L/∂d(a,n) = −g where the swap is not taken,  ∂L/∂d(p,n) = −g where it is.
    g_a, g_p = pull_ap(g)
    g_a_from_an, g_n = pull_an(np.where(use_swap, 0, -g))
    g_a += g_a_from_an
    if swap:
        g_p_from_pn, g_n_from_pn = pull_pn(np.where(use_swap, -g, 0))
        g_p += g_p_from_pn
        g_n += g_n_from_pn
    return value, tuple(grad.astype(row.dtype, copy=False) for grad, row in zip((g_a, g_p, g_n), rows, strict=True))


MININGS = ("all", "hard", "semihard", "all_semihard")
INCOMPLETE_ANCHORS = ("drop", "keep")
_DEFAULT_REDUCTION = {"all": "mean_nonzero", "all_semihard": "mean_nonzero", "hard": "mean", "semihard": "mean"}


def _triplet_terms(thresholds, d_neg, soft):
    """Values and slopes of [t − d⁻]₊ (active iff d⁻ < t) or, ``soft``, softplus(t − d⁻), with t = d⁺ + m."""
    if soft:
        z = thresholds - d_neg
        return np.logaddexp(0.0, z), np.exp(-np.logaddexp(0.0, -z))  # softplus and its derivative, the sigmoid
    active = d_neg < thresholds
    return np.where(active, thresholds - d_neg, 0.0), active.astype(np.float64)


def _checked_options(mining, soft, triplets, margin, reduction, incomplete_anchors):
    """:func:`triplet_loss`'s options checked together: (soft, margin, reduction), the defaults filled in."""
    check_option(mining, "mining", MININGS)
    soft = check_bool(soft, "soft")
    if triplets is not None and mining != "all":
        raise ValueError(
            f"triplets= gives the triplets, which mining would choose: leave mining at 'all'; got {mining!r}"
        )
    if soft and mining == "all_semihard":
        raise ValueError(
            "soft=True needs mining='all', 'hard' or 'semihard': a softplus has no margin band for 'all_semihard' "
            "to select in; got mining='all_semihard'"
        )
    margin = (0.0 if soft else 1.0) if margin is None else check_margin(margin)
    reduction = _DEFAULT_REDUCTION[mining] if reduction is None else check_option(reduction, "reduction", REDUCTIONS)
    check_option(incomplete_anchors, "incomplete_anchors", INCOMPLETE_ANCHORS)
    if incomplete_anchors == "keep" and mining != "hard":
        raise ValueError(
            "incomplete_anchors='keep' needs mining='hard' (only batch-hard keeps anchors without a positive or a "
            f"negative); got mining={mining!r}"
        )
    return soft, margin, reduction


def _batch_all(batch, margin, semihard_only, soft, reduction):
    """Every valid triplet of the batch (``semihard_only``: the semi-hard ones), block by block: a kernel sums each
    anchor's terms and writes the block's cotangent over its distances, which the block pulls back."""
    totals = np.zeros(3)  # Σ terms, the terms that count for "mean", the terms > 0
    grads = GradientSum(batch)
    for block in batch.blocks():  # per anchor: its terms' sum and counts; the kernel writes their cotangent over d
        sums, n_nonzero, n_valid, written = block.batch_all(margin, semihard_only, soft)
        n_counted = n_nonzero if semihard_only else n_valid  # "mean" counts the triplets that enter
        totals += np.sum(sums), n_counted.sum(), n_nonzero.sum()
        grads.pull(block, block.d, **written)
    weight = weight_from_counts(reduction, totals[1], totals[2])
    return float(weight * totals[0]), grads.result(weight)


def _mined_triplets(batch, mine):
    """The triplets ``mine(block)`` picks in each block of anchors, as index arrays (a, p, n) into the batch, with
    their distances d_ap (0 where p is -1: a kept batch-hard anchor without positive) and d_an."""
    found = []
    for block in batch.blocks():
        a, p, n = mine(block)
        d_pos = np.where(p >= 0, block.entries(a, np.maximum(p, 0)), 0.0)
        found.append((a + block.start, p, n, d_pos, block.entries(a, n)))
    return (np.concatenate(column) for column in zip(*found, strict=True))


def _given_in(block, triplets):
    """The given triplets whose anchor is one of the block's rows, the anchors numbered within the block."""
    a, p, n = triplets
    mine = (a >= block.start) & (a < block.start + block.x.shape[0])
    return a[mine] - block.start, p[mine], n[mine]


@array_route
@finite_or_refused
def triplet_loss(
    embeddings,
    labels,
    triplets=None,
    *,
    mining="all",
    margin=None,
    soft=False,
    distance="euclidean",
    reduction=None,
    incomplete_anchors="drop",
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""The online triplet loss on a labelled batch: triplets (a, p, n) with y_p = y_a ≠ y_n are mined from the
    batch's distance matrix, and each costs a hinge on d_ap − d_an + m (its softplus with ``soft=True``).

    Each triplet costs

    .. math::

        \ell(a, p, n) = [d_{ap} - d_{an} + m]_+ \qquad (\text{soft: } \log(1 + e^{d_{ap} - d_{an} + m}))

    ``mining`` picks which triplets enter:

    ==================  ========================================================  ==================
    mining              triplets                                                  default reduction
    ==================  ========================================================  ==================
    ``"all"``           every valid (a, p, n): batch-all                          ``"mean_nonzero"``
    ``"hard"``          per anchor, the farthest positive and the closest         ``"mean"``
                        negative (batch-hard, Hermans et al. 2017)
    ``"semihard"``      per positive pair (a, p), the closest negative farther    ``"mean"``
                        than p (d_an > d_ap), else the farthest negative
                        (FaceNet, as TF-Addons mines it; see Notes)
    ``"all_semihard"``  every semi-hard triplet, d_ap <= d_an < d_ap + m          ``"mean_nonzero"``
                        (pytorch-metric-learning's semi-hard miner)
    ==================  ========================================================  ==================

    or ``triplets=(a, p, n)`` gives them: any miner's output (:func:`metricloss.mine_triplets`,
    :func:`metricloss.batch_triplets`, a pair miner's through :func:`metricloss.pairs_to_triplets`), each
    triplet a term as often as it is given, reduced as batch-all's (default ``"mean_nonzero"``).

    Gradient: each term's slope s (1 where the hinge is active; the sigmoid for ``soft``) goes to
    ∂L/∂d_ap += w·s and ∂L/∂d_an −= w·s, with w the reduction's weight; that B×R cotangent is pulled back through
    the distance matrix (:func:`metricloss.pairwise_distances_vjp`). No B³ array is formed: batch-all counts,
    per anchor, the active negatives of every positive with a vectorised sweep of the row (few positives) or one
    sort and binary searches (many), so O(B² log B) time at worst and O(B²) memory. Batch-all with ``soft``
    has every triplet active (a softplus is never 0): one softplus and one sigmoid per triplet, O(B·P·N) time,
    O(B²) memory.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    triplets : tuple of three int arrays (a, p, n) of equal length, optional
        The triplets, instead of mining them (p and n index ``ref_embeddings`` when given): p of a's class and
        not a, n of another class (a ValueError naming the first that is not). Leave ``mining`` at "all".
    mining : {"all", "hard", "semihard", "all_semihard"}, default "all"
    margin : float >= 0, optional
        m. Default 1.0, or 0.0 with ``soft=True`` (Hermans et al.'s soft margin, softplus(d_ap − d_an)).
    soft : bool, default False
        softplus instead of the hinge; with ``mining="all"``, ``"hard"`` or ``"semihard"`` (``"all_semihard"``
        selects by the margin's band, which a softplus does not have: a ValueError).
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
        As in :func:`metricloss.pairwise_distances`; ``"snr"`` is not symmetric, and d_ap, d_an have the anchor
        as their first argument.
    reduction : {"mean", "sum", "mean_nonzero"}, optional
        Default per ``mining``, as in the table. ``"mean"`` divides by the number of triplets that enter (all
        valid ones for batch-all; the kept anchors for batch-hard; the positive pairs for semi-hard).
    incomplete_anchors : {"drop", "keep"}, default "drop"
        Batch-hard anchors that have no positive or no negative: dropped (pytorch-metric-learning), or kept with
        d⁺ = 0 where there is no positive and d⁻ = the row's largest distance where there is no negative
        (TF-Addons, omoindrot, sentence-transformers). A lone sample has neither and is always dropped.
        ``"keep"`` needs ``mining="hard"`` (a ValueError otherwise): batch-all and the semi-hard minings take
        only triplets with a real positive and negative.
    ref_embeddings : array of shape (R, F), optional
        A reference set for query-vs-reference (cross-modal) batches: anchors are the rows of ``embeddings``,
        positives and negatives are taken from the references. Give ``ref_labels`` with it.
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
    Nothing valid (no anchor with both a positive and a negative) gives ``(0.0, zeros)``. Within one batch an
    anchor is never its own positive; with a reference set no pair is excluded (the query and reference sets
    are different objects, even when equal: pytorch-metric-learning decides by object identity, its issue
    #488). Ties between candidates go to the lowest index. A triplet is active iff d_an < d_ap + m. With ``soft``
    a term that rounds to 0 in the input dtype (softplus(z) for z below about −104 in float32, −745 in float64) is
    0, slope included, as it would be computed in that dtype: ``"mean_nonzero"`` does not count it.

    *pytorch-metric-learning* (``distance=LpDistance(normalize_embeddings=False)``): ``TripletMarginLoss(margin)``
    alone is ``mining="all"``; with ``BatchHardMiner()`` it is ``mining="hard", reduction="mean_nonzero"``;
    with ``TripletMarginMiner(margin, type_of_triplets="semihard")`` it is ``mining="all_semihard"`` (PML's
    band is d_ap < d_an <= d_ap + m: the two differ only at exact ties). ``smooth_loss=True`` after
    ``BatchHardMiner()`` is ``mining="hard", soft=True, reduction="mean_nonzero"`` with the margin given
    (``margin=m``; soft's default is 0; tests/test_triplet.py pins it);
    ``smooth_loss=True`` with no miner (softplus on every triplet) is ``mining="all", soft=True, margin=m``
    (its ``AvgNonZeroReducer`` is the default ``"mean_nonzero"``, the mean over every triplet unless a softplus
    underflows; tests/test_triplet.py pins it). ``LpDistance(power=2)`` is
    ``distance="sqeuclidean"``. ``distance=DotProductSimilarity(normalize_embeddings=False)`` is
    ``distance="dot"`` with the same margin (PML's similarity triplet term [s_an − s_ap + m]₊ is
    [d_ap − d_an + m]₊ for d = −s), and ``distance=SNRDistance(normalize_embeddings=False)`` is ``distance="snr"``
    (tests/test_snr_dot.py pins both, with and without the two miners above). With a pair miner
    (``PairMarginMiner``, ``MultiSimilarityMiner``: index tuples (a1, p, a2, n)) PML makes every triplet of a
    positive and a negative pair sharing an anchor: that is ``triplets=pairs_to_triplets(a1, p, a2, n)``
    (tests/test_triplet.py pins it).
    PML normalises embeddings by default.

    *Two semi-hard rules.* FaceNet's semi-hard negative is the closest negative farther than the positive.
    ``mining="semihard"`` follows TF-Addons where an anchor has no such negative: it takes the farthest negative
    (``triplet_semihard_loss``'s fallback). :func:`metricloss.sampling.mine_dataset` with ``negative="semihard"``
    and :func:`metricloss.mining.batch_triplets` have no fallback: there the sample gets -1 (or is left out).

    *TensorFlow Addons*: ``triplet_semihard_loss(y, x, margin)`` is ``mining="semihard"`` (it returns NaN for a
    batch without a positive pair, tensorflow/addons#1676; this returns 0, and it gives a pair whose anchor has no
    negative d⁻ = 0 where this drops it); ``triplet_hard_loss(y, x, margin)`` is ``mining="hard",
    incomplete_anchors="keep"``, and with ``soft=True`` it is ``soft=True, margin=0``. Both use Euclidean
    distances (``squared=True``: ``"sqeuclidean"``) and take the mean. omoindrot's batch-all and batch-hard are
    ``mining="all"`` and ``mining="hard", incomplete_anchors="keep"``; sentence-transformers' ``BatchHardTripletLoss``
    likewise, and its ``BatchHardSoftMarginTripletLoss`` is ``soft=True``.

    See Also
    --------
    metricloss.textbook.triplet_loss : the formula as loops, the gradient term by term.

    References
    ----------
    F. Schroff, D. Kalenichenko, J. Philbin. FaceNet: A Unified Embedding for Face Recognition and Clustering.
    CVPR 2015. A. Hermans, L. Beyer, B. Leibe. In Defense of the Triplet Loss for Person Re-Identification. 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import triplet_loss
    >>> x = np.array([[0.0, 0.0], [0.0, 0.5], [0.8, 0.0], [3.0, 0.0]])
    >>> labels = np.array([0, 0, 1, 1])
    >>> value, grad = triplet_loss(x, labels, mining="hard")
    >>> round(value, 6)  # anchors: [0.5 − 0.8 + 1]₊, [0.5 − √0.89 + 1]₊, [2.2 − 0.8 + 1]₊, [2.2 − 3 + 1]₊; mean
    0.96415
    """
    soft, margin, reduction = _checked_options(mining, soft, triplets, margin, reduction, incomplete_anchors)
    given = triplets is not None
    batch = labelled_batch(
        embeddings,
        labels,
        distance=distance,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        defer_distances=mining in ("all", "all_semihard") and not soft and not given,  # batch-all converts rows
        gpu_arrays=True,
        in_blocks=True,
    )

    if mining in ("all", "all_semihard") and not given:
        return _batch_all(batch, margin, mining == "all_semihard", soft, reduction)
    if given:
        triplets = batch.given_triplets(triplets)
        mine = functools.partial(_given_in, triplets=triplets)
    elif mining == "hard":
        mine = functools.partial(hardest_triplets, incomplete_anchors=incomplete_anchors)
    else:
        mine = semihard_triplets
    anchors, positives, negatives, d_pos, d_neg = _mined_triplets(batch, mine)
    values, slopes = _triplet_terms(d_pos + margin, d_neg, soft)
    if soft:  # a softplus that rounds to 0 in the input dtype is 0 (so is its slope), as computed in that dtype
        below = values <= float(np.finfo(batch.x.dtype).smallest_subnormal) / 2
        values[below], slopes[below] = 0.0, 0.0
    weight = weight_from_counts(reduction, values.size, np.count_nonzero(values > 0))
    value = weight * float(np.sum(values))
    return value, batch.pull_triplets(anchors, positives, negatives, slopes, weight)
