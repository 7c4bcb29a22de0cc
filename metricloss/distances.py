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
"""

import math

import numpy as np

from ._kernels import get_kernels
from ._kernels._gpu import gpu_rows
from ._validation import (
    check_embeddings,
    check_gpu_references,
    check_option,
    is_gpu_array,
    norm_bound,
    not_representable,
    promote,
    refuse_overflow,
    refuse_renamed,
)

DISTANCES = ("euclidean", "sqeuclidean", "cosine", "dot", "snr")
# The distances that are symmetric, >= 0 and 0 between a row and itself: what losses built on those properties
# take (the others refuse "dot" and "snr", naming this tuple in their error).
SYMMETRIC_DISTANCES = ("euclidean", "sqeuclidean", "cosine")
SIMILARITIES = ("dot", "cosine")
# The distances that take any sign (−x·y), and so may the margins on them.
SIGNED_DISTANCES = ("dot",)

# Pairs with ‖x − y‖² <= ratio · (‖x‖² + ‖y‖²) are recomputed by direct differences. The GEMM form's error is
# about (a few ulps) · (‖x‖² + ‖y‖²), so the relative error left on the other pairs is ≲ 10 · eps / ratio:
# ~1e-13 in float64, ~1e-5 in float32.
_CANCELLATION_RATIO = {np.dtype(np.float32): 0.1, np.dtype(np.float64): 1e-3}


def _row_sq_norms(x):
    return np.einsum("ij,ij->i", x, x)


# Rows whose largest |entry| lies in [2^-_SAFE_EXPONENT, 2^_SAFE_EXPONENT) are used as they are: their squared norms
# and Gram products neither overflow nor underflow in float32 (for up to 2^90 features). Others are scaled by a power of
# two first, which is exact, so both paths give the same bits wherever the unscaled one does not over- or underflow.
_SAFE_EXPONENT = 16


def _scale_exponent(*arrays):
    """k such that the largest |entry| of ``arrays`` times 2^-k lies in [0.5, 1); 0 when no scaling is needed."""
    return _exponent_for(max(float(np.max(np.abs(a))) for a in arrays))


def _exponent_for(largest):
    """:func:`_scale_exponent` given the largest |entry| (computed where the arrays live)."""
    k = int(np.frexp(largest)[1]) if largest > 0 else 0
    return 0 if -_SAFE_EXPONENT < k <= _SAFE_EXPONENT else k


def _euclidean_from_gram(x, y, kernels, root, names=("embeddings", "ref_embeddings"), defer=False):
    """‖x_i − y_j‖ (``root``) or ‖x_i − y_j‖² for all pairs: the GEMM form, close pairs recomputed directly.
    ``y`` must not share ``x``'s buffer (numpy sends x @ x.T to SYRK, several times slower here than GEMM).
    ``defer`` (y a copy of x): where no rescaling is needed, return the Gram matrix unconverted and the arguments
    of the conversion, ``(gram, (x, sq_norm, ratio, root))``, for a kernel that converts each row as it reads it;
    else ``(d, None)``.

    Distances are homogeneous (D(x, y) = 2^k D(2^-k x, 2^-k y), 2^2k for squared ones), so rows too large or too
    small for the squared norms are scaled by an exact power of two first and the distances scaled back: correct
    over the dtype's whole finite range wherever the distances themselves are representable, else a ValueError."""
    given = (x, y)
    k = _scale_exponent(x, y)
    if k:
        x, y = np.ldexp(x, -k), np.ldexp(y, -k)
    sq_x, sq_y = _row_sq_norms(x), _row_sq_norms(y)
    d = x @ y.T
    if defer and not k:
        return d, (x, sq_x, _CANCELLATION_RATIO[x.dtype], root)
    kernels.gram_to_distances(d, x, y, sq_x, sq_y, _CANCELLATION_RATIO[x.dtype], root)
    if k:
        power = k if root else 2 * k
        what = "distances" if root else "squared distances"
        with np.errstate(over="ignore"):
            np.ldexp(d, power, out=d)
        try:  # a bound on the distances, as a Python float (inf where it overflows float64)
            bound = math.ldexp(math.sqrt(float(sq_x.max())) + math.sqrt(float(sq_y.max())), k)
        except OverflowError:
            bound = math.inf
        refuse_overflow(d, bound if root else bound * bound, given, names, what)
    return (d, None) if defer else d


def _unit_rows(x):
    """Rows scaled to unit norm (zero rows stay zero), and the inverse norms (0 for zero rows).

    Each row is first scaled by a power of two from its own largest |entry| (exact), so that its squared norm
    neither underflows (a 1e-30 row in float32 is a direction, not a zero row) nor overflows; the inverse norm
    of a row too small for it to be finite is inf (its cosine gradient is not representable)."""
    largest = np.max(np.abs(x), axis=1)
    k = np.where(largest > 0, np.frexp(largest)[1], 0).astype(np.int32)
    scaled = np.ldexp(x, -k[:, None])
    norm = np.sqrt(_row_sq_norms(scaled))
    inv_scaled = np.divide(1, norm, out=np.zeros_like(norm), where=norm > 0)
    with np.errstate(over="ignore"):
        inv_norm = np.ldexp(inv_scaled, -k)
    return scaled * inv_scaled[:, None], inv_norm


def _cosine_parts(x, y, kernels, names):
    """The unit rows x̂ and ŷ (y None: within x, ŷ a copy of x̂ for the GEMM) and the pullback
    ``(g, weight=1, symmetric=False) ↦ ∂L/∂x`` (y None) or ``(∂L/∂x, ∂L/∂y)`` of the cosine similarities
    S_ij = x̂_i·ŷ_j for the cotangent ``weight · g``; the pullback overwrites g. ``symmetric`` (within x): g
    already holds G + Gᵀ. The cosine distance 1 − S pulls back through it with −weight.

    ∂S_ij/∂x_i = (ŷ_j − S_ij x̂_i)/‖x_i‖, and Σ_j g_ij S_ij = x̂_i·Σ_j g_ij ŷ_j, so with P = G Ŷ
    ∂L/∂x_i = (P_i − (x̂_i·P_i) x̂_i)/‖x_i‖: P's part orthogonal to x̂_i, one GEMM, and S itself not read (a loss
    may have written its cotangent over it). Within one batch both ends of a pair move: G + Gᵀ, one GEMM."""
    self_pairs = y is None
    x_unit, x_inv_norm = _unit_rows(x)
    y_unit, y_inv_norm = (x_unit.copy(), x_inv_norm) if self_pairs else _unit_rows(y)

    def pull_rows(g, a_unit, a_inv_norm, b_unit, a, name):
        pulled = g @ b_unit
        pulled -= np.einsum("ij,ij->i", pulled, a_unit)[:, None] * a_unit
        with np.errstate(over="ignore", invalid="ignore"):  # 1/‖a_i‖ is inf for rows below 1/finfo.max
            pulled *= a_inv_norm[:, None]
        refuse_overflow(pulled, math.inf, (a,), (name,), "cosine gradients (1/norm)")
        return pulled

    def pullback(g, weight=1.0, symmetric=False):
        g *= weight
        if self_pairs:
            if not symmetric:
                kernels.symmetrize(g)
            return pull_rows(g, x_unit, x_inv_norm, y_unit, x, names[0])
        return (
            pull_rows(g, x_unit, x_inv_norm, y_unit, x, names[0]),
            pull_rows(g.T, y_unit, y_inv_norm, x_unit, y, names[1]),
        )

    return x_unit, y_unit, pullback


def _pairwise_distances_vjp(x, y, distance, kernels, names=("embeddings", "ref_embeddings"), defer=False):
    """D(x, y) and its pullback ``(g, weight=1) ↦ ∂L/∂x`` (y None: distances within x) or ``(∂L/∂x, ∂L/∂y)``,
    for the cotangent ``weight · g``. The pullback overwrites g (callers hand it a cotangent they own) and keeps
    no B×B array of its own with the Numba kernels (``pair_scale`` and ``symmetrize`` work on g in place,
    ``symmetrize`` through 16×16 tiles); the NumPy reference kernels allocate two more for clarity (the boolean
    mask of d = 0 in ``pair_scale`` and the copy of gᵀ in ``symmetrize``). A loss's peak memory is D and g plus
    what its own code allocates (docs/benchmarks.md measures each loss's peak). Trusts its inputs.

    ``defer`` (within one batch): ``(matrix, pullback, conversion)``, where for the Euclidean distances the matrix
    may still be the Gram matrix, which the caller's kernel turns into D with ``conversion`` (see
    :func:`_euclidean_from_gram`; None where D is already done)."""
    if distance in ("dot", "snr"):
        d, pullback = (_dot_distances_vjp if distance == "dot" else _snr_distances_vjp)(x, y, kernels, names)
        return (d, pullback, None) if defer else (d, pullback)
    if distance == "cosine":
        x_unit, y_unit, similarity_pullback = _cosine_parts(x, y, kernels, names)
        # 1 − x̂·ŷ = ½‖x̂ − ŷ‖²: the squared form is accurate for nearly parallel rows.
        d = _euclidean_from_gram(x_unit, y_unit, kernels, root=False)
        d *= 0.5
        d[~x_unit.any(axis=1), :] = 1  # a zero row's cosine distance to anything
        d[:, ~y_unit.any(axis=1)] = 1
        np.clip(d, 0, 2, out=d)

        def pullback(g, weight=1.0, divided=False, symmetric=False):
            return similarity_pullback(g, -weight, symmetric)  # D = 1 − S: ∂L/∂D = −∂L/∂S

        return (d, pullback, None) if defer else (d, pullback)

    self_pairs = y is None
    other = x.copy() if self_pairs else y  # a separate buffer, for the GEMM
    conversion = None
    squared = distance == "sqeuclidean"
    if defer and self_pairs:
        d, conversion = _euclidean_from_gram(x, other, kernels, not squared, names, defer=True)
    else:
        d = _euclidean_from_gram(x, other, kernels, not squared, names)

    def pullback(g, weight=1.0, divided=False, symmetric=False):
        # ∂L/∂x_i = Σ_j S_ij (x_i − y_j) = (diag(S·1) X − S Y)_i, with S = 2wg (squared) or wg/d, 0 where d = 0.
        # ``divided``: g already holds g/d (a kernel fused the division; d may have been overwritten).
        # ``symmetric``: within one batch, g already holds S + Sᵀ (a kernel wrote it so).
        if not divided:
            kernels.pair_scale(g, d, squared)
        factor = weight * (2.0 if squared else 1.0)
        if self_pairs:  # x on both sides of every pair: the rule for rows plus the rule for columns, S + Sᵀ
            if not symmetric:
                kernels.symmetrize(g)
            return _scaled_pull(g, x, x, factor, names[0])
        return _scaled_pull(g, x, other, factor, names[0]), _scaled_pull(g.T, other, x, factor, names[1])

    return (d, pullback, conversion) if defer else (d, pullback)


GPU_DISTANCES = ("euclidean", "sqeuclidean")  # the distances GPU arrays run with so far


def _refuse_on_gpu_unless_supported(distance):
    if distance not in GPU_DISTANCES:
        raise NotImplementedError(
            f"GPU arrays run with distance in {GPU_DISTANCES} so far; got distance={distance!r}: copy the arrays "
            "to the host (backend='cuda' then copies them to the GPU per kernel)"
        )


def _gpu_euclidean_distances_vjp(arrays, x, y, distance, kernels, names=("embeddings", "ref_embeddings"), defer=False):
    """:func:`_pairwise_distances_vjp` for ``"euclidean"`` or ``"sqeuclidean"`` on GPU rows ``x`` (and ``y``, or
    None within x; numba views; ``arrays`` the :class:`metricloss._kernels._gpu.GpuArrays` of their library,
    ``kernels`` the CUDA kernels on its stream), all on the device: the Gram matrix and the pullback's S Y (and
    Sᵀ X) are the library's GEMMs (cuBLAS); the conversion, the scale, the symmetrize, the transpose and
    diag(S·1) X − S Y are CUDA kernels. The same rules as on the host: close pairs recomputed directly, rows too
    large or too small for the squared norms scaled by an exact power of two first (a ValueError where the
    distances are not representable), g/d = 0 where d = 0."""
    self_pairs = y is None
    squared, dtype = distance == "sqeuclidean", np.dtype(x.dtype)
    largest = max(arrays.largest_magnitude(a) for a in ((x,) if self_pairs else (x, y)))
    k = _exponent_for(largest)

    def prepared(rows):  # (rows scaled by 2^-k, exactly; their squared norms)
        if k:
            rows = arrays.copy(rows)
            kernels.scale(rows, 2.0**-k)
        sq_norms = arrays.empty((rows.shape[0],), dtype)
        kernels.row_sq_norms(rows, sq_norms)
        return rows, sq_norms

    x_rows, sq_x = prepared(x)
    y_rows, sq_y = (x_rows, sq_x) if self_pairs else prepared(y)
    d = arrays.matmul(x_rows, y_rows, transpose_b=True)
    conversion = (x_rows, sq_x, _CANCELLATION_RATIO[dtype], not squared)
    if not (defer and self_pairs) or k:
        kernels.gram_to_distances(d, x_rows, y_rows, sq_x, sq_y, *conversion[2:])
        conversion = None
    if k:
        kernels.scale(d, 2.0 ** (k if not squared else 2 * k))
        if not arrays.all_finite(d):
            what = f"their {'squared ' if squared else ''}distances"
            raise ValueError(not_representable(names[0], f"entries up to {largest:.3g}", dtype, what))

    def pull(s, a, b, name, factor):  # factor · (diag(S·1) A − S B), a new device array
        grad = arrays.empty(a.shape, dtype)
        kernels.scaled_pull(grad, s, a, arrays.matmul(s, b), factor)
        if not arrays.all_finite(grad):
            raise ValueError(not_representable(name, f"entries up to {largest:.3g}", dtype, "their gradients"))
        return grad

    def pullback(g, weight=1.0, divided=False, symmetric=False):
        # ∂L/∂x_i = Σ_j S_ij (x_i − y_j), with S = 2wg (squared) or wg/d (Euclidean): as on the host. Within x,
        # S + Sᵀ; with a reference set, ∂L/∂y_j = Σ_i S_ij (y_j − x_i), the same rule on Sᵀ (a transposed copy).
        if not divided:
            kernels.pair_scale(g, d, squared)
        factor = weight * (2.0 if squared else 1.0)
        if self_pairs:
            if not symmetric:
                kernels.symmetrize(g)
            return pull(g, x, x, names[0], factor)
        return pull(g, x, y, names[0], factor), pull(kernels.transposed(g), y, x, names[1], factor)

    return d, pullback, conversion


def _dot_distances_vjp(x, y, kernels, names):
    """D = −X Yᵀ and its pullback: the dot similarity's with the weight negated (∂L/∂S = −∂L/∂D), −G Y and −Gᵀ X,
    or within one batch −(G + Gᵀ) X (``symmetric``: g already holds G + Gᵀ). Neither reads D."""
    d, similarity_pullback = _pairwise_similarities_vjp(x, y, "dot", kernels, names)
    np.negative(d, out=d)

    def pullback(g, weight=1.0, divided=False, symmetric=False):
        return similarity_pullback(g, -weight, symmetric)

    return d, pullback


def _centred_rows(x):
    """Each row minus its mean (accumulated in float64), a constant row exactly 0; and the mask of constant rows."""
    constant = np.all(x == x[:, :1], axis=1)
    centred = x - np.mean(x, axis=1, keepdims=True, dtype=np.float64).astype(x.dtype)
    centred[constant] = 0
    return centred, constant


def _snr_ratio_squared(numerator, inv_norm, arrays, names):
    """(numerator · inv_norm)², in place, the SNR distances from ‖ỹ − x̃‖ and 1/‖x̃‖; a ValueError naming the argument
    where they exceed the dtype's range (an anchor row nearly constant relative to the others)."""
    d = numerator  # in place: no second matrix
    with np.errstate(over="ignore", invalid="ignore"):
        d *= inv_norm
        d *= d
    if not math.isfinite(float(d.max(initial=0))):  # d >= 0: its largest entry is inf (or NaN) if any is
        wider = " or pass float64" if d.dtype == np.float32 else ""
        raise ValueError(
            f"{names[0]} has rows so nearly constant (a variance so small against the other rows' differences) that "
            f"their SNR distances Var(b − a) / Var(a) exceed {d.dtype}'s largest finite number, "
            f"{float(np.finfo(d.dtype).max):.3g}, so they are not representable; make those rows exactly constant "
            f"(distance 1 by convention) or rescale them{wider}"
        )
    return d


def _snr_distances_vjp(x, y, kernels, names):
    """The SNR distances D_ij = ‖ỹ_j − x̃_i‖² / ‖x̃_i‖² (x̃ the centred rows; see the module docstring) and their
    pullback ``(g, weight=1) ↦ ∂L/∂x`` (y None: within x, every row both an anchor and a reference) or
    ``(∂L/∂x, ∂L/∂y)``. The pullback overwrites g and does not read D.

    Derivation, with n_i = ‖x̃_i‖², m_j = ‖ỹ_j‖² and e_ij = ỹ_j − x̃_i (so D_ij = ‖e_ij‖² / n_i):

        ∂D_ij/∂x̃_i = −2 e_ij / n_i − ‖e_ij‖² · 2 x̃_i / n_i² = (2/n_i) ((1 − D_ij) x̃_i − ỹ_j),
        ∂D_ij/∂ỹ_j = 2 e_ij / n_i.

    Summed against g, with 1 − D_ij = (2 x̃_i·ỹ_j − m_j) / n_i (so D is not read), P = G Ỹ and q = G m (one GEMM,
    G [Ỹ | m]):  ∂L/∂x̃_i = (2/n_i) (((2 x̃_i·P_i − q_i) / n_i) x̃_i − P_i);  and with H = diag(1/n) G:
    ∂L/∂Ỹ = 2 (diag(Hᵀ 1) Ỹ − Hᵀ X̃), the squared Euclidean rule (:func:`_scaled_pull`). The centring
    x̃ = (I − 11ᵀ/F) x is a symmetric projection, so ∂L/∂x = ∂L/∂x̃ minus its mean over the features. Within one
    batch a row gets both parts (as an anchor, from its row of g; as a reference, from its column). Constant
    anchors: D_i· = 1 whatever the rows, so their rows of g contribute nothing. The rows were scaled by 2^-k
    first (D(2^-k x, 2^-k y) = D(x, y)), so the gradients are those at the scaled rows times 2^-k."""
    self_pairs = y is None
    k = _scale_exponent(x) if self_pairs else _scale_exponent(x, y)
    x_centred, x_constant = _centred_rows(np.ldexp(x, -k) if k else x)
    # y None: a separate buffer, for the GEMM
    y_centred = x_centred.copy() if self_pairs else _centred_rows(np.ldexp(y, -k) if k else y)[0]
    x_norm = _scaled_row_norms(x_centred, np.abs(x_centred))
    with np.errstate(divide="ignore"):
        inv_norm = np.divide(1, x_norm, out=np.zeros_like(x_norm), where=~x_constant)
    d = _euclidean_from_gram(x_centred, y_centred, kernels, root=True)
    d = _snr_ratio_squared(d, inv_norm[:, None], (x, x if self_pairs else y), names)
    d[x_constant, :] = 1  # a constant anchor's distance to anything, by convention

    def centred_and_unscaled(grad, a, name):
        grad -= np.mean(grad, axis=1, keepdims=True, dtype=np.float64).astype(grad.dtype)
        if k:
            with np.errstate(over="ignore"):
                np.ldexp(grad, -k, out=grad)
        refuse_overflow(grad, math.inf, (a,), (name,), "SNR gradients")
        return grad

    def pullback(g, weight=1.0, divided=False, symmetric=False):
        if symmetric:  # D is not symmetric: the batch kernels must not fold g + gᵀ for it
            raise ValueError("the SNR distances are not symmetric: their cotangent cannot come folded as g + gᵀ")
        g *= weight
        g[x_constant, :] = 0
        inv_n = inv_norm * inv_norm
        with np.errstate(over="ignore", invalid="ignore"):
            pq = g @ np.hstack([y_centred, _row_sq_norms(y_centred)[:, None]])
            p, q = pq[:, :-1], pq[:, -1]
            coef = inv_n * (2 * np.einsum("ij,ij->i", x_centred, p) - q)
            grad_x = coef[:, None] * x_centred
            grad_x -= p
            grad_x *= 2 * inv_n[:, None]
            g *= inv_n[:, None]  # H = diag(1/n) G
        grad_y = _scaled_pull(g.T, y_centred, x_centred, 2.0, names[1])
        if self_pairs:
            grad_x += grad_y
            return centred_and_unscaled(grad_x, x, names[0])
        return centred_and_unscaled(grad_x, x, names[0]), centred_and_unscaled(grad_y, y, names[1])

    return d, pullback


def _scaled_pull(scale, a, b, factor, name="embeddings"):
    """factor · (diag(S·1) A − S B), with S·1 from the same GEMM as S B (a column of ones appended to B); a
    ValueError naming ``name`` (A's argument) where that is not representable in A's dtype."""
    with np.errstate(over="ignore", invalid="ignore"):
        pulled = scale @ np.hstack([b, np.ones((b.shape[0], 1), dtype=b.dtype)])
        grad = pulled[:, -1:] * a
        grad -= pulled[:, :-1]
        grad *= factor
    refuse_overflow(grad, math.inf, (a,), (name,), "gradients")
    return grad


def _pairs_vjp(x, y, rows, cols, g, paired_vjp, kernels):
    """∂L/∂x (y None) or (∂L/∂x, ∂L/∂y) for a cotangent that is g[k] on M[rows[k], cols[k]] and 0 elsewhere, M a
    pairwise distance or similarity matrix whose row-wise twin is ``paired_vjp`` (:func:`_paired_distances_vjp`
    or :func:`_paired_similarities_vjp` with the measure bound), or for the Euclidean and squared Euclidean
    distances, the name of the distance (one kernel pass over the pairs, no K×F temporaries): O(K · F) for K
    pairs."""
    other = x if y is None else y
    grad_x = np.zeros_like(x)
    grad_y = grad_x if y is None else np.zeros_like(y)
    if paired_vjp in ("euclidean", "sqeuclidean"):
        kernels.pull_distance_pairs(x, other, rows, cols, g, paired_vjp == "sqeuclidean", grad_x, grad_y)
        return grad_x if y is None else (grad_x, grad_y)
    g_rows, g_cols = paired_vjp(x[rows], other[cols])[1](g)
    kernels.scatter_add_rows(grad_x, rows, g_rows)
    kernels.scatter_add_rows(grad_y, cols, g_cols)
    return grad_x if y is None else (grad_x, grad_y)


def _pull_entries(x, y, rows, cols, g, paired_vjp, dense_pullback, kernels):
    """∂L/∂x (y None) or (∂L/∂x, ∂L/∂y) for a cotangent that is g[k] on entry (rows[k], cols[k]) of a pairwise
    matrix M(x, y) (repeated entries add up) and 0 elsewhere: pair by pair (:func:`_pairs_vjp`, to which
    ``paired_vjp`` goes) in O(K·F) while K·F is at most M's size, else gathered into a dense cotangent for
    ``dense_pullback`` (M's GEMM pullback; None where M is not computed whole: then always pair by pair)."""
    n_cols = (x if y is None else y).shape[0]
    if dense_pullback is None or rows.size * x.shape[1] <= x.shape[0] * n_cols:
        return _pairs_vjp(x, y, rows, cols, g, paired_vjp, kernels)
    dense = np.zeros((x.shape[0], n_cols), dtype=x.dtype)
    kernels.scatter_add_entries(dense, rows, cols, g)
    return dense_pullback(dense)


def _check_pair_of_embeddings(x, y, measure, name, options):
    x = check_embeddings(x, "x")
    check_option(measure, name, options)
    if y is None:
        return x, None
    y = check_embeddings(y, "y")
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"y must have {x.shape[1]} features to match x; got shape {y.shape}")
    return promote(x, y)


@refuse_renamed(metric="distance")
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
        arrays, d, _ = _gpu_distances_vjp(x, y, distance, backend)
        return arrays.wrap(d)
    x, y = _check_pair_of_embeddings(x, y, distance, "distance", DISTANCES)
    return _pairwise_distances_vjp(x, y, distance, get_kernels(backend), ("x", "y"))[0]


@refuse_renamed(metric="distance")
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
        arrays, d, pullback = _gpu_distances_vjp(x, y, distance, backend)
        return arrays.wrap(d), _gpu_public_vjp(arrays, d, pullback)
    x, y = _check_pair_of_embeddings(x, y, distance, "distance", DISTANCES)
    return _public_vjp(*_pairwise_distances_vjp(x, y, distance, get_kernels(backend), ("x", "y")), "distance")


def _public_vjp(matrix, pullback, what):
    """``(matrix, vjp)`` with ``vjp`` checking its cotangent and copying it (the private pullback overwrites it)."""

    def vjp(g):
        g = np.array(g, dtype=matrix.dtype)
        if g.shape != matrix.shape:
            raise ValueError(f"g must have the shape of the {what} matrix, {matrix.shape}; got {g.shape}")
        return pullback(g)

    return matrix, vjp


def _gpu_distances_vjp(x, y, distance, backend):
    """The public distance functions on GPU rows x (and y): (their GpuArrays, D as a numba view, its pullback)."""
    check_option(distance, "distance", DISTANCES)
    _refuse_on_gpu_unless_supported(distance)
    arrays, x = gpu_rows(x, backend, "x")
    y = None if y is None else check_gpu_references(arrays, x, y, "y", "x")
    d, pullback, _ = _gpu_euclidean_distances_vjp(arrays, x, y, distance, arrays.kernels(), ("x", "y"))
    return arrays, d, pullback


def _gpu_public_vjp(arrays, matrix, pullback):
    """:func:`_public_vjp` on the GPU: ``vjp(g)`` for a GPU cotangent g, copied on the device, the gradient
    returned as the input's kind."""

    def vjp(g):
        if not is_gpu_array(g):
            raise TypeError(f"g must be a GPU array, as x is; got {type(g).__name__}")
        g = arrays.view(g)
        if tuple(g.shape) != tuple(matrix.shape) or np.dtype(g.dtype) != np.dtype(matrix.dtype):
            raise ValueError(
                f"g must have the shape and dtype of the distance matrix, {tuple(matrix.shape)} {matrix.dtype}; got "
                f"{tuple(g.shape)} {g.dtype}"
            )
        grads = pullback(arrays.copy(g))
        return tuple(arrays.wrap(grad) for grad in grads) if isinstance(grads, tuple) else arrays.wrap(grads)

    return vjp


def _lp_distance_rows(x1, x2, p, eps=0.0):
    """Row-wise ‖x1_i − x2_i + eps‖_p and its pullback g ↦ (∂L/∂x1, ∂L/∂x2). Trusts inputs; p >= 1.

    With u = x1 − x2 + eps and n = ‖u‖_p:  ∂n/∂u_k = sign(u_k) |u_k|^(p−1) / n^(p−1)  (p = 2: u/n; p = 1:
    sign(u), 0 at u_k = 0), and 0 for the whole row where n = 0, by a branch.
    """
    u = x1 - x2
    if eps:
        u += eps
    magnitude = np.abs(u)
    if p == 1:
        norm = magnitude.sum(axis=1)
    elif p == 2:  # scaled per row by a power of two (exact) so that Σ u² neither overflows nor underflows
        norm = _scaled_row_norms(u, magnitude)
    else:  # scaled by the row's largest entry so that |u|^p neither overflows nor underflows
        largest = magnitude.max(axis=1)
        safe = np.where(largest > 0, largest, 1)
        norm = largest * ((magnitude / safe[:, None]) ** p).sum(axis=1) ** (1 / p)

    def pullback(g):
        if p == 1:
            du = np.sign(u)
        elif p == 2:
            du = np.divide(u, norm[:, None], out=np.zeros_like(u), where=norm[:, None] > 0)  # not u·(1/n): 1/n
            # overflows for subnormal n
        else:
            ratio = np.divide(magnitude, norm[:, None], out=np.zeros_like(u), where=norm[:, None] > 0)
            du = np.sign(u) * ratio ** (p - 1)
        du *= g[:, None]
        return du, -du

    return norm, pullback


def _row_exponents(magnitude):
    """Per row, k with the row's largest |entry| · 2^-k in [0.5, 1) (0 for zero rows)."""
    largest = magnitude.max(axis=1)
    return np.where(largest > 0, np.frexp(largest)[1], 0).astype(np.int32)


def _scaled_row_norms(u, magnitude, squared=False):
    """‖u_i‖ (or ‖u_i‖²) computed on u_i · 2^-k_i and scaled back: exact scaling, no spurious over/underflow."""
    k = _row_exponents(magnitude)
    sq = _row_sq_norms(np.ldexp(u, -k[:, None]))
    with np.errstate(over="ignore"):
        return np.ldexp(sq, 2 * k) if squared else np.ldexp(np.sqrt(sq), k)


def _paired_distances_vjp(x1, x2, distance, names=("x1", "x2")):
    """Row-wise distances d_i = D(x1_i, x2_i) and the pullback g ↦ (∂L/∂x1, ∂L/∂x2). Trusts inputs."""
    if distance == "dot":
        s, similarity_pullback = _paired_similarities_vjp(x1, x2, "dot")
        refuse_overflow(s, math.inf, (x1, x2), names, "dot products")
        return -s, lambda g: similarity_pullback(-g)
    if distance == "snr":
        return _snr_rows(x1, x2, names)
    if distance == "euclidean":
        d, pullback = _lp_distance_rows(x1, x2, p=2)
        refuse_overflow(d, np.inf, (x1, x2), names, "distances")
        return d, pullback
    if distance == "sqeuclidean":
        diff = x1 - x2
        d = _scaled_row_norms(diff, np.abs(diff), squared=True)
        refuse_overflow(d, np.inf, (x1, x2), names, "squared distances")

        def pullback(g):  # ∂‖u‖²/∂u = 2u
            du = 2 * g[:, None] * diff
            return du, -du

        return d, pullback

    u1, inv1 = _unit_rows(x1)
    u2, inv2 = _unit_rows(x2)
    diff = u1 - u2
    d = 0.5 * _row_sq_norms(diff)  # 1 − û1·û2 = ½‖û1 − û2‖²
    d[(inv1 == 0) | (inv2 == 0)] = 1
    np.clip(d, 0, 2, out=d)
    cos = (1 - d)[:, None]

    def pullback(g):  # ∂d/∂x1 = −(û2 − c û1)/‖x1‖, and symmetrically for x2
        g = g[:, None]
        with np.errstate(over="ignore", invalid="ignore"):  # 1/‖x‖ is inf for rows below 1/finfo.max
            grads = -g * inv1[:, None] * (u2 - cos * u1), -g * inv2[:, None] * (u1 - cos * u2)
        for grad, x, name in zip(grads, (x1, x2), names, strict=True):
            refuse_overflow(grad, math.inf, (x,), (name,), "cosine gradients (1/norm)")
        return grads

    return d, pullback


def _snr_rows(x1, x2, names):
    """Row-wise SNR distances d_i = ‖x̃2_i − x̃1_i‖² / ‖x̃1_i‖² (x1 the anchors) and their pullback, by the rules of
    :func:`_snr_distances_vjp` for one pair per row: with n = ‖x̃1‖² and e = x̃2 − x̃1,
    ∂d/∂x̃1 = (2/n)((1 − d) x̃1 − x̃2) and ∂d/∂x̃2 = 2e/n, each then centred. Each pair is scaled by its own power
    of two first (d is invariant to scaling both rows of a pair). A constant x1 row: d = 1, gradient 0."""
    k = _row_exponents(np.abs(np.hstack([x1, x2])))[:, None]
    a, constant = _centred_rows(np.ldexp(x1, -k))
    b = _centred_rows(np.ldexp(x2, -k))[0]
    diff = b - a
    norm = _scaled_row_norms(a, np.abs(a))
    with np.errstate(divide="ignore"):
        inv_norm = np.divide(1, norm, out=np.zeros_like(norm), where=~constant)
    d = _snr_ratio_squared(_scaled_row_norms(diff, np.abs(diff)), inv_norm, (x1, x2), names)
    d[constant] = 1

    def pullback(g):
        scale = (2 * np.where(constant, 0, g) * inv_norm * inv_norm)[:, None]
        grads = [scale * ((1 - d)[:, None] * a - b), scale * diff]
        for grad, x, name in zip(grads, (x1, x2), names, strict=True):
            grad -= np.mean(grad, axis=1, keepdims=True, dtype=np.float64).astype(grad.dtype)
            with np.errstate(over="ignore"):
                np.ldexp(grad, -k, out=grad)
            refuse_overflow(grad, math.inf, (x,), (name,), "SNR gradients")
        return tuple(grads)

    return d, pullback


@refuse_renamed(metric="distance")
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
    return _paired_distances_vjp(*promote(x1, x2), distance)[0]


def _pairwise_similarities_vjp(x, y, similarity, kernels, names=("embeddings", "ref_embeddings")):
    """S(x, y) and its pullback ``(g, weight=1) ↦ ∂L/∂x`` (y None: within x) or ``(∂L/∂x, ∂L/∂y)``, for the
    cotangent ``weight · g``; overwrites g. Trusts its inputs."""
    if similarity == "cosine":  # x̂·ŷ, a zero row's 0; clipped to [−1, 1] (a rounding past ±1 is no similarity)
        x_unit, y_unit, pullback = _cosine_parts(x, y, kernels, names)
        s = x_unit @ y_unit.T
        np.clip(s, -1, 1, out=s)
        return s, pullback

    self_pairs = y is None
    other = x.copy() if self_pairs else y  # a separate buffer, for the GEMM
    k = _scale_exponent(x, other)
    if k:  # x·y = 2^2k (2^-k x)·(2^-k y): scaled so that the products neither overflow nor underflow
        s = np.ldexp(x, -k) @ np.ldexp(other, -k).T
        with np.errstate(over="ignore"):
            np.ldexp(s, 2 * k, out=s)
        refuse_overflow(s, norm_bound(x) * norm_bound(other), (x, other), names, "dot products")
    else:
        s = x @ other.T

    def pullback(g, weight=1.0, symmetric=False):
        # ∂(x_i·y_j)/∂x_i = y_j  ⇒  ∂L/∂X = G Y and ∂L/∂Y = Gᵀ X; within one batch both: (G + Gᵀ) X
        # (``symmetric``: g already holds G + Gᵀ).
        g *= weight
        if self_pairs:
            if not symmetric:
                kernels.symmetrize(g)
            return g @ x
        return g @ other, g.T @ x

    return s, pullback


def _paired_similarities_vjp(x1, x2, similarity):
    """Row-wise similarities s_i = S(x1_i, x2_i) and the pullback g ↦ (∂L/∂x1, ∂L/∂x2). Trusts inputs."""
    if similarity == "cosine":
        d, distance_pullback = _paired_distances_vjp(x1, x2, "cosine")
        return 1 - d, lambda g: distance_pullback(-g)
    s = _row_dots(x1, x2)
    return s, lambda g: (g[:, None] * x2, g[:, None] * x1)


def _row_dots(a, b):
    return np.einsum("ij,ij->i", a, b)


@refuse_renamed(metric="similarity")
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
    return _pairwise_similarities_vjp(x, y, similarity, get_kernels(backend), ("x", "y"))[0]


@refuse_renamed(metric="similarity")
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
    return _public_vjp(*_pairwise_similarities_vjp(x, y, similarity, get_kernels(backend), ("x", "y")), "similarity")
