"""Pair losses: contrastive (on a labelled batch and on explicit pairs), margin ranking on scores, cosine and
hinge embedding losses.

Convention at kinks (all of metricloss): a hinge [z]₊ is active, with derivative 1, iff z > 0; at z = 0 its
derivative is 0. torch's ``clamp_min`` passes the gradient at z = 0 instead, so at exact ties the gradients of the
torch-identical losses here differ from torch's (the values do not); the tests pin both.
"""

import numpy as np

from .._arrays import array_route
from .._batch import GradientSum, labelled_batch
from .._pairwise import paired_distances_vjp
from .._reduce import REDUCTIONS, reduce_terms, weight_from_counts
from .._validation import (
    check_bool,
    check_float_array,
    check_margin,
    check_option,
    check_same_shape,
    check_scalar,
    check_targets,
    finite_or_refused,
    promote,
)
from ..distances import DISTANCES, SIGNED_DISTANCES

CONTRASTIVE_FORMS = ("hadsell", "squared", "linear")


def _hinge(z):
    """[z]₊ and its derivative, 1 iff z > 0."""
    active = z > 0
    return np.where(active, z, 0), active.astype(z.dtype)


def _contrastive_terms(d, similar, margin, pos_margin, form):
    """Per-pair losses and their derivatives with respect to d.

    h = [d − m⁺]₊ for similar pairs and [m − d]₊ for dissimilar ones, ∂h/∂d = ±1 where active;
    ``"linear"``: ℓ = h, ∂ℓ/∂d = ∂h/∂d;  ``"squared"``: ℓ = h², 2h ∂h/∂d;  ``"hadsell"``: ℓ = ½h², h ∂h/∂d.
    """
    h, active = _hinge(np.where(similar, d - pos_margin, margin - d))
    dh = np.where(similar, active, -active)
    if form == "linear":
        return h, dh
    if form == "squared":
        return h * h, 2 * h * dh
    return 0.5 * h * h, h * dh


def _contrastive_reduce(terms, dterms, similar, reduction, split_reduction):
    """ρ over all pairs, or (``split_reduction``) ρ over the similar pairs plus ρ over the dissimilar ones."""
    if not split_reduction:
        return reduce_terms(terms, dterms, reduction)
    value_pos, g_pos = reduce_terms(terms[similar], dterms[similar], reduction)
    value_neg, g_neg = reduce_terms(terms[~similar], dterms[~similar], reduction)
    g = np.empty_like(dterms)
    g[similar], g[~similar] = g_pos, g_neg
    return value_pos + value_neg, g


def _check_pair_inputs(x1, x2, y, *, rows, allowed):
    """x1 and x2 of one shape ((N, F) embeddings if ``rows``, else any), y one target per row or element."""
    x1 = check_float_array(x1, "x1", ndim=2 if rows else None)
    x2 = check_float_array(x2, "x2", ndim=2 if rows else None)
    check_same_shape(x2, "x2", x1, "x1")
    y_shape, against = (x1.shape[:1], "x1's rows") if rows else (x1.shape, "x1")
    return x1, x2, check_targets(y, y_shape, "y", allowed=allowed, against=against)


def _check_contrastive_options(margin, pos_margin, form, distance, reduction, split_reduction):
    check_option(distance, "distance", DISTANCES)
    # −x·y takes any sign, and so may its margins (a similarity margin m is −m on it); elsewhere d >= 0, and a
    # margin below 0 would leave every dissimilar pair uncharged. Below 0 pos_margin charges every similar pair.
    check_margin(margin, "margin", signed=distance in SIGNED_DISTANCES)
    check_margin(pos_margin, "pos_margin", signed=True)
    check_option(form, "form", CONTRASTIVE_FORMS)
    check_option(reduction, "reduction", REDUCTIONS)
    check_bool(split_reduction, "split_reduction")


@array_route
@finite_or_refused
def contrastive_loss(
    embeddings,
    labels,
    *,
    margin=1.0,
    pos_margin=0.0,
    form="hadsell",
    distance="euclidean",
    reduction="mean",
    split_reduction=False,
    ref_embeddings=None,
    ref_labels=None,
    backend=None,
):
    r"""Contrastive (pairwise ranking) loss over all pairs of a labelled batch.

    Every unordered pair i < j is a term: similar pairs (same label) are pulled within ``pos_margin``,
    dissimilar pairs pushed beyond ``margin``. With the default ``form="hadsell"`` and d = D(x_i, x_j),

    .. math::

        L = \rho\Big(\big\{\tfrac12 [d_{ij} - m^+]_+^2 \text{ if } y_i = y_j \text{ else }
            \tfrac12 [m - d_{ij}]_+^2 \;:\; i < j\big\}\Big)

    where ρ is the ``reduction`` (``"mean"``: divided by the B(B−1)/2 pairs). With a reference set
    (``ref_embeddings``), the terms are every (query, reference) pair instead.

    Gradient: each term's slope ∂ℓ/∂d (h, 2h or 1 times the sign, + similar, − dissimilar, where the term is
    > 0) is written by a kernel straight over the distance matrix (divided by d for Euclidean distances, as the
    VJP needs), reduced with one scalar weight, and pulled back by :func:`metricloss.pairwise_distances_vjp`'s
    GEMM: the loss's only B×B array is D.

    Parameters
    ----------
    embeddings : array of shape (B, F), float32 or float64
    labels : int array of shape (B,)
    margin : float, default 1.0
        m: dissimilar pairs closer than m contribute; >= 0 (below 0 none could, the distances being >= 0) but with
        ``distance="dot"``, where any real number.
    pos_margin : float, default 0.0
        m⁺: similar pairs farther than m⁺ contribute (Hadsell et al.: 0). Below 0 every similar pair does, and the
        loss is still least where they coincide: pytorch-metric-learning's ``pos_margin`` above 1 on
        ``CosineSimilarity`` is ``distance="cosine", pos_margin=1 − it`` here.
    form : {"hadsell", "squared", "linear"}, default "hadsell"
        The per-pair loss; see Notes.
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
        As in :func:`metricloss.pairwise_distances`. ``"dot"`` (−x·y) may be negative, hence its margins may be
        too; every form stays meaningful, since each squares the hinge h >= 0, never d. ``"snr"`` is not
        symmetric: within one batch the pairs are then the B(B − 1) ordered pairs (i, j), i ≠ j, each with its
        own d_ij (row i the anchor), so ``"sum"`` adds both directions of every pair.
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
    split_reduction : bool, default False
        Reduce the similar pairs and the dissimilar pairs separately and add the two results.
    ref_embeddings : array of shape (R, F), optional
        A reference set (query-vs-reference, cross-modal batches): the pairs are (embeddings_i, ref_j), all of
        them. Give ``ref_labels`` with it.
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
    ``form`` picks the per-pair loss, with h the hinge above:

    ===========  ===============  =================  =======================================
    form         similar pair     dissimilar pair    used by
    ===========  ===============  =================  =======================================
    "hadsell"    ½ [d − m⁺]₊²     ½ [m − d]₊²        Hadsell, Chopra & LeCun (2006)
    "squared"    [d − m⁺]₊²       [m − d]₊²          TensorFlow Addons ``contrastive_loss``
    "linear"     [d − m⁺]₊        [m − d]₊           most tutorials; pytorch-metric-learning
    ===========  ===============  =================  =======================================

    It runs in blocks of anchor rows when its matrix exceeds the working memory (:func:`metricloss.set_config`).
    Hadsell et al. sum over the training pairs (``reduction="sum"``); ``"mean"`` makes the value independent of
    the batch size. Pairs are unordered (i < j). A batch with fewer than two samples has no pair: ``(0.0, zeros)``.
    ``"mean_nonzero"`` counts the terms > 0, and a term that is 0 has slope 0.

    *pytorch-metric-learning*: ``ContrastiveLoss(pos_margin=a, neg_margin=b,
    distance=LpDistance(normalize_embeddings=False))`` equals ``form="linear", pos_margin=a, margin=b,
    reduction="mean_nonzero", split_reduction=True``. PML counts ordered pairs (both (i, j) and (j, i)), which
    changes nothing for the mean reductions and doubles ``"sum"``; ``LpDistance(power=2)`` is ``"sqeuclidean"``.
    ``distance=DotProductSimilarity(normalize_embeddings=False)`` with ``pos_margin=a, neg_margin=b`` (margins on
    the similarity: similar pairs below a and dissimilar pairs above b contribute) is ``distance="dot",
    pos_margin=-a, margin=-b``, and ``SNRDistance(normalize_embeddings=False)`` is ``distance="snr"`` with the
    margins as they are (tests/test_snr_dot.py pins both).
    PML normalises embeddings by default; metricloss never does. With ``ref_emb=`` PML pairs every query with
    every reference, as here.

    *TensorFlow Addons*: ``contrastive_loss(y_true, y_pred, margin)`` takes distances, not embeddings, and has
    no ½: it is :func:`contrastive_pair_loss` with ``form="squared"`` (y = 1 for similar pairs).

    See Also
    --------
    metricloss.textbook.contrastive_loss : the formula as loops, the gradient term by term.

    References
    ----------
    R. Hadsell, S. Chopra, Y. LeCun. Dimensionality Reduction by Learning an Invariant Mapping. CVPR 2006.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import contrastive_loss
    >>> x = np.array([[0.0, 0.0], [0.0, 0.5], [0.6, 0.0]])
    >>> value, grad = contrastive_loss(x, np.array([0, 0, 1]))
    >>> round(value, 6)  # pairs: ½·0.5² (similar), ½·(1 − 0.6)², ½·(1 − √0.61)²; mean of three
    0.076325
    >>> grad.shape
    (3, 2)
    """
    _check_contrastive_options(margin, pos_margin, form, distance, reduction, split_reduction)
    batch = labelled_batch(
        embeddings,
        labels,
        distance=distance,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        backend=backend,
        gpu_arrays=True,
        in_blocks=True,
    )
    form_code = CONTRASTIVE_FORMS.index(form)
    totals = np.zeros((3, 2))  # Σ terms, terms > 0, pairs; of the similar and of the dissimilar pairs
    grads = GradientSum(batch)
    for block in batch.blocks():  # the kernel sums each row's pair terms and writes their slopes over d
        sums, n_active, n_pairs, written = block.contrastive_pairs(margin, pos_margin, form_code)
        totals += sums.sum(axis=0), n_active.sum(axis=0), n_pairs.sum(axis=0)
        grads.pull(block, block.d, **written, same_class_apart=split_reduction)
    # Within one batch on a symmetric distance each unordered pair is counted twice, as (i, j) and (j, i): halve the
    # sums and counts. (The SNR distances are not symmetric: there every ordered pair is a term of its own.)
    copies = 2 if batch.symmetric else 1
    (sum_similar, sum_dissimilar), n_active, n_pairs = totals[0] / copies, totals[1] // copies, totals[2] // copies
    if split_reduction:
        w_similar = weight_from_counts(reduction, n_pairs[0], n_active[0])
        w_dissimilar = weight_from_counts(reduction, n_pairs[1], n_active[1])
    else:
        w_similar = w_dissimilar = weight_from_counts(reduction, n_pairs.sum(), n_active.sum())
    value = w_similar * float(sum_similar) + w_dissimilar * float(sum_dissimilar)
    return value, grads.result(w_dissimilar, same_class_weight=w_similar)


@array_route
@finite_or_refused
def contrastive_pair_loss(
    x1,
    x2,
    y,
    *,
    margin=1.0,
    pos_margin=0.0,
    form="hadsell",
    distance="euclidean",
    reduction="mean",
    split_reduction=False,
):
    r"""Contrastive loss on explicit pairs (x1_k, x2_k), as in siamese training.

    .. math::

        L = \rho\Big(\big\{\tfrac12 [d_k - m^+]_+^2 \text{ if } y_k = 1 \text{ else }
            \tfrac12 [m - d_k]_+^2\big\}_k\Big), \qquad d_k = D(x1_k, x2_k)

    for the default ``form="hadsell"``; the hyper-parameters are those of :func:`contrastive_loss`.

    Parameters
    ----------
    x1 : array of shape (N, F), float32 or float64
        The pairs' first rows.
    x2 : array of shape (N, F), float32 or float64
        The pairs' second rows.
    y : array of shape (N,) with values in {0, 1}
        1 for a similar pair, 0 for a dissimilar one (Hadsell et al. write Y = 0 for similar: flip it).
    margin : float, default 1.0
        m: dissimilar pairs closer than m contribute; >= 0 but with ``distance="dot"`` (see :func:`contrastive_loss`).
    pos_margin : float, default 0.0
        m⁺: similar pairs farther than m⁺ contribute; below 0, every similar pair (see :func:`contrastive_loss`).
    form : {"hadsell", "squared", "linear"}, default "hadsell"
        The per-pair loss; see Notes.
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
        As in :func:`metricloss.paired_distances` (``"snr"``: x1 is the anchor).
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"
        Over the N pairs.
    split_reduction : bool, default False
        Reduce the similar pairs and the dissimilar pairs separately and add the two results.

    Returns
    -------
    value : float
    grad : tuple (grad_x1, grad_x2), each of shape (N, F)

    Notes
    -----
    ``form`` picks the per-pair loss, as in :func:`contrastive_loss`:

    ===========  ===============  =================  =======================================
    form         similar pair     dissimilar pair    used by
    ===========  ===============  =================  =======================================
    "hadsell"    ½ [d − m⁺]₊²     ½ [m − d]₊²        Hadsell, Chopra & LeCun (2006)
    "squared"    [d − m⁺]₊²       [m − d]₊²          TensorFlow Addons ``contrastive_loss``
    "linear"     [d − m⁺]₊        [m − d]₊           most tutorials; pytorch-metric-learning
    ===========  ===============  =================  =======================================

    *TensorFlow Addons*: ``tfa.losses.contrastive_loss(y, d, margin)`` with d the row distances, averaged
    (Keras' default reduction), equals ``form="squared"`` here.

    See Also
    --------
    metricloss.textbook.contrastive_pair_loss : the formula as loops, the gradient term by term.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import contrastive_pair_loss
    >>> value, (g1, g2) = contrastive_pair_loss(
    ...     np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[0.6, 0.8], [0.3, 0.4]]), np.array([1, 0]))
    >>> value  # (½·1² + ½·(1 − 0.5)²) / 2
    0.3125
    """
    x1, x2, y = _check_pair_inputs(x1, x2, y, rows=True, allowed=(0, 1))
    _check_contrastive_options(margin, pos_margin, form, distance, reduction, split_reduction)

    d, pullback = paired_distances_vjp(*promote(x1, x2), distance)
    similar = y == 1
    # The terms in float64: ½h² of a float32 distance overflows float32 long before the value or its slope h do.
    terms, dterms = _contrastive_terms(d.astype(np.float64), similar, margin, pos_margin, form)
    value, g = _contrastive_reduce(terms, dterms, similar, reduction, split_reduction)
    g1, g2 = pullback(g)
    return value, (g1.astype(x1.dtype, copy=False), g2.astype(x2.dtype, copy=False))


@array_route
@finite_or_refused
def margin_ranking_loss(x1, x2, y, *, margin=0.0, reduction="mean"):
    r"""Margin ranking loss on scores: y = 1 asks for x1 > x2 + margin, y = −1 for x2 > x1 + margin.

    .. math::

        L = \rho\big(\{[-y_k (x1_k - x2_k) + m]_+\}_k\big), \qquad
        \frac{\partial \ell_k}{\partial x1_k} = -y_k, \quad \frac{\partial \ell_k}{\partial x2_k} = y_k
        \text{ where the hinge is active.}

    Parameters
    ----------
    x1, x2 : float arrays of the same shape (any rank)
    y : array of that shape with values in {−1, 1}
    margin : float >= 0, default 0.0
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"

    Returns
    -------
    value : float
    grad : tuple (grad_x1, grad_x2)

    Notes
    -----
    Identical to ``torch.nn.MarginRankingLoss`` (same defaults), except at exact ties of the hinge, where torch's
    gradient is the active one and metricloss's is 0. torch also accepts a negative margin and targets outside
    {−1, 1}; metricloss refuses both. torch broadcasts mismatched shapes; metricloss requires equal shapes.

    See Also
    --------
    metricloss.textbook.margin_ranking_loss : the formula as loops, the gradient term by term.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import margin_ranking_loss
    >>> value, (g1, g2) = margin_ranking_loss(np.array([2.0, 0.0]), np.array([1.0, 1.0]), np.array([-1, 1]),
    ...                                       margin=0.5)
    >>> value, g1, g2  # terms [(2 − 1) + 0.5]₊ = 1.5 and [−(0 − 1) + 0.5]₊ = 1.5; mean 1.5
    (1.5, array([ 0.5, -0.5]), array([-0.5,  0.5]))
    """
    x1, x2, y = _check_pair_inputs(x1, x2, y, rows=False, allowed=(-1, 1))
    check_margin(margin)
    check_option(reduction, "reduction", REDUCTIONS)

    a, b = promote(x1, x2)
    sign = y.astype(a.dtype)
    terms, active = _hinge(margin - sign * (a - b))
    value, g = reduce_terms(terms, active, reduction)
    return value, ((-sign * g).astype(x1.dtype), (sign * g).astype(x2.dtype))


_TORCH_COSINE_EPS = 1e-12  # added to each squared norm, as in ATen's cosine_embedding_loss


@array_route
@finite_or_refused
def cosine_embedding_loss(x1, x2, y, *, margin=0.0, reduction="mean"):
    r"""Cosine embedding loss: pull similar pairs (y = 1) to cosine 1, push dissimilar ones (y = −1) below m.

    .. math::

        \ell_k = \begin{cases} 1 - c_k & y_k = 1 \\ [c_k - m]_+ & y_k = -1 \end{cases}, \qquad
        c_k = \frac{x1_k \cdot x2_k}{\sqrt{(\|x1_k\|^2 + \epsilon)(\|x2_k\|^2 + \epsilon)}},\ \epsilon = 10^{-12}

    with :math:`\partial c/\partial x1 = x2 / \sqrt{(\|x1\|^2+\epsilon)(\|x2\|^2+\epsilon)}
    - c\, x1 / (\|x1\|^2+\epsilon)` and symmetrically for x2.

    Parameters
    ----------
    x1, x2 : arrays of shape (N, F), float32 or float64
    y : array of shape (N,) with values in {−1, 1}
    margin : float in [−1, 1], default 0.0
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"

    Returns
    -------
    value : float
    grad : tuple (grad_x1, grad_x2), each of shape (N, F)

    Notes
    -----
    Identical to ``torch.nn.CosineEmbeddingLoss``, including its zero-norm handling: the ε = 1e-12 added to each
    squared norm makes the cosine of a zero row 0 (so a similar pair with a zero row costs 1), and the gradient
    with respect to a zero row is the other row divided by √(ε (‖x2‖² + ε)): finite but about 1e6 times the unit
    vector. This is torch's definition, kept for parity; :func:`pairwise_distances` with ``distance="cosine"``
    gives a zero row a zero gradient instead. At the hinge's kink (c = m) the gradient is 0 here and active in
    torch. torch accepts unbatched (F,) inputs; metricloss wants (N, F).

    See Also
    --------
    metricloss.textbook.cosine_embedding_loss : the formula as loops, the gradient term by term.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import cosine_embedding_loss
    >>> value, _ = cosine_embedding_loss(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 1.0]]),
    ...                                  np.array([1, -1]), margin=0.5)
    >>> round(value, 6)  # c = 1/√2 for both: ((1 − 0.707107) + (0.707107 − 0.5)) / 2
    0.25
    """
    x1, x2, y = _check_pair_inputs(x1, x2, y, rows=True, allowed=(-1, 1))
    check_scalar(margin, "margin", low=-1.0, high=1.0, why=" (it is compared with a cosine)")
    check_option(reduction, "reduction", REDUCTIONS)

    # In float64: ‖a‖²·‖b‖² of float32 rows overflows float32 from entries of about 1e9.
    a, b = (array.astype(np.float64) for array in promote(x1, x2))
    sq_a = np.einsum("ij,ij->i", a, a) + _TORCH_COSINE_EPS
    sq_b = np.einsum("ij,ij->i", b, b) + _TORCH_COSINE_EPS
    denom = np.sqrt(sq_a * sq_b)
    cos = np.einsum("ij,ij->i", a, b) / denom

    similar = y == 1
    hinge, active = _hinge(cos - margin)
    terms = np.where(similar, 1 - cos, hinge)
    dterms_dcos = np.where(similar, -1, active).astype(a.dtype)
    value, g = reduce_terms(terms, dterms_dcos, reduction)
    g = g[:, None]
    grad_a = g * (b / denom[:, None] - (cos / sq_a)[:, None] * a)
    grad_b = g * (a / denom[:, None] - (cos / sq_b)[:, None] * b)
    return value, (grad_a.astype(x1.dtype, copy=False), grad_b.astype(x2.dtype, copy=False))


@array_route
@finite_or_refused
def hinge_embedding_loss(x, y, *, margin=1.0, reduction="mean"):
    r"""Hinge embedding loss on given distances (or any scores): x for y = 1, [m − x]₊ for y = −1.

    .. math::

        \ell_k = \begin{cases} x_k & y_k = 1 \\ [m - x_k]_+ & y_k = -1 \end{cases}, \qquad
        \frac{\partial \ell_k}{\partial x_k} = 1 \text{ or } -\mathbb{1}[m - x_k > 0]

    Parameters
    ----------
    x : float array of any shape, typically distances
    y : array of the same shape with values in {−1, 1}
    margin : float >= 0, default 1.0
    reduction : {"mean", "sum", "mean_nonzero"}, default "mean"

    Returns
    -------
    value : float
    grad : array of the shape and dtype of ``x``

    Notes
    -----
    Identical to ``torch.nn.HingeEmbeddingLoss`` (same defaults), except at the kink x = m, where torch's
    gradient is −1 and metricloss's 0. torch accepts a negative margin and other target values (which it
    treats as contributing both parts); metricloss refuses both. With ``"mean_nonzero"``, similar terms count as
    non-zero only where x > 0.

    See Also
    --------
    metricloss.textbook.hinge_embedding_loss : the formula as loops, the gradient term by term.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import hinge_embedding_loss
    >>> value, grad = hinge_embedding_loss(np.array([0.5, 0.25, 2.0]), np.array([1, -1, -1]))
    >>> value, grad  # (0.5 + 0.75 + 0) / 3
    (0.4166666666666667, array([ 0.33333333, -0.33333333,  0.        ]))
    """
    x = check_float_array(x, "x")
    y = check_targets(y, x.shape, "y", allowed=(-1, 1), against="x")
    check_margin(margin)
    check_option(reduction, "reduction", REDUCTIONS)

    similar = y == 1
    hinge, active = _hinge(margin - x)
    terms = np.where(similar, x, hinge)
    dterms = np.where(similar, 1, -active).astype(x.dtype)
    return reduce_terms(terms, dterms, reduction)
