"""The unchecked core of :mod:`metricloss.distances`: each distance and similarity matrix with its pullback
(vector-Jacobian product), the row-wise (paired) ones, and the pullback of a cotangent given on a list of entries.

The rules and the numerical care are in :mod:`metricloss.distances`' docstring; the public functions there check
their arguments and call these, and so does the engine (:mod:`metricloss._batch`). Everything here trusts its
inputs. ``names`` are what the caller calls its two arrays, for the errors that name an argument.
"""

import math

import numpy as np

from ._arrays import device_of, largest_magnitude, namespace, numpy_dtype
from ._validation import norm_bound, refuse_overflow

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
    """k such that the largest |entry| of ``arrays`` (found where they live) times 2^-k lies in [0.5, 1); 0 when
    no scaling is needed."""
    largest = max(largest_magnitude(a) for a in arrays)
    k = int(np.frexp(largest)[1]) if largest > 0 else 0
    return 0 if -_SAFE_EXPONENT < k <= _SAFE_EXPONENT else k


def _euclidean_from_gram(x, y, kernels, root, names=("embeddings", "ref_embeddings"), defer=False, out=None):
    """‖x_i − y_j‖ (``root``) or ‖x_i − y_j‖² for all pairs: the GEMM form, close pairs recomputed directly.
    ``y`` must not share ``x``'s buffer (numpy sends x @ x.T to SYRK, several times slower here than GEMM).
    ``out``: a C-contiguous array of the matrix's shape and x's dtype to compute it in (None: a new one).
    ``defer`` (y a copy of x): where no rescaling is needed, return the Gram matrix unconverted and the arguments
    of the conversion, ``(gram, (x, sq_norm, ratio, root))``, for a kernel that converts each row as it reads it;
    else ``(d, None)``. The arrays are any library's (``kernels`` the kernels for where they live): the GEMM is
    that library's, the rest kernels.

    Distances are homogeneous (D(x, y) = 2^k D(2^-k x, 2^-k y), 2^2k for squared ones), so rows too large or too
    small for the squared norms are scaled by an exact power of two first and the distances scaled back: correct
    over the dtype's whole finite range wherever the distances themselves are representable, else a ValueError."""
    xp, given = namespace(x, y), (x, y)
    k = _scale_exponent(x, y)
    if k:
        x, y = _scaled_copy(x, -k, xp, kernels), _scaled_copy(y, -k, xp, kernels)
    sq_x, sq_y = _squared_norms(x, xp, kernels), _squared_norms(y, xp, kernels)
    # ``out`` is given by the engine's blocks, which run on the host: NumPy's matmul writes into it
    d = xp.matmul(x, y.T) if out is None else np.matmul(x, y.T, out=out)
    ratio = _CANCELLATION_RATIO[numpy_dtype(x)]
    if defer and not k:
        return d, (x, sq_x, ratio, root)
    kernels.gram_to_distances(d, x, y, sq_x, sq_y, ratio, root)
    if k:
        power = k if root else 2 * k
        what = "distances" if root else "squared distances"
        with np.errstate(over="ignore"):
            kernels.scale(d, power)
        try:  # a bound on the distances, as a Python float (inf where it overflows float64)
            bound = math.ldexp(math.sqrt(largest_magnitude(sq_x)) + math.sqrt(largest_magnitude(sq_y)), k)
        except OverflowError:
            bound = math.inf
        refuse_overflow(d, bound if root else bound * bound, given, names, what)
    return (d, None) if defer else d


def _scaled_copy(a, exponent, xp, kernels):
    """2^exponent · a, a new array (exact: a power of two moves the exponents)."""
    scaled = xp.asarray(a, copy=True)
    with np.errstate(over="ignore"):
        kernels.scale(scaled, exponent)
    return scaled


def _squared_norms(rows, xp, kernels):
    """‖rows_i‖² for each row, accumulated in float64, in the rows' dtype (a new array where the rows live)."""
    out = xp.empty((rows.shape[0],), dtype=rows.dtype, device=device_of(rows))
    kernels.row_sq_norms(rows, out)
    return out


def unit_rows(x):
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
    x_unit, x_inv_norm = unit_rows(x)
    y_unit, y_inv_norm = (x_unit.copy(), x_inv_norm) if self_pairs else unit_rows(y)

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


def distance_matrix_vjp(x, y, distance, kernels, names=("embeddings", "ref_embeddings"), defer=False, out=None):
    """D(x, y) and its pullback ``(g, weight=1) ↦ ∂L/∂x`` (y None: distances within x) or ``(∂L/∂x, ∂L/∂y)``,
    for the cotangent ``weight · g``. The pullback overwrites g (callers hand it a cotangent they own) and keeps
    no B×B array of its own with the Numba kernels (``pair_scale`` and ``symmetrize`` work on g in place,
    ``symmetrize`` through 16×16 tiles); the NumPy reference kernels allocate two more for clarity (the boolean
    mask of d = 0 in ``pair_scale`` and the copy of gᵀ in ``symmetrize``). A loss's peak memory is D and g plus
    what its own code allocates (docs/benchmarks.md measures each loss's peak). Trusts its inputs.

    ``defer`` (within one batch): ``(matrix, pullback, conversion)``, where for the Euclidean distances the matrix
    may still be the Gram matrix, which the caller's kernel turns into D with ``conversion`` (see
    :func:`_euclidean_from_gram`; None where D is already done).

    ``out``: a C-contiguous array of D's shape and x's dtype that D is computed in, and returned as (a batch in
    blocks computes each block's D in the memory of the block before it); None: a new array."""
    if distance in ("dot", "snr"):
        d, pullback = (_dot_distances_vjp if distance == "dot" else _snr_distances_vjp)(x, y, kernels, names, out)
        return (d, pullback, None) if defer else (d, pullback)
    if distance == "cosine":
        x_unit, y_unit, similarity_pullback = _cosine_parts(x, y, kernels, names)
        # 1 − x̂·ŷ = ½‖x̂ − ŷ‖²: the squared form is accurate for nearly parallel rows.
        d = _euclidean_from_gram(x_unit, y_unit, kernels, root=False, out=out)
        d *= 0.5
        d[~x_unit.any(axis=1), :] = 1  # a zero row's cosine distance to anything
        d[:, ~y_unit.any(axis=1)] = 1
        np.clip(d, 0, 2, out=d)

        def pullback(g, weight=1.0, divided=False, symmetric=False):
            return similarity_pullback(g, -weight, symmetric)  # D = 1 − S: ∂L/∂D = −∂L/∂S

        return (d, pullback, None) if defer else (d, pullback)

    self_pairs = y is None
    other = namespace(x).asarray(x, copy=True) if self_pairs else y  # a separate buffer, for the GEMM
    conversion = None
    squared = distance == "sqeuclidean"
    if defer and self_pairs:
        d, conversion = _euclidean_from_gram(x, other, kernels, not squared, names, defer=True, out=out)
    else:
        d = _euclidean_from_gram(x, other, kernels, not squared, names, out=out)

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


def refuse_on_gpu_unless_supported(distance):
    if distance not in GPU_DISTANCES:
        raise NotImplementedError(
            f"GPU arrays run with distance in {GPU_DISTANCES} so far; got distance={distance!r}: copy the arrays "
            "to the host (backend='cuda' then copies them to the GPU per kernel)"
        )


def _dot_distances_vjp(x, y, kernels, names, out=None):
    """D = −X Yᵀ and its pullback: the dot similarity's with the weight negated (∂L/∂S = −∂L/∂D), −G Y and −Gᵀ X,
    or within one batch −(G + Gᵀ) X (``symmetric``: g already holds G + Gᵀ). Neither reads D."""
    d, similarity_pullback = similarity_matrix_vjp(x, y, "dot", kernels, names, out)
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


def _snr_distances_vjp(x, y, kernels, names, out=None):
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
    d = _euclidean_from_gram(x_centred, y_centred, kernels, root=True, out=out)
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
    ValueError naming ``name`` (A's argument) where that is not representable in A's dtype. Arrays of any library
    (the GEMM is its own)."""
    xp = namespace(a, b)
    ones = xp.ones((b.shape[0], 1), dtype=b.dtype, device=device_of(b))
    with np.errstate(over="ignore", invalid="ignore"):
        pulled = xp.matmul(scale, xp.concat([b, ones], axis=1))
        grad = pulled[:, -1:] * a
        grad -= pulled[:, :-1]
        grad *= factor
    refuse_overflow(grad, math.inf, (a,), (name,), "gradients")
    return grad


def pairs_vjp(x, y, rows, cols, g, paired_vjp, kernels):
    """∂L/∂x (y None) or (∂L/∂x, ∂L/∂y) for a cotangent that is g[k] on M[rows[k], cols[k]] and 0 elsewhere, M a
    pairwise distance or similarity matrix whose row-wise twin is ``paired_vjp`` (:func:`paired_distances_vjp`
    or :func:`paired_similarities_vjp` with the measure bound), or for the Euclidean and squared Euclidean
    distances, the name of the distance (one kernel pass over the pairs, no K×F temporaries): O(K · F) for K
    pairs."""
    other, xp = (x if y is None else y), namespace(x)
    grad_x = xp.zeros_like(x)
    grad_y = grad_x if y is None else xp.zeros_like(y)
    if paired_vjp in ("euclidean", "sqeuclidean"):
        kernels.pull_distance_pairs(x, other, rows, cols, g, paired_vjp == "sqeuclidean", grad_x, grad_y)
        return grad_x if y is None else (grad_x, grad_y)
    g_rows, g_cols = paired_vjp(x[rows], other[cols])[1](g)
    kernels.scatter_add_rows(grad_x, rows, g_rows)
    kernels.scatter_add_rows(grad_y, cols, g_cols)
    return grad_x if y is None else (grad_x, grad_y)


def pull_entries(x, y, rows, cols, g, paired_vjp, dense_pullback, kernels):
    """∂L/∂x (y None) or (∂L/∂x, ∂L/∂y) for a cotangent that is g[k] on entry (rows[k], cols[k]) of a pairwise
    matrix M(x, y) (repeated entries add up) and 0 elsewhere: pair by pair (:func:`pairs_vjp`, to which
    ``paired_vjp`` goes) in O(K·F) while K·F is at most M's size, else gathered into a dense cotangent for
    ``dense_pullback`` (M's GEMM pullback; None where M is not computed whole: then always pair by pair)."""
    n_cols = (x if y is None else y).shape[0]
    if dense_pullback is None or rows.size * x.shape[1] <= x.shape[0] * n_cols:
        return pairs_vjp(x, y, rows, cols, g, paired_vjp, kernels)
    dense = namespace(x).zeros((x.shape[0], n_cols), dtype=x.dtype, device=device_of(x))
    kernels.scatter_add_entries(dense, rows, cols, g)
    return dense_pullback(dense)


def lp_distance_rows(x1, x2, p, eps=0.0):
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


def paired_distances_vjp(x1, x2, distance, names=("x1", "x2")):
    """Row-wise distances d_i = D(x1_i, x2_i) and the pullback g ↦ (∂L/∂x1, ∂L/∂x2). Trusts inputs."""
    if distance == "dot":
        s, similarity_pullback = paired_similarities_vjp(x1, x2, "dot")
        refuse_overflow(s, math.inf, (x1, x2), names, "dot products")
        return -s, lambda g: similarity_pullback(-g)
    if distance == "snr":
        return _snr_rows(x1, x2, names)
    if distance == "euclidean":
        d, pullback = lp_distance_rows(x1, x2, p=2)
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

    u1, inv1 = unit_rows(x1)
    u2, inv2 = unit_rows(x2)
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


def similarity_matrix_vjp(x, y, similarity, kernels, names=("embeddings", "ref_embeddings"), out=None):
    """S(x, y) and its pullback ``(g, weight=1) ↦ ∂L/∂x`` (y None: within x) or ``(∂L/∂x, ∂L/∂y)``, for the
    cotangent ``weight · g``; overwrites g. ``out``: as in :func:`distance_matrix_vjp`. Trusts its inputs."""
    if similarity == "cosine":  # x̂·ŷ, a zero row's 0; clipped to [−1, 1] (a rounding past ±1 is no similarity)
        x_unit, y_unit, pullback = _cosine_parts(x, y, kernels, names)
        s = np.matmul(x_unit, y_unit.T, out=out)
        np.clip(s, -1, 1, out=s)
        return s, pullback

    self_pairs = y is None
    other = x.copy() if self_pairs else y  # a separate buffer, for the GEMM
    k = _scale_exponent(x, other)
    if k:  # x·y = 2^2k (2^-k x)·(2^-k y): scaled so that the products neither overflow nor underflow
        s = np.matmul(np.ldexp(x, -k), np.ldexp(other, -k).T, out=out)
        with np.errstate(over="ignore"):
            np.ldexp(s, 2 * k, out=s)
        refuse_overflow(s, norm_bound(x) * norm_bound(other), (x, other), names, "dot products")
    else:
        s = np.matmul(x, other.T, out=out)
    return s, dot_products_pullback(x, y, kernels)


def dot_products_pullback(x, y, kernels):
    """The pullback ``(g, weight=1) ↦ ∂L/∂x`` (y None: S = X Xᵀ) or ``(∂L/∂x, ∂L/∂y)`` of the dot products
    S = X Yᵀ, for the cotangent ``weight · g``; it reads no S (a batch may compute none). Overwrites g."""

    def pullback(g, weight=1.0, symmetric=False):
        # ∂(x_i·y_j)/∂x_i = y_j  ⇒  ∂L/∂X = G Y and ∂L/∂Y = Gᵀ X; within one batch both: (G + Gᵀ) X
        # (``symmetric``: g already holds G + Gᵀ).
        g *= weight
        if y is None:
            if not symmetric:
                kernels.symmetrize(g)
            return g @ x
        return g @ y, g.T @ x

    return pullback


def paired_similarities_vjp(x1, x2, similarity):
    """Row-wise similarities s_i = S(x1_i, x2_i) and the pullback g ↦ (∂L/∂x1, ∂L/∂x2). Trusts inputs."""
    if similarity == "cosine":
        d, distance_pullback = paired_distances_vjp(x1, x2, "cosine")
        return 1 - d, lambda g: distance_pullback(-g)
    s = _row_dots(x1, x2)
    return s, lambda g: (g[:, None] * x2, g[:, None] * x1)


def _row_dots(a, b):
    return np.einsum("ij,ij->i", a, b)
