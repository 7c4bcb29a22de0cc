"""The triplet-center loss (He et al. 2018): each embedding against its own class centre and the nearest other
centre, with learnable centres or with the batch's class means; and :func:`init_centers`, centres from data."""

import numpy as np

from .._arrays import array_route
from .._batch import labelled_batch
from .._reduce import REDUCTIONS, weight_from_counts
from .._triplets import hardest_triplets
from .._validation import (
    check_bool,
    check_class_indices,
    check_count,
    check_embeddings,
    check_every_class_present,
    check_feature_rows,
    check_labels,
    check_margin,
    check_option,
    finite_or_refused,
)
from ..distances import SYMMETRIC_DISTANCES
from .triplet import _mined_triplets, _triplet_terms

ABSENT_CLASSES = ("mean", "zeros", "raise")


@array_route
@finite_or_refused
def triplet_center_loss(
    embeddings,
    labels,
    centers=None,
    *,
    margin=5.0,
    distance="sqeuclidean",
    halved=True,
    reduction="sum",
    backend=None,
):
    r"""The triplet-center loss: each embedding should be closer to its own class centre than to the nearest
    other class centre, by at least the margin.

    .. math::

        L = w \sum_{i=1}^{B} \Big[ D(f_i, c_{y_i}) + m - \min_{j \ne y_i} D(f_i, c_j) \Big]_+,
        \qquad D = \tfrac12 d \ (\texttt{halved}) \ \text{or}\ d

    with d the ``distance`` (the paper's D is ½‖f − c‖², the default) and w the reduction's weight: 1 (``"sum"``,
    the paper's), 1/B (``"mean"``) or 1/#{i : ℓ_i > 0} (``"mean_nonzero"``). The centres are

    * learnable, ``centers`` given: row y of ``centers`` is the centre of class y, every row takes part (as a
      nearest other centre), and the gradient is ``(grad_embeddings, grad_centers)``;
    * the batch's class means, ``centers=None``: c_y = (1/n_y) Σ_{k: y_k = y} f_k over the n_y samples of class y
      in the batch; classes absent from the batch take no part, and the gradient flows through the means.

    Gradient. Where ℓ_i is active, ∂ℓ_i/∂D(f_i, c_{y_i}) = 1 and ∂ℓ_i/∂D(f_i, c_q) = −1 for the nearest other
    centre q; these slopes (times ½ when ``halved``, times w) go through the pairwise distance's VJP to the
    embeddings and the centres. With batch centres, c_y depends on the f_k of its class, ∂c_y/∂f_k = 1/n_y, so
    ∂L/∂f_k = (direct term) + (1/n_{y_k}) ∂L/∂c_{y_k}.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
        With ``centers``: class indices in [0, C), each indexing a row of ``centers``. Without: any integers.
    centers : array of shape (C, F), float32 or float64, optional
        Learnable class centres (:func:`init_centers` makes them from data). None: the batch's class means.
    margin : float >= 0, default 5.0
        m, on the scale of D (5 with D = ½‖f − c‖²: the default of reimplementations of the paper's formula).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default "sqeuclidean"
        d, as in :func:`metricloss.pairwise_distances`; ``"dot"`` and ``"snr"`` are not taken (a ValueError).
    halved : bool, default True
        D = ½ d, as the paper writes it (then ∂D/∂f = f − c for the squared distance); False: D = d.
    reduction : {"sum", "mean", "mean_nonzero"}, default "sum"
        The paper sums over the batch.
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    value : float
    grad : array of shape (B, F) (batch centres), or the tuple (grad_embeddings, grad_centers) of shapes (B, F)
        and (C, F) (learnable centres)

    Notes
    -----
    A term is active iff D(f_i, c_{y_i}) + m − D(f_i, c_q) > 0. Ties for the nearest other centre go to the lowest
    row of ``centers``; with batch centres, to the class seen first in the batch (so that renaming the classes
    changes nothing). Nothing valid (one centre only; with batch centres, a batch of one class) gives
    ``(0.0, zeros)``. With batch centres a class with one sample is its own centre: D(f_i, c_{y_i}) = 0 (cosine:
    1 if f_i = 0, whose direction is undefined), and its term still pushes it from the nearest other centre.

    It runs in blocks of anchor rows, embeddings against every centre, when its B×C matrix exceeds the working
    memory (:func:`metricloss.set_config`); batch centres, the class means, are computed first, in one pass.

    *Training the centres.* ``grad_centers`` is the exact gradient of the value: descend on it with the
    embedding network's optimiser or by hand, ``centers -= lr * grad_centers`` (the example below). He et al.,
    following Wen et al.'s centre loss, instead move each centre by its own rate α times the average of its active
    contributions (damped by 1 + their number), which is not a gradient of L; that rule is not provided here.

    *The authors' released code* (``TripletCenter40LossAllClass``) is ``distance="euclidean", halved=False,
    reduction="mean"``. In general, ``halved=True`` with margin m is ½ × ``halved=False`` with margin 2m.

    *pytorch-metric-learning* has no triplet-center loss, but its ``TripletMarginLoss(margin,
    distance=LpDistance(normalize_embeddings=False, power=2))`` after a ``BatchHardMiner`` (same distance), called
    with ``ref_emb=centers, ref_labels=arange(C)`` (or with ``ref_emb`` the batch's class means computed in torch,
    and their labels), is this loss with ``distance="sqeuclidean", halved=False, reduction="mean_nonzero"``
    (``reducer=MeanReducer()``: ``"mean"``; ``SumReducer()``: ``"sum"``); ``power=1`` is ``"euclidean"``. Its
    ``CentroidTripletLoss`` (Wieczorek et al. 2021; added in PML 1.1, absent from PML 2.9, see its issue #451)
    differs in kind: a query's own centroid is computed without the query, every other class's centroid is a
    negative (not only the nearest), on PML's normalised embeddings, with margin 0.05 and a mean over non-zero
    terms; no setting of this loss reproduces it. PML's ``ProxyNCALoss``, ``ProxyAnchorLoss`` and
    ``SoftTripleLoss`` learn per-class proxies too, under softmax losses, not this hinge; it has no centre loss.

    See Also
    --------
    metricloss.textbook.triplet_center_loss : the formula as loops, the gradient term by term.

    References
    ----------
    X. He, Y. Zhou, Z. Zhou, S. Bai, X. Bai. Triplet-Center Loss for Multi-View 3D Object Retrieval. CVPR 2018.

    The centre loss: Y. Wen, K. Zhang, Z. Li, Y. Qiao. A Discriminative Feature Learning Approach for Deep Face
    Recognition. ECCV 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import init_centers, triplet_center_loss
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    >>> labels = np.array([0, 0, 1])
    >>> value, grad = triplet_center_loss(x, labels)  # batch centres c_0 = (0, 0.5), c_1 = (3, 0); margin 5
    >>> value  # [½·0.25 + 5 − ½·9]₊ + [½·0.25 + 5 − ½·10]₊ + [0 + 5 − ½·9.25]₊ = 0.625 + 0.125 + 0.375
    1.125
    >>> grad  # ∂ℓ_i/∂f_i = c_q − c_y, plus each mean's gradient shared among its class: c_1 is f_2 itself
    array([[ 4.5 , -0.75],
           [ 4.5 , -0.75],
           [-9.  ,  1.5 ]])
    >>> centers = init_centers(x, labels)  # the same means, learnable from here on
    >>> value, (grad_x, grad_centers) = triplet_center_loss(x, labels, centers)
    >>> value
    1.125
    >>> grad_centers  # c_y − f_i from each own class's term, f_i − c_q from each nearest other centre's
    array([[ 3. , -0.5],
           [-6. ,  1. ]])
    >>> centers -= 0.1 * grad_centers  # one step of gradient descent on the centres
    """
    margin = check_margin(margin)
    halved = check_bool(halved, "halved")
    check_option(reduction, "reduction", REDUCTIONS)
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x.shape[0])
    if centers is None:
        return _with_batch_centers(x, labels, margin, distance, halved, reduction, backend)
    centers = check_feature_rows(centers, "centers", x)
    labels = check_class_indices(labels, centers.shape[0]).astype(np.int64)  # checked first: no wrap-around
    # A query-vs-reference batch: the queries are the embeddings, the references the centres, centre y of class y.
    batch = labelled_batch(
        x,
        labels,
        distance=distance,
        ref_embeddings=centers,
        ref_labels=np.arange(centers.shape[0]),
        backend=backend,
        ref_name="centers",
        distances=SYMMETRIC_DISTANCES,
        in_blocks=True,
    )
    return _to_own_and_nearest_centre(batch, margin, halved, reduction)


def _to_own_and_nearest_centre(batch, margin, halved, reduction):
    """The loss on a batch whose references are class centres, one per class: per embedding, its own centre is
    the one positive and the nearest other centre the hardest negative (the batch-hard selection), found block by
    block of embeddings against every centre; the triplets' slopes are then pulled back pair by pair."""
    # anchors without another centre are left out; every anchor has its own centre (d⁺ never the -1 stand-in)
    anchors, own, nearest, d_own, d_nearest = _mined_triplets(batch, hardest_triplets)
    if anchors.size == 0:
        return 0.0, batch.zeros()
    scale = 0.5 if halved else 1.0
    # ℓ = [s·d⁺ + m − s·d⁻]₊ with s = ½ (halved) or 1: a triplet term with threshold s·d⁺ + m against s·d⁻,
    # slope 1 where active; ∂ℓ/∂d⁺ = s·slope and ∂ℓ/∂d⁻ = −s·slope, which pull_triplets applies.
    values, slopes = _triplet_terms(scale * d_own + margin, scale * d_nearest, False)
    weight = weight_from_counts(reduction, values.size, np.count_nonzero(values > 0))
    return weight * float(np.sum(values)), batch.pull_triplets(anchors, own, nearest, scale * slopes, weight)


def _with_batch_centers(x, labels, margin, distance, halved, reduction, backend):
    """The loss with the batch's class means as centres, and the gradient through the means."""
    # Classes numbered in order of first appearance, so that renaming them changes nothing, not even rounding.
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    sample_class = np.argsort(np.argsort(first))[inverse]
    sums, counts = _sums_by_class(x, sample_class, first.size)
    means = (sums / counts[:, None]).astype(x.dtype)  # a mean is no larger than the largest entry: finite
    # A query-vs-reference batch against the means, mean k standing for class k.
    batch = labelled_batch(
        x,
        sample_class,
        distance=distance,
        ref_embeddings=means,
        ref_labels=np.arange(counts.size),
        backend=backend,
        ref_name="embeddings",  # the means are the embeddings' own: a refusal names them
        distances=SYMMETRIC_DISTANCES,
        in_blocks=True,  # blocks of embeddings against every mean (the means are O(C·F), computed whole first)
    )
    value, (grad_x, grad_means) = _to_own_and_nearest_centre(batch, margin, halved, reduction)
    # c_y = (1/n_y) Σ_{k in y} f_k  ⇒  ∂L/∂f_k += (1/n_{y_k}) ∂L/∂c_{y_k}
    grad_means /= counts[:, None].astype(grad_means.dtype)
    grad_x += grad_means[sample_class]
    return value, grad_x


def _sums_by_class(x, classes, n_classes):
    """Per class c in 0..n_classes-1, the float64 sum of the rows of class c and their number: one sort, one pass."""
    counts = np.bincount(classes, minlength=n_classes)
    present = counts > 0
    starts = np.cumsum(counts) - counts
    sums = np.zeros((n_classes, x.shape[1]))
    sums[present] = np.add.reduceat(x[np.argsort(classes, kind="stable")].astype(np.float64), starts[present], axis=0)
    return sums, counts


@array_route
def init_centers(embeddings, labels, *, n_classes=None, absent="mean"):
    r"""Class centres from data, for :func:`triplet_center_loss`'s learnable ``centers``: row y is the mean of
    the embeddings of class y.

    .. math::

        c_y = \frac{1}{n_y} \sum_{i : y_i = y} f_i \qquad (y = 0, \dots, C - 1),

    accumulated in float64 and returned in the embeddings' dtype.

    Parameters
    ----------
    embeddings : array of shape (N, F), float32 or float64
        Embeddings of a batch or of a whole dataset (a first pass of the untrained network).
    labels : int array of shape (N,)
        Class indices in [0, C).
    n_classes : int >= 1, optional
        C. Default: the largest label + 1.
    absent : {"mean", "zeros", "raise"}, default "mean"
        The centre of a class with no embedding: the mean of all the embeddings (so that the centres move with
        the data: ``init_centers(x + t, y) = init_centers(x, y) + t``), zeros (the usual initialisation of
        centre-loss implementations), or a ValueError naming the absent classes.

    Returns
    -------
    centers : array of shape (C, F), the dtype of ``embeddings``

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import init_centers
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 2.0]])
    >>> init_centers(x, np.array([0, 0, 2]))  # class 1 is absent: the mean of all three rows
    array([[0. , 0.5],
           [1. , 1. ],
           [3. , 2. ]])
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x.shape[0])
    check_option(absent, "absent", ABSENT_CLASSES)
    if n_classes is None:
        n_classes = max(int(labels.max()) + 1, 1)
    n_classes = check_count(n_classes, "n_classes")
    labels = check_class_indices(labels, n_classes, rows_of="the centres (n_classes rows)").astype(np.int64)
    sums, counts = _sums_by_class(x, labels, n_classes)
    if absent == "raise":
        check_every_class_present(counts)
    missing = counts == 0
    centers = sums / np.maximum(counts, 1)[:, None]
    centers[missing] = x.mean(axis=0, dtype=np.float64) if absent == "mean" else 0.0
    return centers.astype(x.dtype)
