"""Distances and their vector-Jacobian products: the one chain rule every loss on a distance matrix shares.

A loss on embeddings computes a distance matrix D, the loss-specific math on D, and a cotangent g = ∂L/∂D of
the same shape. :func:`pairwise_distances_vjp` then turns g into ∂L/∂X with two matrix products, whatever the
loss. The rules, for rows x_i of X and y_j of Y:

=================  ==============================  ================================================
distance           D_ij                            ∂L/∂x_i (given g_ij = ∂L/∂D_ij)
=================  ==============================  ================================================
``sqeuclidean``    ‖x_i − y_j‖²                    Σ_j 2 g_ij (x_i − y_j)
``euclidean``      ‖x_i − y_j‖                     Σ_j (g_ij / D_ij) (x_i − y_j), terms with D_ij = 0
                                                   contribute 0 (the subgradient at 0, by a branch)
``cosine``         1 − x̂_i·ŷ_j, x̂ = x/‖x‖          −(1/‖x_i‖) Σ_j g_ij (ŷ_j − c_ij x̂_i), c = 1 − D
``dot``            −x_i·y_j                        −Σ_j g_ij y_j           (matrix form: −G Y, one GEMM)
``snr``            ‖ỹ_j − x̃_i‖² / ‖x̃_i‖²,          Σ_j g_ij (2/‖x̃_i‖²)((1 − D_ij) x̃_i − ỹ_j), then centred
                   x̃ = x − mean(x) (per row)       (its mean over the features subtracted); see below
=================  ==============================  ================================================

In matrix form, with S the per-pair scale (2g or g/D), ∂L/∂X = diag(S·1) X − S Y: one GEMM. ∂L/∂Y is the same
rule applied to gᵀ with the roles of X and Y swapped; when Y is X (distances within one batch) both apply to the
same rows, and since D is symmetric that is the rule for X with g + gᵀ.

Two distances are not metrics, and losses that need one refuse them (each lists the distances it takes):

* ``"dot"``, D_ij = −x_i·y_j, is pytorch-metric-learning's ``DotProductSimilarity`` used as a dissimilarity (as
  ``"cosine"`` is its ``CosineSimilarity``). It may be negative, and D_ii is not 0. A triplet margin m is the same
  under it (s_an − s_ap + m = d_ap − d_an + m); a margin m on similarities is −m on D.
* ``"snr"`` is the signal-to-noise-ratio distance of Yuan et al. (CVPR 2019), pytorch-metric-learning's
  ``SNRDistance``: D_ij = Var(y_j − x_i) / Var(x_i), the variances over the features; the row x_i is the anchor
  (the query), so D is **not symmetric** (D_ij ≠ D_ji), and within one batch both rules apply to every row, as
  rows (anchors) and as columns (references), with no g + gᵀ shortcut. Both variances have the same
  normalisation, which cancels. It is invariant to adding a constant to a row and to scaling all rows by one
  factor, not to rotations. A constant anchor row (Var(x_i) = 0) has no signal: its distance to anything,
  itself included, is defined as 1 (the distance of any anchor to a constant row), with gradient 0, the way a
  zero row's cosine distance is 1; rows that are not exactly constant, however close, have their true (large)
  distances, or a ValueError where those exceed the dtype's range.

Similarities, for the losses defined on them (N-pair, lifted structure's exponentials, softmax losses):

=================  ==============================  ================================================
similarity         S_ij                            ∂L/∂x_i (given g_ij = ∂L/∂S_ij)
=================  ==============================  ================================================
``dot``            x_i · y_j                       Σ_j g_ij y_j            (matrix form: G Y, one GEMM)
``cosine``         x̂_i · ŷ_j = 1 − D_ij (cosine)   the cosine distance's rule applied to −g
=================  ==============================  ================================================

Numerical care:

* squared Euclidean distances use the GEMM form ‖x‖² + ‖y‖² − 2x·y for speed, then recompute by direct
  differences (in float64) every pair with D_ij <= ratio · (‖x_i‖² + ‖y_j‖²), where the GEMM form is mostly
  rounding; so the diagonal and duplicated rows are exactly 0 and close pairs are as accurate as ``cdist``.
* a row of zeros has no direction: its cosine similarity with anything (itself included) is defined as 0, so its
  cosine distance is 1, and its gradient is 0 (as torch's ``cosine_similarity``, which divides by max(‖x‖‖y‖, ε)).
* SNR distances are computed on the rows scaled by one power of two (exact; D is invariant to a common scale),
  centred (a constant row exactly 0), as (‖ỹ_j − x̃_i‖ / ‖x̃_i‖)²: the Euclidean distances of the centred rows
  (close pairs recomputed directly, as above) over the norms, so nothing overflows that D itself does not.

The functions here check their arguments; the unchecked core they call, which the engine calls too, is
``metricloss._pairwise``.
"""


import numpy as np

from ._arrays import array_route, is_gpu_array, numpy_dtype
from ._kernels import get_kernels
from ._kernels._gpu import on_device
from ._pairwise import (
    distance_matrix_vjp,
    paired_distances_vjp,
    refuse_on_gpu_unless_supported,
    similarity_matrix_vjp,
)
from ._validation import (
    check_embeddings,
    check_option,
    promote,
)

DISTANCES = ("euclidean", "sqeuclidean", "cosine", "dot", "snr")
# The distances that are symmetric, >= 0 and 0 between a row and itself: what losses built on those properties
# take (the others refuse "dot" and "snr", naming this tuple in their error).
SYMMETRIC_DISTANCES = ("euclidean", "sqeuclidean", "cosine")
SIMILARITIES = ("dot", "cosine")
# The distances that take any sign (−x·y), and so may the margins on them.
SIGNED_DISTANCES = ("dot",)


def _check_pair_of_embeddings(x, y, measure, name, options):
    x = check_embeddings(x, "x")
    check_option(measure, name, options)
    if y is None:
        return x, None
    y = check_embeddings(y, "y")
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"y must have {x.shape[1]} features to match x; got shape {y.shape}")
    return promote(x, y)


@array_route
def pairwise_distances(x, y=None, *, distance="euclidean", backend=None):
    r"""Distances between the rows of ``x`` and the rows of ``y`` (or of ``x`` itself).

    .. math::

        D_{ij} = \|x_i - y_j\|_2, \quad \|x_i - y_j\|_2^2, \quad
        1 - \frac{x_i \cdot y_j}{\|x_i\| \|y_j\|}, \quad -x_i \cdot y_j
        \quad\text{or}\quad \frac{\operatorname{Var}(y_j - x_i)}{\operatorname{Var}(x_i)}

    for ``distance="euclidean"``, ``"sqeuclidean"``, ``"cosine"``, ``"dot"`` and ``"snr"`` (the variances over
    the features; not symmetric: row i of ``x`` is the anchor).

    Parameters
    ----------
    x : array of shape (n, d), float32 or float64
        Or a GPU array (a torch CUDA tensor, a CuPy or numba device array; ``"euclidean"`` or ``"sqeuclidean"``;
        ``y``, if given, on the GPU too): D is then computed on the GPU and returned there, as an array of x's kind
        (``docs/cuda.md``).
    y : array of shape (m, d), optional
        Defaults to ``x``; the diagonal is then exactly 0 (except for ``"dot"``, −‖x_i‖², and a constant row's
        ``"snr"`` distance, 1).
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    d : array of shape (n, m), the dtype of the inputs (float64 if they are mixed)

    Notes
    -----
    Equals ``scipy.spatial.distance.cdist`` to float rounding, including rows 1e-7 apart: pairs that are close
    relative to their norms are recomputed by direct differences after the GEMM. A zero row's cosine distance
    to anything is 1, and so is a constant row's SNR distance (see the module docstring).

    *pytorch-metric-learning*: ``DotProductSimilarity(normalize_embeddings=False)(x, y)`` is −``"dot"``'s D, and
    ``SNRDistance(normalize_embeddings=False)(x, y)`` is ``"snr"``'s where no row of ``x`` is constant (PML
    divides by its zero variance); both classes normalise the embeddings by default, metricloss never does. PML's
    variances are unbiased (``torch.var``) in numerator and denominator alike, so the normalisation cancels.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import pairwise_distances
    >>> pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0]]))
    array([[0., 5.],
           [5., 0.]])
    >>> pairwise_distances(np.array([[0.0, 2.0], [0.0, 1.0]]), distance="snr")  # Var(b − a) / Var(a): asymmetric
    array([[0.  , 0.25],
           [1.  , 0.  ]])
    """
    if is_gpu_array(x):
        device, d, _ = _gpu_distances_vjp(x, y, distance, backend)
        return device.output(d)
    x, y = _check_pair_of_embeddings(x, y, distance, "distance", DISTANCES)
    return distance_matrix_vjp(x, y, distance, get_kernels(backend), ("x", "y"))[0]


@array_route
def pairwise_distances_vjp(x, y=None, *, distance="euclidean", backend=None):
    """The distance matrix and its vector-Jacobian product, like ``jax.vjp``.

    Returns ``(d, vjp)`` where ``d = pairwise_distances(x, y, distance=distance)`` and ``vjp(g)``, for a cotangent
    ``g = ∂L/∂d`` of the shape of ``d``, returns ``∂L/∂x`` when ``y`` is None, else the pair
    ``(∂L/∂x, ∂L/∂y)``. The rules are in this module's docstring.

    Parameters
    ----------
    x : array of shape (n, d), float32 or float64
        Or a GPU array, as in :func:`pairwise_distances`: d, ``vjp(g)`` (for g on the GPU) and its result are then
        GPU arrays of x's kind.
    y : array of shape (m, d), optional
        Defaults to ``x`` (both ends of every pair then move with x).
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    d : array of shape (n, m)
        ``pairwise_distances(x, y, distance=distance)``.
    vjp : callable
        ``vjp(g)`` for g of shape (n, m): ``∂L/∂x``, or ``(∂L/∂x, ∂L/∂y)`` when ``y`` is given. It copies g.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import pairwise_distances_vjp
    >>> x = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> d, vjp = pairwise_distances_vjp(x)
    >>> vjp(np.array([[0.0, 1.0], [0.0, 0.0]]))  # ∂d_01/∂x: the unit vector between the rows, with opposite signs
    array([[-0.6, -0.8],
           [ 0.6,  0.8]])
    """
    if is_gpu_array(x):
        device, d, pullback = _gpu_distances_vjp(x, y, distance, backend)
        return device.output(d), _gpu_public_vjp(device, d, pullback)
    x, y = _check_pair_of_embeddings(x, y, distance, "distance", DISTANCES)
    return _public_vjp(*distance_matrix_vjp(x, y, distance, get_kernels(backend), ("x", "y")), "distance")


def _public_vjp(matrix, pullback, what):
    """``(matrix, vjp)`` with ``vjp`` checking its cotangent and copying it (the private pullback overwrites it)."""

    def vjp(g):
        g = np.array(g, dtype=matrix.dtype)
        if g.shape != matrix.shape:
            raise ValueError(f"g must have the shape of the {what} matrix, {matrix.shape}; got {g.shape}")
        return pullback(g)

    return matrix, vjp


def _gpu_distances_vjp(x, y, distance, backend):
    """The public distance functions on GPU rows x (and y): (their :class:`metricloss._kernels._gpu.Device`, D on
    the device, its pullback): :func:`metricloss._pairwise.distance_matrix_vjp`, the host's, with the device's
    arrays and kernels."""
    check_option(distance, "distance", DISTANCES)
    refuse_on_gpu_unless_supported(distance)
    device = on_device(x, backend, "x")
    x = device.rows(x, "x")
    y = None if y is None else device.references(x, y, "y", "x")
    d, pullback = distance_matrix_vjp(x, y, distance, device.kernels, ("x", "y"))
    return device, d, pullback


def _gpu_public_vjp(device, matrix, pullback):
    """:func:`_public_vjp` on the GPU: ``vjp(g)`` for a GPU cotangent g, copied on the device, the gradient
    returned as the input's kind."""

    def vjp(g):
        if not is_gpu_array(g):
            raise TypeError(f"g must be a GPU array, as x is; got {type(g).__name__}")
        g = device.xp.asarray(device.array(g), copy=True)
        if tuple(g.shape) != tuple(matrix.shape) or numpy_dtype(g) != numpy_dtype(matrix):
            raise ValueError(
                f"g must have the shape and dtype of the distance matrix, {tuple(matrix.shape)} "
                f"{numpy_dtype(matrix)}; got {tuple(g.shape)} {numpy_dtype(g)}"
            )
        grads = pullback(g)
        return tuple(device.output(grad) for grad in grads) if isinstance(grads, tuple) else device.output(grads)

    return vjp


@array_route
def paired_distances(x1, x2, *, distance="euclidean"):
    """Distances between corresponding rows, d_i = D(x1_i, x2_i), for the distances of :func:`pairwise_distances`.

    Parameters
    ----------
    x1 : array of shape (n, d), float32 or float64
        The first rows (the anchors, for the asymmetric ``"snr"``).
    x2 : array of shape (n, d), float32 or float64
    distance : {"euclidean", "sqeuclidean", "cosine", "dot", "snr"}, default "euclidean"

    Returns
    -------
    d : array of shape (n,), the dtype of the inputs (float64 if they are mixed)

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import paired_distances
    >>> paired_distances(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[3.0, 4.0], [0.0, 2.0]]), distance="cosine")
    array([1., 1.])
    """
    x1 = check_embeddings(x1, "x1")
    x2 = check_embeddings(x2, "x2")
    check_option(distance, "distance", DISTANCES)
    if x2.shape != x1.shape:
        raise ValueError(f"x2 must have the same shape as x1, {x1.shape}; got {x2.shape}")
    return paired_distances_vjp(*promote(x1, x2), distance)[0]


@array_route
def pairwise_similarities(x, y=None, *, similarity="dot", backend=None):
    r"""Similarities between the rows of ``x`` and the rows of ``y`` (or of ``x`` itself).

    .. math::

        S_{ij} = x_i \cdot y_j \quad\text{or}\quad \frac{x_i \cdot y_j}{\|x_i\| \|y_j\|}

    for ``similarity="dot"`` and ``"cosine"`` (a zero row's cosine similarity with anything is 0).

    Parameters
    ----------
    x : array of shape (n, d), float32 or float64
    y : array of shape (m, d), optional
        Defaults to ``x``.
    similarity : {"dot", "cosine"}, default "dot"
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    s : array of shape (n, m), the dtype of the inputs (float64 if they are mixed)

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import pairwise_similarities
    >>> pairwise_similarities(np.array([[1.0, 0.0], [3.0, 4.0]]))
    array([[ 1.,  3.],
           [ 3., 25.]])
    """
    x, y = _check_pair_of_embeddings(x, y, similarity, "similarity", SIMILARITIES)
    return similarity_matrix_vjp(x, y, similarity, get_kernels(backend), ("x", "y"))[0]


@array_route
def pairwise_similarities_vjp(x, y=None, *, similarity="dot", backend=None):
    """The similarity matrix and its vector-Jacobian product, like ``jax.vjp``: ``(s, vjp)`` with ``vjp(g)``
    returning ``∂L/∂x`` when ``y`` is None, else ``(∂L/∂x, ∂L/∂y)``. The rules are in this module's docstring.

    Parameters
    ----------
    x : array of shape (n, d), float32 or float64
    y : array of shape (m, d), optional
        Defaults to ``x`` (both ends of every pair then move with x).
    similarity : {"dot", "cosine"}, default "dot"
    backend : {"numpy", "numba", "cuda"}, optional
        The kernel module; default ``"numba"``. ``"cuda"`` (the ``[cuda]`` extra) runs the kernels on an NVIDIA GPU,
        host arrays copied in and out (``docs/cuda.md``).

    Returns
    -------
    s : array of shape (n, m)
        ``pairwise_similarities(x, y, similarity=similarity)``.
    vjp : callable
        ``vjp(g)`` for g of shape (n, m): ``∂L/∂x``, or ``(∂L/∂x, ∂L/∂y)`` when ``y`` is given. It copies g.

    Examples
    --------
    >>> import numpy as np
    >>> from metricloss import pairwise_similarities_vjp
    >>> s, vjp = pairwise_similarities_vjp(np.array([[1.0, 0.0], [3.0, 4.0]]))
    >>> vjp(np.array([[0.0, 1.0], [0.0, 0.0]]))  # ∂(x_0·x_1): x_1 for x_0, x_0 for x_1
    array([[3., 4.],
           [1., 0.]])
    """
    x, y = _check_pair_of_embeddings(x, y, similarity, "similarity", SIMILARITIES)
    return _public_vjp(*similarity_matrix_vjp(x, y, similarity, get_kernels(backend), ("x", "y")), "similarity")
