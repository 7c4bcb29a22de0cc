"""Quadruplet losses (Chen et al. 2017): the triplet loss plus a second term that pushes negative pairs beyond
positive pairs they share no sample with. On explicit (anchors, positives, negatives, negatives2) rows, and on a
labelled batch, where every quadruplet is counted and none is formed."""

import numpy as np

from .._arrays import array_route
from .._batch import labelled_batch
from .._pairwise import paired_distances_vjp
from .._reduce import REDUCTIONS, weight_from_counts
from .._validation import (
    check_bool,
    check_embeddings,
    check_margin,
    check_option,
    check_same_shape,
    finite_or_refused,
    promote,
)
from ..distances import SYMMETRIC_DISTANCES

_ROWS = ("anchors", "positives", "negatives", "negatives2")


def _check_options(margin, margin2, adaptive_margins, distance, reduction, split_reduction):
    """The checked hyper-parameters: (margin, margin2, adaptive_margins, split_reduction) as Python values."""
    adaptive_margins = check_bool(adaptive_margins, "adaptive_margins")
    check_option(distance, "distance", SYMMETRIC_DISTANCES)  # its kernels assume symmetric distances >= 0
    check_option(reduction, "reduction", REDUCTIONS)
    split_reduction = check_bool(split_reduction, "split_reduction")
    return check_margin(margin), check_margin(margin2, "margin2"), adaptive_margins, split_reduction


def _term_weights(reduction, split_reduction, n_first, n_first_active, n_second, n_second_active):
    """The weights (w₁, w₂) of the two sums: each term reduced on its own and the two added (split), or all the
    terms reduced as one set."""
    if split_reduction:
        return (
            weight_from_counts(reduction, n_first, n_first_active),
            weight_from_counts(reduction, n_second, n_second_active),
        )
    weight = weight_from_counts(reduction, n_first + n_second, n_first_active + n_second_active)
    return weight, weight


@array_route
@finite_or_refused
def quadruplet_margin_loss(
    anchors,
    positives,
    negatives,
    negatives2,
    *,
    margin=1.0,
    margin2=0.5,
    adaptive_margins=False,
    distance="sqeuclidean",
    reduction="mean",
    split_reduction=True,
):
    r"""Quadruplet loss on explicit rows: each anchor closer to its positive than to its negative by ``margin``,
    and the positive pair closer than the pair of the two negatives by ``margin2``.

    .. math::

        L = \rho_1\big(\big[d(a_k, p_k) - d(a_k, n_k) + \alpha_1\big]_+\big)
          + \rho_2\big(\big[d(a_k, p_k) - d(n_k, n'_k) + \alpha_2\big]_+\big)

    over the N rows k, with ρ the ``reduction`` of each term's N values (``split_reduction=False``: of all 2N
    values together). For ``"mean"`` that is the mean over rows of the two terms' sum. The rows should satisfy
    y(a) = y(p) and y(n), y(n') and y(a) all different; the function does not see labels.

    ``adaptive_margins=True`` is the paper's margin-based online hard negative mining: the margins adapt to the
    batch, α₁ = ``margin``·[μ_n − μ_p]₊ and α₂ = ``margin2``·[μ_n − μ_p]₊, with μ_p the mean of the N distances
    d(a, p) and μ_n the mean of the 2N distances d(a, n) and d(n, n'); the quadruplets inside these margins are the
    "hard" ones, the others cost nothing. The margins are functions of the distances, and the gradient goes through
    them.

    Gradient, with w₁, w₂ the reduction's weights and 1₁, 1₂ the rows' active terms: ∂L/∂d(a, p) = w₁1₁ + w₂1₂,
    ∂L/∂d(a, n) = −w₁1₁, ∂L/∂d(n, n') = −w₂1₂; with adaptive margins (and μ_n > μ_p) every d(a, p) gains −κ/N and
    every negative distance +κ/(2N), κ = ``margin``·w₁·#active₁ + ``margin2``·w₂·#active₂. Each is pulled back
    through its row-wise distance (:func:`metricloss.paired_distances`).

    Parameters
    ----------
    anchors, positives, negatives, negatives2 : arrays of shape (N, F), float32 or float64
        Row k of each is the quadruplet (a_k, p_k, n_k, n'_k): ``negatives2`` holds the paper's x_l, the second
        negative, paired with ``negatives`` (x_k).
    margin, margin2 : float >= 0, default 1.0 and 0.5
        α₁ and α₂ (the paper: α₁ > α₂, the second constraint weaker); with ``adaptive_margins=True``, the factors
        w of the adaptive margins (the paper's 1 and 0.5).
    adaptive_margins : bool, default False
        The paper's adaptive margins (above).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default "sqeuclidean"
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
    split_reduction : bool, default True
        Reduce each term on its own and add the two (True), or reduce all 2N terms as one set.

    Returns
    -------
    value : float
    grad : tuple (grad_anchors, grad_positives, grad_negatives, grad_negatives2), each of shape (N, F)

    Notes
    -----
    The paper sums over the batch's quadruplets (``reduction="sum"``); ``"mean"`` divides by N. Its distances are
    squared: the squared Euclidean distance of normalised features in its triplet baseline, the square of a learned
    metric g ∈ [0, 1] in the quadruplet loss, so its margins α₁ = 1, α₂ = 0.5 fit distances in [0, 1] (normalise
    the embeddings to use them as such). Its gradient (Eq. 5) differentiates the adaptive margins only through each
    quadruplet's own distances, which is all of it for N = 1; for N > 1 the gradient here, the value's, also goes
    through the other rows' distances.

    Other implementations: Roth et al.'s (Revisiting Deep Metric Learning, ``criteria/quadruplet.py``) is
    ``distance="euclidean", margin=0.2, margin2=0.2`` on its mined rows, with the fourth sample drawn at random;
    the common PyTorch snippet ``relu(d_ap − d_an + m1) + relu(d_ap − d_nn + m2)``, averaged, is the default
    reduction with ``distance="euclidean"`` (or ``"sqeuclidean"`` where it squares). A hinge is active iff its
    argument is > 0.

    See Also
    --------
    metricloss.textbook.quadruplet_margin_loss : the formula as loops, the gradient term by term.

    References
    ----------
    W. Chen, X. Chen, J. Zhang, K. Huang. Beyond triplet loss: a deep quadruplet network for person
    re-identification. CVPR 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import quadruplet_margin_loss
    >>> a, p = np.array([[0.0, 0.0]]), np.array([[0.0, 1.0]])
    >>> n, n2 = np.array([[1.0, -0.5]]), np.array([[1.5, 0.5]])
    >>> value, (g_a, g_p, g_n, g_n2) = quadruplet_margin_loss(a, p, n, n2)
    >>> value  # d = ‖·‖²: [1 − 1.25 + 1]₊ + [1 − 1.25 + 0.5]₊
    1.0
    >>> g_a  # 2·2(a − p) − 2(a − n): both terms pull p in, the first pushes n away
    array([[ 2., -5.]])
    """
    arrays = [
        check_embeddings(array, name)
        for array, name in zip((anchors, positives, negatives, negatives2), _ROWS, strict=True)
    ]
    for array, name in zip(arrays[1:], _ROWS[1:], strict=True):
        check_same_shape(array, name, arrays[0], "anchors")
    margin, margin2, adaptive_margins, split_reduction = _check_options(
        margin, margin2, adaptive_margins, distance, reduction, split_reduction
    )

    a, p, n, n2 = promote(*arrays)
    d_ap, pull_ap = paired_distances_vjp(a, p, distance, names=("anchors", "positives"))
    d_an, pull_an = paired_distances_vjp(a, n, distance, names=("anchors", "negatives"))
    d_nn, pull_nn = paired_distances_vjp(n, n2, distance, names=("negatives", "negatives2"))
    d_ap, d_an, d_nn = (d.astype(np.float64) for d in (d_ap, d_an, d_nn))
    n_rows = d_ap.size
    gap = max(0.0, (d_an.sum() + d_nn.sum()) / (2 * n_rows) - d_ap.mean()) if adaptive_margins else 1.0
    alpha1, alpha2 = margin * gap, margin2 * gap

    first, second = d_ap - d_an + alpha1, d_ap - d_nn + alpha2
    active1, active2 = first > 0, second > 0
    w1, w2 = _term_weights(
        reduction, split_reduction, n_rows, np.count_nonzero(active1), n_rows, np.count_nonzero(active2)
    )
    value = w1 * float(np.sum(first[active1])) + w2 * float(np.sum(second[active2]))
    # ∂L/∂d(a,p) = w₁1₁ + w₂1₂,  ∂L/∂d(a,n) = −w₁1₁,  ∂L/∂d(n,n') = −w₂1₂; adaptive margins α = w·gap with
    # gap = μ_n − μ_p add ∂L/∂gap · ∂gap/∂d: −κ/N on each d(a,p), +κ/(2N) on each negative distance.
    g_ap, g_an, g_nn = w1 * active1 + w2 * active2, -w1 * active1, -w2 * active2
    if adaptive_margins and gap > 0:
        kappa = margin * w1 * np.count_nonzero(active1) + margin2 * w2 * np.count_nonzero(active2)
        g_ap, g_an, g_nn = g_ap - kappa / n_rows, g_an + kappa / (2 * n_rows), g_nn + kappa / (2 * n_rows)
    grad_a, grad_p = pull_ap(g_ap)
    grad_a_from_an, grad_n = pull_an(g_an)
    grad_n_from_nn, grad_n2 = pull_nn(g_nn)
    grads = (grad_a + grad_a_from_an, grad_p, grad_n + grad_n_from_nn, grad_n2)
    return value, tuple(grad.astype(array.dtype, copy=False) for grad, array in zip(grads, arrays, strict=True))


def _positive_pairs(class_order, class_starts):
    """Every unordered pair (i, j), i < j, of samples of one class, in increasing (i, j) order (so that sums over
    them do not depend on how the classes are numbered): O(Σ n_c²), the classes of one size at a time."""
    sizes = np.diff(class_starts)
    n = class_order.size
    keys = [np.zeros(0, dtype=np.int64)]
    for size in np.unique(sizes[sizes > 1]):
        first, second = np.triu_indices(size, 1)
        starts = class_starts[:-1][sizes == size][:, None]
        keys.append((class_order[starts + first] * n + class_order[starts + second]).ravel())
    keys = np.sort(np.concatenate(keys))
    return keys // n, keys % n


def _pair_counts(batch):
    """The numbers N_p and N_n of unordered positive pairs and negative pairs of the batch."""
    sizes = np.diff(batch.classes.class_starts)
    n_samples = batch.d.shape[0]
    return int(np.sum(sizes * (sizes - 1)) // 2), int((n_samples**2 - np.sum(sizes * sizes)) // 2)


def _mean_gap(d, positive_pairs, n_positive_pairs, n_negative_pairs):
    """[μ_n − μ_p]₊, the mean distance of the negative pairs less that of the positive pairs, from the sums over
    the positive pairs and over all pairs (the upper triangle of D, half of D less its diagonal)."""
    rows, cols = positive_pairs
    positive_sum = float(np.sum(d[rows, cols], dtype=np.float64))
    negative_sum = (float(np.sum(d, dtype=np.float64)) - float(np.trace(d, dtype=np.float64))) / 2 - positive_sum
    return max(0.0, negative_sum / n_negative_pairs - positive_sum / n_positive_pairs)


def _terms_and_counts(batch, alpha1, alpha2, keep_distances):
    """The two terms' kernels: ((first, sums, n_active, n_valid), (second, sum, n_active, n_terms), divided), each
    term's unweighted counts ∂(Σ terms)/∂D written into a B×B array (the second over d, where the pullback need not
    read it; on the Euclidean distance divided by d, ``divided``). ``keep_distances`` (adaptive margins): the
    cotangent then gains a constant on every pair, which must not be divided; so on the Euclidean distance no kernel
    writes over d and the pullback divides."""
    d, kernels = batch.d, batch.kernels
    keep_d = keep_distances and batch.fused_division
    divide = batch.fused_division and not keep_d
    first = np.empty_like(d)
    first_counts = kernels.batch_all_triplets(d, batch.classes, batch.self_offset, alpha1, False, first, divide)
    second = np.empty_like(d) if keep_d else d
    second_counts = kernels.quadruplet_pairs(d, batch.classes, alpha2, second, divide)
    return (first, *first_counts), (second, *second_counts), divide


def _add_gap_cotangent(g, kappa, positive_pairs, n_positive_pairs, n_negative_pairs):
    """Add κ·∂gap/∂D to g: gap = μ_n − μ_p, so +κ/N_n on each negative pair and −κ/N_p on each positive pair, half
    on each of the pair's two entries (the pullback adds gᵀ)."""
    rows, cols = positive_pairs
    on_negative = kappa / n_negative_pairs
    g += on_negative / 2
    g[rows, cols] -= kappa / n_positive_pairs + on_negative
    g[np.diag_indices_from(g)] -= on_negative / 2


@array_route
@finite_or_refused
def quadruplet_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    margin2=0.5,
    adaptive_margins=False,
    distance="sqeuclidean",
    reduction="mean",
    split_reduction=True,
    backend=None,
):
    r"""The quadruplet loss on a labelled batch (Chen et al. 2017): every triplet, and every positive pair against
    every negative pair that shares no sample and no class with it.

    .. math::

        L = \rho_1\Big(\big[d_{ij} - d_{ik} + \alpha_1\big]_+ : y_i = y_j \ne y_k\Big)
          + \rho_2\Big(\big[d_{ij} - d_{lk} + \alpha_2\big]_+ : y_i = y_j;\ y_l \ne y_k;\ y_l, y_k \ne y_i\Big)

    The first term is the batch-all triplet loss over ordered (anchor i, positive j ≠ i, negative k); the second
    runs over unordered positive pairs {i, j} and unordered negative pairs {l, k} (the paper's sum over ordered
    indices counts each of these 4 times: a factor 4 under ``reduction="sum"``, none under the means). ρ₁ and ρ₂
    are the ``reduction`` of each term's set (``split_reduction=False``: one reduction of both sets together).

    ``adaptive_margins=True`` is the paper's margin-based online hard negative mining: the margins adapt to the
    batch, α₁ = ``margin``·[μ_n − μ_p]₊ and α₂ = ``margin2``·[μ_n − μ_p]₊, with μ_p and μ_n the mean distances of the
    batch's positive and negative pairs, so that the quadruplets inside them, the hard ones, are those that cost
    something. The margins are functions of the distances, and the gradient goes through them.

    No quadruplet is formed: for a positive pair of class c with T = d_ij + α₂, its active partners are the
    negative pairs below T less those with an end in class c, and a negative pair's are the positive pairs with
    T above it less those of its two classes; counted by binary searches in sorted thresholds and distances, so
    O(B² log B) time and O(B²) memory (:func:`metricloss._kernels.numpy.quadruplet.quadruplet_pairs`). Gradient:
    the counts are ∂(Σ second terms)/∂d (+#partners on a positive pair, −#partners on a negative pair), the
    triplet kernel's counts are the first term's, and ∂L/∂D = w₁·(first) + w₂·(second) is pulled back through
    the distance matrix once (:func:`metricloss.pairwise_distances_vjp`). With adaptive margins (μ_n > μ_p) every
    positive pair's distance gains −κ/N_p and every negative pair's +κ/N_n, κ = ``margin``·w₁·#active₁ +
    ``margin2``·w₂·#active₂, N_p and N_n the numbers of positive and negative pairs.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    margin, margin2 : float >= 0, default 1.0 and 0.5
        α₁ and α₂ (the paper: α₁ > α₂, the second constraint weaker); with ``adaptive_margins=True``, the factors
        w of the adaptive margins (the paper's 1 and 0.5).
    adaptive_margins : bool, default False
        The paper's adaptive margins (above).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default "sqeuclidean"
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
    split_reduction : bool, default True
        Reduce each term on its own and add the two (True), or reduce all terms as one set.
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F)

    Notes
    -----
    Nothing valid (no positive pair, or one class) gives ``(0.0, zeros)``. The second term needs three classes.
    Every quadruplet enters, so there is no ``mining=`` (the choice of tuples other losses take).

    It takes no ``ref_embeddings``: the second term's negative pairs {l, k} are pairs of samples of the batch, not
    (query, reference) pairs, so a query-vs-reference batch does not define that term.
    It runs as one block whatever the working memory (:func:`metricloss.set_config`): its second term compares
    every positive pair with every negative pair of the batch (a global pool, not a sum over anchor rows), so it
    needs the whole matrix.
    A hinge is active iff its argument is > 0; where μ_n <= μ_p the adaptive margins are 0 (at μ_n = μ_p their
    derivative is taken as 0).

    The paper trains on batches of M sampled quadruplets, each giving one term of each kind, and sums them; here
    every quadruplet of the batch enters, and the default, each term's mean (``reduction="mean"``,
    ``split_reduction=True``), is that sum divided by M in expectation: it keeps the paper's balance of the two
    terms, which a joint sum or mean would not (the second term has about B/4 times as many quadruplets as the
    first has triplets). Its distances are squared (the squared Euclidean distance of normalised features in its
    triplet baseline, the square of a learned metric g ∈ [0, 1] in the quadruplet loss): α₁ = 1 and α₂ = 0.5 fit
    distances in [0, 1], so normalise the embeddings to use them as such. Its Eq. 5 differentiates the adaptive
    margins only through each quadruplet's own distances (its 1/M terms); the gradient here is the value's, through
    every pair's distance.

    No library implements this loss on a labelled batch. Its first term alone is pytorch-metric-learning's
    ``TripletMarginLoss(margin, distance=LpDistance(power=2, normalize_embeddings=False))`` (the default reducer
    is ``reduction="mean_nonzero"``): tests/test_quadruplet.py checks ours against its value plus the second term
    enumerated in torch. Other codebases sample the quadruplets (Roth et al.'s ``criteria/quadruplet.py``: the
    fourth sample drawn at random, Euclidean distances, each term's mean): :func:`quadruplet_margin_loss` takes
    such rows.

    See Also
    --------
    metricloss.textbook.quadruplet_loss : the formula as loops, the gradient term by term.

    References
    ----------
    W. Chen, X. Chen, J. Zhang, K. Huang. Beyond triplet loss: a deep quadruplet network for person
    re-identification. CVPR 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import quadruplet_loss
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, -0.5], [1.5, 0.5]])
    >>> value, grad = quadruplet_loss(x, np.array([0, 0, 1, 2]))
    >>> value  # triplets: [1 − 1.25 + 1]₊ and three inactive, mean 0.75/4; pairs: [1 − 1.25 + 0.5]₊, mean 0.25
    0.4375
    """
    margin, margin2, adaptive_margins, split_reduction = _check_options(
        margin, margin2, adaptive_margins, distance, reduction, split_reduction
    )
    batch = labelled_batch(embeddings, labels, distance=distance, backend=backend)
    n_positive_pairs, n_negative_pairs = _pair_counts(batch)
    if not (n_positive_pairs and n_negative_pairs):
        return 0.0, batch.zeros()
    # The adaptive margins α₁ = margin·[μ_n − μ_p]₊, α₂ = margin2·[μ_n − μ_p]₊.
    positive_pairs = _positive_pairs(*batch.classes[2:]) if adaptive_margins else None
    gap = 1.0 if positive_pairs is None else _mean_gap(batch.d, positive_pairs, n_positive_pairs, n_negative_pairs)
    alpha1, alpha2 = margin * gap, margin2 * gap

    # The first term's triplets [d_ij − d_ik + α₁]₊ and the second's pairs of pairs [d_ij − d_lk + α₂]₊: sums, counts,
    # and each term's unweighted cotangent.
    (first, sums, n_active, n_valid), (second, second_sum, n_second_active, n_second), divide = _terms_and_counts(
        batch, alpha1, alpha2, keep_distances=positive_pairs is not None
    )
    n_first_active = int(n_active.sum())
    if n_first_active + n_second_active == 0:
        return 0.0, batch.zeros()
    w1, w2 = _term_weights(reduction, split_reduction, int(n_valid.sum()), n_first_active, n_second, n_second_active)
    value = w1 * float(np.sum(sums)) + w2 * second_sum

    # ∂L/∂D = w₁·first + w₂·second, as weight · g with one scalar weight (a zero weight's term has no active term).
    weight, g = (w1, first) if w1 else (w2, second)
    if w1 and w2:
        np.multiply(second, w2 / w1, out=second)
        first += second
    if positive_pairs is not None and gap > 0:
        # ∂L/∂gap = κ, in units of the weight; the gap's own slopes on the pairs: _add_gap_cotangent.
        kappa = (margin * w1 * n_first_active + margin2 * w2 * n_second_active) / weight
        _add_gap_cotangent(g, kappa, positive_pairs, n_positive_pairs, n_negative_pairs)
    return value, batch.pull(g, weight, divided=divide)
